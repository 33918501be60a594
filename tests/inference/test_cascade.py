"""Cascade end to end: nnUNetv2_predict -c 3d_lowres, then -c 3d_cascade_fullres -prev_stage_predictions.

The model folders are hand-made (see _cascade_model.py): untrained seeded networks, plans with 3d_lowres /
3d_cascade_fullres and a non-trivial transpose; the full-resolution preprocessing of the test images is the identity
up to that transpose, so the previous-stage channels the network receives can be checked voxel by voxel.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import _cascade_model as cm
from nnunetv2.errors import UserError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    mp = pytest.MonkeyPatch()
    models = cm.model_environment(root, mp)
    prev = root / "handmade_prev"
    prev.mkdir()
    for i, case in enumerate(cm.CASES):
        cm.write_segmentation(cm.label_map(200 + i), prev / f"{case}.nii.gz")
    threads = torch.get_num_threads()
    yield {"root": root, "models": models, "images": root / "imagesTs", "prev": prev}
    torch.set_num_threads(threads)
    mp.undo()


def _predict(args):
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point
    threads = torch.get_num_threads()
    try:
        predict_entry_point([*args, "-d", str(cm.DATASET_ID), "-f", "0", "-device", "cpu", "--disable_tta",
                             "--disable_progress_bar"])
    finally:
        torch.set_num_threads(threads)  # -device cpu sets it to the CPU count


def _read(path: Path):
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), (img.GetSpacing(), img.GetOrigin(), img.GetDirection())


def _predictor(model_dir: Path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    p = nnUNetPredictor(use_mirroring=False, device=CPU, allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_dir), (0,))
    return p


def test_cascade_end_to_end_cli(cascade):
    root, images = cascade["root"], cascade["images"]
    low, casc, casc_seq = root / "out_lowres", root / "out_cascade", root / "out_cascade_seq"
    _predict(["-i", str(images), "-o", str(low), "-c", "3d_lowres", "-npp", "0", "-nps", "0"])
    # background preprocessing/export workers (the default path of the command) ...
    _predict(["-i", str(images), "-o", str(casc), "-c", "3d_cascade_fullres", "-prev_stage_predictions", str(low),
              "-npp", "1", "-nps", "1"])
    # ... and the sequential path give the same files
    _predict(["-i", str(images), "-o", str(casc_seq), "-c", "3d_cascade_fullres", "-prev_stage_predictions",
              str(low), "-npp", "0", "-nps", "0"])

    ref_img, ref_geo = _read(images / f"{cm.CASES[0]}_0000.nii.gz")
    for case in cm.CASES:
        for folder in (low, casc, casc_seq):
            seg, geo = _read(folder / f"{case}.nii.gz")
            assert seg.shape == ref_img.shape == cm.SHAPE_ZYX and seg.dtype == np.uint8
            assert np.allclose(geo[0], cm.SPACING_ZYX[::-1]) and np.allclose(geo[1], cm.ORIGIN_XYZ)
            assert np.allclose(geo[2], cm.DIRECTION) and geo == ref_geo
            assert set(np.unique(seg)) <= {0, 1, 2}
        assert np.array_equal(_read(casc / f"{case}.nii.gz")[0], _read(casc_seq / f"{case}.nii.gz")[0])
    assert sorted(os.listdir(casc)) == sorted(["dataset.json", "plans.json", "predict_from_raw_data_args.json"] +
                                              [f"{c}.nii.gz" for c in cm.CASES])
    import json
    args = json.loads((casc / "predict_from_raw_data_args.json").read_text())
    assert args["folder_with_segs_from_prev_stage"] == str(low)


def test_previous_stage_segmentation_reaches_the_network(cascade):
    p = _predictor(cascade["models"]["3d_cascade_fullres"])
    seen = []
    original = p.predict_logits_from_preprocessed_data

    def capture(data):
        seen.append(data.clone())
        return original(data)

    p.predict_logits_from_preprocessed_data = capture
    files = [[str(cascade["images"] / f"{c}_0000.nii.gz")] for c in cm.CASES]
    results = p.predict_from_files_sequential(files, None, save_probabilities=True,
                                              folder_with_segs_from_prev_stage=str(cascade["prev"]))
    assert len(seen) == 2 and len(results) == 2
    for i, data in enumerate(seen):
        prev = cm.label_map(200 + i).transpose(cm.TRANSPOSE_FORWARD)
        assert data.shape == (3, *prev.shape) and data.dtype == torch.float32
        # one channel per foreground label, after the image channel, exactly the previous-stage map
        assert torch.equal(data[1], torch.from_numpy((prev == 1).astype(np.float32)))
        assert torch.equal(data[2], torch.from_numpy((prev == 2).astype(np.float32)))

    # the same images with another previous-stage map give another prediction
    other = cascade["root"] / "other_prev"
    other.mkdir(exist_ok=True)
    for i, case in enumerate(cm.CASES):
        cm.write_segmentation(np.zeros(cm.SHAPE_ZYX, np.uint8), other / f"{case}.nii.gz")
    seen.clear()
    results_other = p.predict_from_files_sequential(files, None, save_probabilities=True,
                                                    folder_with_segs_from_prev_stage=str(other))
    assert all(float(d[1:].abs().sum()) == 0 for d in seen)
    for (seg_a, prob_a), (seg_b, prob_b) in zip(results, results_other):
        assert seg_a.shape == prob_a.shape[1:] == cm.SHAPE_ZYX
        assert np.abs(prob_a - prob_b).max() > 1e-3
        assert (seg_a != seg_b).any()

    # in-memory entry point: the previous stage given as an array gives the same result as the file
    image, props = _read_for_npy(cascade["images"] / f"{cm.CASES[0]}_0000.nii.gz")
    seg_prev = cm.label_map(200)[None]
    seg_npy, prob_npy = p.predict_single_npy_array(image, props, seg_prev, None, True)
    assert np.array_equal(seg_npy, results[0][0]) and np.allclose(prob_npy, results[0][1])


def _read_for_npy(path: Path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    return SimpleITKIO().read_images([str(path)])


def test_cascade_input_errors(cascade, capsys):
    root, images = cascade["root"], cascade["images"]
    out = root / "out_errors"
    with pytest.raises(SystemExit) as e:
        _predict(["-i", str(images), "-o", str(out), "-c", "3d_cascade_fullres", "-npp", "0", "-nps", "0"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnU-Net error:")
    assert "previous stage (3d_lowres)" in err[0] and "-prev_stage_predictions" in err[0]

    incomplete = root / "incomplete_prev"
    incomplete.mkdir()
    cm.write_segmentation(cm.label_map(200), incomplete / f"{cm.CASES[0]}.nii.gz")
    p = _predictor(cascade["models"]["3d_cascade_fullres"])
    with pytest.raises(UserError, match=rf"Previous-stage prediction .*{cm.CASES[1]}\.nii\.gz not found"):
        p.predict_from_files(str(images), str(out), folder_with_segs_from_prev_stage=str(incomplete),
                             num_processes_preprocessing=1, num_processes_segmentation_export=1)
    with pytest.raises(UserError, match="Previous-stage prediction"):
        p.predict_from_files_sequential(str(images), str(out), folder_with_segs_from_prev_stage=str(root / "nope"))
    assert not out.exists()  # refused before anything was written: not even the output folder

    # a previous-stage map whose geometry does not match the image
    wrong = root / "wrong_prev"
    wrong.mkdir()
    for case in cm.CASES:
        img = sitk.GetImageFromArray(np.zeros((8, 10, 12), np.uint8))
        sitk.WriteImage(img, str(wrong / f"{case}.nii.gz"))
    with pytest.raises(UserError) as e:
        p.predict_from_files_sequential(str(images), str(out), folder_with_segs_from_prev_stage=str(wrong))
    assert "\n" not in e.value.one_line() and f"{cm.CASES[0]}.nii.gz" in e.value.one_line()
    assert not any(f.endswith(".nii.gz") for f in os.listdir(out))


def test_continue_prediction_redoes_cases_left_as_temporary_files(cascade):
    """A kill during export leaves only a temporary file (atomic writes); --continue_prediction must redo that case
    and skip the complete one."""
    from nnunetv2.file_io import temporary_sibling
    root, images = cascade["root"], cascade["images"]
    out = root / "out_continue"
    _predict(["-i", str(images), "-o", str(out), "-c", "3d_lowres", "-npp", "0", "-nps", "0",
              "--save_probabilities"])
    reference = {c: _read(out / f"{c}.nii.gz")[0] for c in cm.CASES}
    done, interrupted = cm.CASES
    (out / f"{done}.nii.gz").write_bytes(b"complete, must not be touched")
    os.replace(out / f"{interrupted}.nii.gz", temporary_sibling(str(out / f"{interrupted}.nii.gz")))
    _predict(["-i", str(images), "-o", str(out), "-c", "3d_lowres", "-npp", "0", "-nps", "0",
              "--save_probabilities", "--continue_prediction"])
    assert (out / f"{done}.nii.gz").read_bytes() == b"complete, must not be touched"
    assert np.array_equal(_read(out / f"{interrupted}.nii.gz")[0], reference[interrupted])

    # with probabilities, a segmentation whose .npz exists only as a temporary file is redone as well
    os.replace(out / f"{done}.npz", temporary_sibling(str(out / f"{done}.npz")))
    _predict(["-i", str(images), "-o", str(out), "-c", "3d_lowres", "-npp", "0", "-nps", "0",
              "--save_probabilities", "--continue_prediction"])
    assert np.array_equal(_read(out / f"{done}.nii.gz")[0], reference[done])
    assert np.load(out / f"{done}.npz")["probabilities"].shape == (3, *cm.SHAPE_ZYX)


def test_base_trainer_network_needs_no_trainer_lookup(cascade, monkeypatch):
    """Checkpoints of nnUNetTrainer itself are built from the plans without importing the training package (fast
    start-up); any other trainer name is looked up (and falls back to the plans when unknown)."""
    import nnunetv2.inference.model_loading as ml
    looked_up = []
    monkeypatch.setattr(ml, "_find_trainer_class", lambda name, lookup: looked_up.append(name))
    p = _predictor(cascade["models"]["3d_lowres"])
    assert looked_up == [] and type(p.network).__name__ == "PlainConvUNet"
    net = ml.build_network("nnUNetTrainer_5epochs", p.plans_manager, p.configuration_manager, p.dataset_json, 1, 3)
    assert looked_up == ["nnUNetTrainer_5epochs"] and net.state_dict().keys() == p.network.state_dict().keys()


def test_previous_stage_for_a_non_cascade_configuration_is_refused(cascade):
    p = _predictor(cascade["models"]["3d_lowres"])
    with pytest.raises(UserError, match="not a cascade stage"):
        p.predict_from_files_sequential(str(cascade["images"]), None,
                                        folder_with_segs_from_prev_stage=str(cascade["prev"]))
