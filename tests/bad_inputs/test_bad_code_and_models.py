"""Mistakes in code and model files users add: a trainer module with a syntax error, two trainers of one name, a
checkpoint the safe loader refuses, truncated preprocessed data, a model folder's dataset.json edited by hand, an
RGBA image for an RGB model (reported; the other cases are still predicted; the run fails at the end)."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _bad_inputs_helpers import BASE_ID, BASE_NAME, Snapshot, assert_clean_failure, assert_outputs_load, names, run_entry
from nnunetv2.errors import UserError

_TRAINER = """
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    pass
"""


def test_trainer_file_with_syntax_error_is_named(bad_env, tmp_path, capsys, monkeypatch):
    from nnunetv2.run.run_training import run_training_entry
    ext = tmp_path / "my_trainers"
    ext.mkdir()
    broken = ext / "my_trainer.py"
    broken.write_text(_TRAINER.format(name="MyTrainer").replace("(nnUNetTrainer):", "(nnUNetTrainer)"))
    monkeypatch.setenv("nnUNet_extTrainer", str(ext))
    code, err = run_entry(run_training_entry, [BASE_ID, "3d_fullres", "all", "-tr", "MyTrainer", "-device", "cpu"],
                          capsys)
    assert_clean_failure(code, err, broken, "line 5", "SyntaxError")


def test_two_trainer_files_with_one_class_name_say_which_is_used(tmp_path, monkeypatch, caplog):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    ext = tmp_path / "my_trainers"
    (ext / "sub").mkdir(parents=True)
    for f in (ext / "a_trainer.py", ext / "sub" / "b_trainer.py"):
        f.write_text(_TRAINER.format(name="TwiceDefinedTrainer"))
    monkeypatch.setenv("nnUNet_extTrainer", str(ext))
    with caplog.at_level(logging.WARNING):
        cls = recursive_find_trainer_class_by_name("TwiceDefinedTrainer")
    assert cls.__name__ == "TwiceDefinedTrainer"
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"using the one in {ext / 'a_trainer.py'}" in message and str(ext / "sub" / "b_trainer.py") in message


class _RunsCode:
    def __reduce__(self):
        return os.system, ("echo this should never run",)


@pytest.mark.parametrize("payload, what", [(_RunsCode(), "refused for safety"),
                                           (None, "not a readable PyTorch checkpoint")],
                         ids=["unsafe_object", "garbage"])
def test_checkpoint_refused_by_the_safe_loader(payload, what, tmp_path, monkeypatch):
    from nnunetv2.utilities.checkpoint_io import UNSAFE_ENV_VAR, load_checkpoint
    monkeypatch.delenv(UNSAFE_ENV_VAR, raising=False)
    ckpt = tmp_path / "checkpoint_final.pth"
    if payload is None:
        ckpt.write_bytes(b"\x80\x02garbage that is no checkpoint")
    else:
        torch.save({"network_weights": {}, "x": payload}, ckpt)
    with pytest.raises(UserError) as e:
        load_checkpoint(str(ckpt))
    assert str(ckpt) in e.value.one_line() and what in e.value.one_line()
    if payload is not None:
        assert f"{UNSAFE_ENV_VAR}=1" in e.value.one_line()


def test_truncated_preprocessed_data_during_training(bad_env, capsys, monkeypatch):
    """Every preprocessed .b2nd cut in half (a full disk or a killed copy): training names the file."""
    from nnunetv2.run.run_training import run_training_entry
    pp = bad_env.preprocessed / BASE_NAME
    truncated = pp / "bad_inputs_truncated_3d_fullres"
    shutil.copytree(pp / "nnUNetPlans_3d_fullres", truncated)
    for f in truncated.glob("*.b2nd"):
        f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    plans = json.loads((pp / "nnUNetPlans.json").read_text())
    plans["plans_name"] = "BadPlans_truncated"
    plans["configurations"]["3d_fullres"]["data_identifier"] = truncated.name
    (pp / "BadPlans_truncated.json").write_text(json.dumps(plans))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    try:
        code, err = run_entry(run_training_entry, [BASE_ID, "3d_fullres", "all", "-p", "BadPlans_truncated", "-tr",
                                                   "nnUNetTrainer_1epoch", "-device", "cpu"], capsys)
        line = assert_clean_failure(code, err, str(truncated), "truncated or corrupt")
        assert "nnUNetv2_preprocess" in line
    finally:
        shutil.rmtree(truncated)


# ------------------------------------------------------------------------------------------------------------------
# a real (reference-trained) 2-D RGB model from ../shared
@pytest.fixture(scope="module")
def rgb_model(shared_dir, tmp_path_factory):
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    from nnunetv2.model_sharing.model_import import install_model_from_zip_file
    base = tmp_path_factory.mktemp("rgb_model")
    results = base / "results"
    results.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_results", str(results))
        install_model_from_zip_file(str(next((shared_dir / "reference" / "models" / "Dataset903_SynthNatural2D")
                                              .glob("*.zip"))))
    raw = Path(make_synthetic_dataset(str(base), 771, "Rgb", kind="2d", num_train=0, num_test=2, shape=(48, 40)))
    return results, results / "Dataset903_SynthNatural2D" / "nnUNetTrainer_5epochs__nnUNetPlansTiny__2d", raw


def _predict(model_folder: Path, inp: Path, out: Path, capsys):
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point_modelfolder
    return run_entry(predict_entry_point_modelfolder, ["-i", inp, "-o", out, "-m", model_folder, "-f", "0",
                                                       "-device", "cpu", "--disable_tta", "-npp", "0", "-nps", "0",
                                                       "--disable_progress_bar"], capsys)


def test_rgba_image_for_an_rgb_model(rgb_model, tmp_path, capsys):
    from PIL import Image
    _, model, raw = rgb_model
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(raw / "imagesTs", inp)
    good, bad = sorted(inp.glob("*.png"))
    rgb = np.asarray(Image.open(bad).convert("RGB"))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA").save(bad)
    snapshot = Snapshot(inp)
    code, err = _predict(model, inp, out, capsys)
    assert "RGBA" in assert_clean_failure(code, err, bad)
    snapshot.assert_unchanged()
    predicted = names(p for p in assert_outputs_load(out) if p.suffix == ".png")
    assert predicted == [good.name.replace("_0000", "")]  # the other case was still predicted


def test_model_folder_dataset_json_edited_by_hand(rgb_model, tmp_path, capsys):
    _, model, raw = rgb_model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    dj = json.loads((copy / "dataset.json").read_text())
    del dj["labels"]
    (copy / "dataset.json").write_text(json.dumps(dj))
    code, err = _predict(copy, raw / "imagesTs", tmp_path / "out", capsys)
    assert_clean_failure(code, err, copy / "dataset.json", "'labels'")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))
