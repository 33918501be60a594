"""-prev_stage_predictions holding label values the model does not have (the prediction of another model or
dataset): they were one-hot encoded over the model's labels, so read as background, and the cascade predicted from
a wrong previous stage without a word (found by fuzz round 3; the reference does the same). Now that case is
skipped with one line naming the file and the values; the other cases are still predicted."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cascade_model as cm  # noqa: E402


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade_labels")
    mp = pytest.MonkeyPatch()
    models = cm.model_environment(root, mp)
    threads = torch.get_num_threads()
    yield root, models
    torch.set_num_threads(threads)
    mp.undo()


@pytest.mark.parametrize("npp", ["0", "1"])
@pytest.mark.parametrize("bad_value", [7, -3])
def test_unknown_previous_stage_label_is_named(cascade, tmp_path, capsys, bad_value, npp):
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point
    root, _ = cascade
    prev = tmp_path / "prev"
    prev.mkdir()
    for i, case in enumerate(cm.CASES):
        seg = cm.label_map(200 + i).astype(np.int16)
        if i == 0:
            seg[:, :3, :3] = bad_value
        cm._write_nifti(seg, prev / f"{case}.nii.gz")
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as e:
            predict_entry_point(["-i", str(root / "imagesTs"), "-o", str(out), "-c", "3d_cascade_fullres",
                                 "-prev_stage_predictions", str(prev), "-d", str(cm.DATASET_ID), "-f", "0",
                                 "-device", "cpu", "--disable_tta", "--disable_progress_bar", "-npp", npp,
                                 "-nps", "0"])
    finally:
        torch.set_num_threads(threads)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"{cm.CASES[0]}.nii.gz holds label value(s) {bad_value} that the model does not have" in err
    written = sorted(f for f in os.listdir(out) if f.endswith(".nii.gz")) if out.is_dir() else []
    assert f"{cm.CASES[0]}.nii.gz" not in written
    if npp != "0":  # with workers the other cases are still predicted (-npp 0 stops at the first bad case)
        assert written == [f"{cm.CASES[1]}.nii.gz"]


def test_known_labels_and_mask_marker_pass():
    from nnunetv2.errors import UserError
    from nnunetv2.inference.preprocessing_workers import check_previous_stage_labels

    class LM:
        all_labels = [0, 1, 2]
    check_previous_stage_labels(np.array([[-1, 0, 1, 2]]), "p.nii.gz", LM())
    with pytest.raises(UserError, match="value.s. 5, 9 that"):
        check_previous_stage_labels(np.array([[0, 5, 9, 1]]), "p.nii.gz", LM())


@pytest.mark.parametrize("entry", ["single", "list"])
def test_unknown_previous_stage_label_in_an_array_is_named(cascade, entry):
    """The same check where the previous stage comes as an array through the predictor's API (in this process,
    or in a preprocessing worker): it was read as background without a word."""
    from nnunetv2.errors import UserError
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    root, models = cascade
    threads = torch.get_num_threads()
    p = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(models["3d_cascade_fullres"]), (0,))
    image, props = SimpleITKIO().read_images([str(root / "imagesTs" / f"{cm.CASES[0]}_0000.nii.gz")])
    prev = cm.label_map(200)[None].astype(np.int16)
    prev[0, :2, :2, :2] = 9
    try:
        with pytest.raises(UserError) as e:
            if entry == "single":
                p.predict_single_npy_array(image, props, prev)
            else:
                p.predict_from_list_of_npy_arrays([image], [prev], [props], None, num_processes=1,
                                                  num_processes_segmentation_export=0)
    finally:
        torch.set_num_threads(threads)
    line = e.value.one_line()
    assert "holds label value(s) 9 that the model does not have (its labels: 0, 1, 2)" in line
    assert f"given as an array for the image of shape {list(image.shape)}" in line
