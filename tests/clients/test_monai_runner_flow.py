"""MONAI's nnUNetV2Runner flow, driven through the in-process APIs it imports, with the arguments it passes.

Written by us from the runner's public behaviour (no MONAI code; MONAI is not installed): convert an MSD task,
fingerprint / plan / preprocess, train (a tiny trainer, one epoch of two iterations), unpack, load a trainer the way
MONAI's bundle does, find the best configuration, predict, ensemble and postprocess. The runner's worker counts
default to nnunetv2.configuration.default_num_processes; this test uses 1 to stay small on CI. The real runner on
our package, side by side with the reference: ``benchmarks/monai_runner_trial.py`` (needs PyPI).
"""
from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

TASK_ID = 87
DATASET = f"Dataset0{TASK_ID}_Spheres"
TRAINER = "nnUNetTrainer_MonaiFlowTiny"
CPU = torch.device("cpu")
N_PROC = 1  # the runner passes default_num_processes


def _write(path: Path, array: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.5))
    sitk.WriteImage(image, str(path))


def _msd_task(root: Path, n_train: int = 6, n_test: int = 1) -> Path:
    """An MSD task folder: 3-D MR images with one bright sphere each, labelled 1."""
    rng = np.random.default_rng(7)
    task = root / f"Task{TASK_ID:02d}_Spheres"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in (10, 20, 20)], indexing="ij")
    for i in range(n_train + n_test):
        centre = rng.integers((3, 6, 6), (7, 14, 14))
        sphere = ((zz - centre[0]) ** 2 * 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) <= 16
        image = (rng.normal(100, 10, sphere.shape) + 80 * sphere).astype(np.float32)
        sub = "imagesTr" if i < n_train else "imagesTs"
        _write(task / sub / f"sph_{i:03d}.nii.gz", image)
        if i < n_train:
            _write(task / "labelsTr" / f"sph_{i:03d}.nii.gz", sphere.astype(np.uint8))
    (task / "dataset.json").write_text(json.dumps({
        "name": "Spheres", "tensorImageSize": "3D", "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "sphere"}, "numTraining": n_train, "numTest": n_test,
        "training": [{"image": f"./imagesTr/sph_{i:03d}.nii.gz", "label": f"./labelsTr/sph_{i:03d}.nii.gz"}
                     for i in range(n_train)],
        "test": [f"./imagesTs/sph_{i:03d}.nii.gz" for i in range(n_train, n_train + n_test)]}))
    return task


@pytest.fixture
def env(tmp_path, monkeypatch):
    dirs = {}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        monkeypatch.setenv(name, str(dirs[name]))
    trainers = tmp_path / "trainers"
    trainers.mkdir()
    (trainers / "monai_flow_tiny.py").write_text(textwrap.dedent(f"""
        import torch
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


        class {TRAINER}(nnUNetTrainer):
            def __init__(self, plans, configuration, fold, dataset_json, device=torch.device('cuda')):
                super().__init__(plans, configuration, fold, dataset_json, device)
                self.num_epochs = 1
                self.num_iterations_per_epoch = 2
                self.num_val_iterations_per_epoch = 1
        """))
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.delenv("nnUNet_compile", raising=False)
    import nnunetv2.configuration
    monkeypatch.setattr(nnunetv2.configuration, "default_num_processes", N_PROC)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield dirs, tmp_path
    torch.set_num_threads(threads)


def _shrink_network(plans_file: Path) -> None:
    """Smallest network the planned stages allow: the test is about the flow, not the model."""
    plans = json.loads(plans_file.read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    n = arch["n_stages"]
    arch["features_per_stage"] = [4 * 2 ** i for i in range(n)]
    arch["n_conv_per_stage"] = [1] * n
    arch["n_conv_per_stage_decoder"] = [1] * (n - 1)
    plans_file.write_text(json.dumps(plans, indent=4))


def test_runner_flow(env):
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset
    from nnunetv2.ensembling.ensemble import ensemble_folders
    from nnunetv2.evaluation.find_best_configuration import (dumb_trainer_config_plans_to_trained_models_dict,
                                                             find_best_configuration)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                     preprocess)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing_to_folder
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint, run_training
    from nnunetv2.training.dataloading.utils import unpack_dataset
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    dirs, tmp = env
    # convert_msd_dataset(data_dir, overwrite_id=None, n_proc=-1) -> (data_dir, None, None)
    convert_msd_dataset(str(_msd_task(tmp / "downloads")), None, None)
    assert maybe_convert_to_dataset_name(TASK_ID) == DATASET

    # plan_and_process: fingerprints, plans, preprocessing with the runner's positional arguments
    extract_fingerprints([TASK_ID], "DatasetFingerprintExtractor", N_PROC, False, False, False)
    plan_experiments([TASK_ID], "ExperimentPlanner", 8, "DefaultPreprocessor", None, "nnUNetPlans")
    preprocessed = dirs["nnUNet_preprocessed"] / DATASET
    _shrink_network(preprocessed / "nnUNetPlans.json")
    preprocess([TASK_ID], "nnUNetPlans", configurations=("3d_fullres",), num_processes=(N_PROC,), verbose=False)
    assert len(list((preprocessed / "nnUNetPlans_3d_fullres").glob("*.b2nd"))) == 12  # data + seg of 6 cases

    # train: the runner unpacks folders holding .npz first (ours hold none), then trains each fold
    unpack_dataset(folder=str(preprocessed / "nnUNetPlans_3d_fullres"), unpack_segmentation=True,
                   overwrite_existing=False, num_processes=N_PROC)
    run_training(str(TASK_ID), "3d_fullres", 0, TRAINER, "nnUNetPlans", export_validation_probabilities=False,
                 device=CPU)
    model_dir = Path(get_output_folder(TASK_ID, TRAINER, "nnUNetPlans", "3d_fullres"))
    assert (model_dir / "fold_0" / "checkpoint_final.pth").is_file()
    assert (model_dir / "fold_0" / "validation" / "summary.json").is_file()

    # MONAI's bundle: trainer from the same arguments, weights from the checkpoint
    trainer = get_trainer_from_args(str(TASK_ID), "3d_fullres", 0, TRAINER, "nnUNetPlans", device=CPU)
    maybe_load_checkpoint(trainer, continue_training=False, validation_only=True)
    weights = torch.load(model_dir / "fold_0" / "checkpoint_final.pth", weights_only=False)["network_weights"]
    for key, value in trainer.network.state_dict().items():
        assert torch.equal(value.cpu(), weights[key])

    models = dumb_trainer_config_plans_to_trained_models_dict((TRAINER,), ("3d_fullres",), ("nnUNetPlans",))
    find_best_configuration(TASK_ID, models, allow_ensembling=True, num_processes=N_PROC, overwrite=True,
                            folds=(0,), strict=False)
    results = dirs["nnUNet_results"] / DATASET
    best = json.loads((results / "inference_information.json").read_text())["best_model_or_ensemble"]
    assert [(m["configuration"], m["trainer"], m["plans_identifier"]) for m in best["selected_model_or_models"]] == \
        [("3d_fullres", TRAINER, "nnUNetPlans")]

    # predict_ensemble_postprocessing: predict imagesTs per selected model (probabilities when ensembling)
    images = dirs["nnUNet_raw"] / DATASET / "imagesTs"
    outputs = []
    # (the second prediction, only there to have two folders to ensemble, runs without worker processes)
    for name, mirroring, n_proc in (("pred_3d_fullres", True, N_PROC), ("pred_no_tta", False, 0)):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                    perform_everything_on_device=True, verbose=False, device=CPU)
        predictor.initialize_from_trained_model_folder(model_training_output_dir=str(model_dir), use_folds=(0,),
                                                       checkpoint_name="checkpoint_final.pth")
        predictor.predict_from_files(list_of_lists_or_source_folder=str(images),
                                     output_folder_or_list_of_truncated_output_files=str(results / name),
                                     save_probabilities=True, overwrite=True, num_processes_preprocessing=n_proc,
                                     num_processes_segmentation_export=n_proc, folder_with_segs_from_prev_stage=None,
                                     num_parts=1, part_id=0)
        outputs.append(str(results / name))
    ensemble_folders(outputs, str(results / "ensemble_predictions"), save_merged_probabilities=False)
    mean = np.mean([np.load(Path(o) / "sph_006.npz")["probabilities"] for o in outputs], axis=0)
    ensembled = sitk.GetArrayFromImage(sitk.ReadImage(str(results / "ensemble_predictions" / "sph_006.nii.gz")))
    assert np.array_equal(ensembled, mean.argmax(0))

    with open(Path(best["postprocessing_file"]), "rb") as f:
        pp_fns, pp_fn_kwargs = pickle.load(f)
    apply_postprocessing_to_folder(str(results / "ensemble_predictions"),
                                   str(results / "ensemble_predictions_postprocessed"), pp_fns, pp_fn_kwargs,
                                   plans_file_or_dict=best["some_plans_file"])
    post = sitk.ReadImage(str(results / "ensemble_predictions_postprocessed" / "sph_006.nii.gz"))
    assert post.GetSize() == (20, 20, 10) and post.GetSpacing() == (1.0, 1.0, 1.5)
