"""JHUPredictor: one binary uint8 file per foreground class, equal to the binarised label map of nnUNetPredictor."""
from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import _cascade_model as cm


@pytest.fixture(scope="module")
def jhu(tmp_path_factory):
    root = tmp_path_factory.mktemp("jhu")
    mp = pytest.MonkeyPatch()
    models = cm.model_environment(root, mp)
    jhu_in = root / "AbdomenAtlasTest"
    for case in cm.CASES:
        (jhu_in / case).mkdir(parents=True)
        shutil.copy(root / "imagesTs" / f"{case}_0000.nii.gz", jhu_in / case / "ct.nii.gz")
    yield SimpleNamespace(root=root, model=models["3d_lowres"], images=root / "imagesTs", jhu_in=jhu_in)
    mp.undo()


def _read(path):
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), (img.GetSpacing(), img.GetOrigin(), img.GetDirection())


def test_jhu_files_equal_binarised_label_map(jhu, monkeypatch):
    from nnunetv2.inference.JHU_inference import main
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    monkeypatch.setenv("nnUNet_compile", "f")  # main() sets it; keep it out of the other tests
    threads = torch.get_num_threads()
    out = jhu.root / "jhu_out"
    try:
        main([str(jhu.jhu_in), str(out), "-model", str(jhu.model), "-device", "cpu", "-f", "0", "-npp", "0",
              "-nps", "0", "--disable_tqdm"])
    finally:
        torch.set_num_threads(threads)

    p = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)  # same settings as the script (TTA on)
    p.initialize_from_trained_model_folder(str(jhu.model), (0,))
    label_maps = p.predict_from_files_sequential([[str(jhu.images / f"{c}_0000.nii.gz")] for c in cm.CASES], None)
    for case, label_map in zip(cm.CASES, label_maps):
        folder = out / case / "predictions"
        assert sorted(os.listdir(folder)) == ["core.nii.gz", "object.nii.gz"]
        _, geometry = _read(jhu.jhu_in / case / "ct.nii.gz")
        for name, value in (("object", 1), ("core", 2)):
            mask, geo = _read(folder / f"{name}.nii.gz")
            assert mask.dtype == np.uint8 and geo == geometry
            assert np.array_equal(mask, (label_map == value).astype(np.uint8))
        assert label_map.shape == cm.SHAPE_ZYX and set(np.unique(label_map)) == {0, 1, 2}
    assert sorted(os.listdir(out)) == sorted(["dataset.json", "plans.json", "predict_from_raw_data_args.json",
                                              *cm.CASES])


def test_jhu_masks_for_regions_and_ignore_label():
    from nnunetv2.inference.JHU_inference import _label_masks
    lm = SimpleNamespace(has_ignore_label=True, ignore_label=4)
    labels = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3, "ignore": 4}
    assert _label_masks({"labels": labels}, lm) == {"whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                                    "enhancing tumor": [3]}


def test_jhu_input_errors(jhu, tmp_path, capsys):
    from nnunetv2.inference.JHU_inference import JHUPredictor, jhu_case_lists, main
    (tmp_path / "in" / "case_a").mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "in"), str(tmp_path / "out"), "-model", str(jhu.model), "-device", "cpu", "-f", "0"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "case_a has no ct.nii.gz" in err[0]
    files, outs = jhu_case_lists(str(jhu.jhu_in), "/o")
    assert outs == [f"/o/{c}" for c in cm.CASES] and files[0] == [str(jhu.jhu_in / cm.CASES[0] / "ct.nii.gz")]

    from nnunetv2.errors import UserError
    p = JHUPredictor(device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(jhu.model), (0,))
    with pytest.raises(UserError, match="2 input cases but 1 output names"):
        p._manage_input_and_output_lists(files, ["/o/x"])
    lists, o, prev = p._manage_input_and_output_lists(files, outs, part_id=1, num_parts=2)
    assert lists == files[1:] and o == outs[1:] and prev == [None]
