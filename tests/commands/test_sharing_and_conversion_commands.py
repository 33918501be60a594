"""Model sharing (export zip, install zip, download by URL from a local server), overlay pictures, the two dataset
conversions, plan_and_preprocess on a converted MSD task and move_plans_between_datasets, all at their default
worker counts, as the documentation shows them."""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from _commands_helpers import DATASET, DATASET_ID, FOLDS, N_TRAIN, TRAINER, model_folder, run_command

MODEL = f"{TRAINER}__nnUNetPlans__3d_fullres"


@contextmanager
def _serve_folder(folder: Path):
    """A plain HTTP server for ``folder`` on 127.0.0.1 (a free port) in a daemon thread; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model_zip(predicted, tmp_path_factory):
    ws = predicted.ws
    path = tmp_path_factory.mktemp("zip") / "model.zip"
    run_command(["nnUNetv2_export_model_to_zip", "-d", str(DATASET_ID), "-o", str(path), "-c", "3d_fullres",
                 "-f", *FOLDS, "-tr", TRAINER], ws.env)
    return path


def test_export_model_to_zip(model_zip):
    with zipfile.ZipFile(model_zip) as z:
        names = set(z.namelist())
    for fold in FOLDS:
        assert f"{DATASET}/{MODEL}/fold_{fold}/checkpoint_final.pth" in names
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        assert f"{DATASET}/{MODEL}/{name}" in names
    assert all(n.startswith(f"{DATASET}/") for n in names)


@pytest.mark.parametrize("how", ["install_from_zip", "download_by_url"])
def test_install_and_download_give_the_exported_model(how, model_zip, workspace, tmp_path):
    ws = workspace
    results = tmp_path / "results"
    results.mkdir()
    env = dict(ws.env, nnUNet_results=str(results), HOME=str(tmp_path))  # the download goes through ~
    if how == "install_from_zip":
        run_command(["nnUNetv2_install_pretrained_model_from_zip", str(model_zip)], env)
    else:
        with _serve_folder(model_zip.parent) as url:
            run_command(["nnUNetv2_download_pretrained_model_by_url", f"{url}/{model_zip.name}"], env)
    with zipfile.ZipFile(model_zip) as z:
        expected = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    assert _files(results) == expected
    installed = results / DATASET / MODEL / "fold_3" / "checkpoint_final.pth"
    assert installed.read_bytes() == (model_folder(ws, "3d_fullres") / "fold_3" / "checkpoint_final.pth").read_bytes()
    assert not list(tmp_path.glob(".nnunetdownload_*"))  # the download (made in ~) is removed after installing


@pytest.mark.parametrize("use_raw", [False, True])
def test_plot_overlay_pngs(use_raw, workspace, tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.overlay_plots import plot_overlay

    out = tmp_path / "overlays"
    run_command(["nnUNetv2_plot_overlay_pngs", "-d", str(DATASET_ID), "-o", str(out)]
                + (["--use_raw"] if use_raw else []), workspace.env)
    cases = [f"case_{i:03d}" for i in range(N_TRAIN)]
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.png" for c in cases]
    if use_raw:  # the pool's pictures are those the function draws in this process
        for case in cases[:3]:
            plot_overlay(str(workspace.raw / "imagesTr" / f"{case}_0000.nii.gz"),
                         str(workspace.raw / "labelsTr" / f"{case}.nii.gz"), SimpleITKIO(),
                         str(tmp_path / f"{case}.png"))
            assert np.array_equal(np.asarray(Image.open(out / f"{case}.png")),
                                  np.asarray(Image.open(tmp_path / f"{case}.png")))
    else:
        picture = np.asarray(Image.open(out / "case_000.png"))
        assert picture.shape == (24, 24, 4) and picture[..., :3].std() > 0  # matplotlib's imsave writes RGBA


def _msd_task(root: Path, task: str, n_train: int, n_test: int) -> Path:
    """An MSD task made from a two-channel synthetic dataset: 4-D images (channels stacked on the 4th axis)."""
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset

    source = Path(make_synthetic_dataset(str(root / "source"), 1, "Source", kind="3d", num_train=n_train,
                                         num_test=n_test, num_channels=2, shape=(12, 24, 24), seed=7))
    folder = root / task
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True)
    training, test = [], []
    for i in range(n_train + n_test):
        sub = "Tr" if i < n_train else "Ts"
        channels = [sitk.ReadImage(str(source / f"images{sub}" / f"case_{i:03d}_{c:04d}.nii.gz")) for c in (0, 1)]
        sitk.WriteImage(sitk.JoinSeries(channels), str(folder / f"images{sub}" / f"toy_{i:03d}.nii.gz"))
        if i < n_train:
            shutil.copy(source / "labelsTr" / f"case_{i:03d}.nii.gz", folder / "labelsTr" / f"toy_{i:03d}.nii.gz")
            training.append({"image": f"./imagesTr/toy_{i:03d}.nii.gz", "label": f"./labelsTr/toy_{i:03d}.nii.gz"})
        else:
            test.append(f"./imagesTs/toy_{i:03d}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({
        "name": "Toy", "description": "toy", "tensorImageSize": "4D", "reference": "none", "licence": "CC-BY-SA 4.0",
        "release": "1.0", "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "object", "2": "core"}, "numTraining": n_train, "numTest": n_test,
        "training": training, "test": test}, indent=4))
    return source


def test_convert_msd_then_plan_and_preprocess(workspace, tmp_path):
    env = workspace.env
    source = _msd_task(tmp_path, "Task32_Toy", n_train=4, n_test=1)
    run_command(["nnUNetv2_convert_MSD_dataset", "-i", str(tmp_path / "Task32_Toy")], env)
    converted = Path(env["nnUNet_raw"]) / "Dataset032_Toy"
    for i in range(5):
        sub = "Tr" if i < 4 else "Ts"
        for c in (0, 1):
            ours = sitk.ReadImage(str(converted / f"images{sub}" / f"toy_{i:03d}_{c:04d}.nii.gz"))
            original = sitk.ReadImage(str(source / f"images{sub}" / f"case_{i:03d}_{c:04d}.nii.gz"))
            assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(original))
            assert np.allclose(ours.GetSpacing(), original.GetSpacing()) and \
                np.allclose(ours.GetDirection(), original.GetDirection())
    assert json.loads((converted / "dataset.json").read_text())["channel_names"] == {"0": "FLAIR", "1": "T1w"}

    run_command(["nnUNetv2_plan_and_preprocess", "-d", "32", "--verify_dataset_integrity"], env)
    pre = Path(env["nnUNet_preprocessed"]) / "Dataset032_Toy"
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert {"2d", "3d_fullres"} <= set(plans["configurations"])
    for config in ("2d", "3d_fullres"):
        names = sorted(p.name for p in (pre / f"nnUNetPlans_{config}").iterdir())
        assert names == sorted(f"toy_{i:03d}{s}" for i in range(4) for s in (".b2nd", "_seg.b2nd", ".pkl"))


def test_convert_old_nnunet_dataset_then_move_plans(workspace, tmp_path):
    env = workspace.env
    task = tmp_path / "Task033_Old"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        shutil.copytree(workspace.raw / sub, task / sub)
    (task / "dataset.json").write_text(json.dumps({
        "name": "Old", "description": "v1", "tensorImageSize": "3D", "reference": "none", "licence": "none",
        "release": "0.0", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "object", "2": "core"},
        "numTraining": N_TRAIN, "numTest": 3,
        "training": [{"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"}
                     for i in range(N_TRAIN)],
        "test": [f"./imagesTs/case_{i:03d}.nii.gz" for i in range(N_TRAIN, N_TRAIN + 3)]}, indent=4))
    run_command(["nnUNetv2_convert_old_nnUNet_dataset", str(task), "Dataset033_Old"], env)
    converted = Path(env["nnUNet_raw"]) / "Dataset033_Old"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        assert _files(converted / sub) == _files(workspace.raw / sub), sub
    assert json.loads((converted / "dataset.json").read_text())["labels"] == {"background": 0, "object": 1,
                                                                               "core": 2}

    run_command(["nnUNetv2_move_plans_between_datasets", "-s", str(DATASET_ID), "-t", "33", "-sp", "nnUNetPlans",
                 "-tp", "nnUNetPlansFrom931"], env)
    moved = json.loads((Path(env["nnUNet_preprocessed"]) / "Dataset033_Old" / "nnUNetPlansFrom931.json").read_text())
    source = json.loads((workspace.preprocessed / "nnUNetPlans.json").read_text())
    assert moved["dataset_name"] == "Dataset033_Old" and moved["plans_name"] == "nnUNetPlansFrom931"
    assert moved["configurations"]["3d_fullres"]["data_identifier"] == "nnUNetPlansFrom931_3d_fullres"
    assert moved["configurations"]["3d_fullres"]["architecture"] == source["configurations"]["3d_fullres"][
        "architecture"]
