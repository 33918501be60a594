"""Kaapana's way of using nnU-Net v2 (read from the public kaapana/kaapana repository; no client code here).

Kaapana (DKFZ's imaging platform) runs nnU-Net in Airflow operators whose container is built on an image that clones
nnU-Net 2.4.2 and ``git apply``s Kaapana's patches to it (data-processing/base-images/base-nnunet-v2/Dockerfile,
files/patched/ and the 2.6.2 set files/patches_262/, commits 29e070a, d546cb8, 83e56c0). Files read
(data-processing/processing-pipelines/...):

* ``nnunet/processing-containers/nnunet/files/create_dataset.py`` (18c8fcb) writes
  ``nnUNet_raw/Dataset{TASK_NUM:03}_{DESC}`` with ``imagesTr/<series>_0000.nii.gz``, ``labelsTr/<series>.nii.gz`` and
  a dataset.json that carries Kaapana's own keys (name, shuffle_seed, network_trainer, model as a list, description,
  reference, licence, release, tensorImageSize, instance_name, max_epochs as a string, ``training`` as a list of
  image/label dicts, test) next to channel_names, file_ending, numTraining and labels, whose ``background`` entry is
  re-added last; for federated runs ``training``/``test`` are emptied.
* ``start_nnunet.sh`` (0900cfb) exports nnUNet_raw / nnUNet_preprocessed / nnUNet_results per mode (for training
  nnUNet_raw is the preprocess operator's folder, one level above the raw dataset) and runs
  ``nnUNetv2_plan_and_preprocess -d <TASK_NUM zero-padded> -pl nnUNetPlannerResEncM -c 3d_fullres -np N
  --verify_dataset_integrity``, ``nnUNetv2_train <TASK_NUM> 3d_fullres <fold, 'all' in its DAGs> -p
  nnUNetResEncUNetMPlans -tr nnUNetTrainer [--npz] [--c]``, ``nnUNetv2_install_pretrained_model_from_zip <zip>``
  (relative name, cwd = the zip's folder) and an export to zip. Some flags only exist in Kaapana's patched build
  (``--increment_step``, ``--fp32``, ``-no_pp``) or are nnU-Net v1's (``find_best_configuration -m/-t/--strict``,
  ``export_model_to_zip -t/-m``); vanilla nnU-Net 2.8.1 refuses them at argument parsing, and so must we.
* The patches read hyperparameters from environment variables in ``nnUNetTrainer.__init__`` (INITIAL_LEARNING_RATE,
  WEIGHT_DECAY, OVERSAMPLE_FOREGROUND_PERCENT, NUM_BATCHES_PER_EPOCH, NUM_VAL_BATCHES_PER_EPOCH, TRAIN_MAX_EPOCHS,
  EPOCHS_PER_ROUND, ENABLE_DEEP_SUPERVISION, DISABLE_CHECKPOINTING), copy the raw dataset.json next to the
  checkpoints, keep the per-class pseudo dice of ``on_validation_epoch_end``, log the last train_losses / val_losses
  / dice_per_class_or_region / epoch timestamps to an ``experiment_results.json`` in ``on_epoch_end``, stop
  ``run_training``'s epoch loop every EPOCHS_PER_ROUND epochs (``on_train_end`` then writes checkpoint_final.pth),
  let checkpoint_final.pth through with checkpointing disabled, skip the final validation for fold 'all', and divide
  the fingerprint extractor's ``num_foreground_voxels_for_intensitystats`` by FED_NUM_CLIENTS. We apply the same
  changes as monkey-patches. They read ``self.logger.my_fantastic_logging``: in 2.8.1 (reference and ours)
  ``self.logger`` is a MetaLogger without that attribute, so the patches must read ``logger.get_value(key,
  step=None)``, as ours below do.
* ``nnunet-federated/processing-containers/nnunet-federated/files/run_nnunet_federated.py`` (0329410) and
  ``base-python-cpu/files/kaapana_federated`` (load_model_weights/save_model_weights): the server reads each site's
  ``nnUNet_preprocessed/.../dataset_fingerprint.json`` (spacings, shapes_after_crop,
  foreground_intensity_properties_per_channel['0'] mean/std/median/min/max/percentile_00_5/percentile_99_5),
  concatenates and re-estimates them, writes the file back, and the sites plan and preprocess again from it (no
  --clean). Per round it loads every site's ``checkpoint_final.pth`` (``torch.load(map_location='cpu')``,
  weights_only=False in the newer scripts: the checkpoint holds numpy scalars), averages ``network_weights`` and
  saves each checkpoint again with only that key replaced; the next round continues with ``--c``.
* ``nnunet/files/simple_predict.py`` (nnunetv2 version): ``nnUNetPredictor(tile_step_size=0.5, use_gaussian=True,
  use_mirroring=True, perform_everything_on_device=True, device=..., verbose=False, verbose_preprocessing=False,
  allow_tqdm=True)``, ``initialize_from_trained_model_folder(<pathlib.Path>, use_folds=<'all' or TRAIN_FOLD split
  into strings>, checkpoint_name='checkpoint_final' + '.pth')``, ``predict_from_files(in, out,
  save_probabilities=..., overwrite=False, num_processes_preprocessing=2, num_processes_segmentation_export=2,
  folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)`` for every model into the same output folder, then
  a seg_info.json from the model's dataset.json labels. ``ensemble.py`` (18c8fcb) calls
  ``ensemble_folders(list_of_input_folders=..., output_folder=..., save_merged_probabilities=True,
  num_processes=...)`` on those folders and globs the output's visible files. ``model-management/files/start.py``
  (18c8fcb) unzips exported models into ``/models/nnUNet`` and reads ``<Dataset>/<trainer__plans__config>/
  dataset.json`` (Kaapana keys, channel_names, labels without background) and plans.json's ``plans_name``.

The whole file also passes when run against the reference 2.8.1.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from _inference_golden import assert_probabilities_close, compare_case  # noqa: E402

TASK_NUM = "001"  # start_nnunet.sh: TASK_NUM=$(printf "%03d" "$TASK_NUM")
TASK_DESCRIPTION = "KaapanaLiver"
DATASET = f"Dataset{TASK_NUM}_{TASK_DESCRIPTION}"
PLANNER, PLANS = "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"
SERIES = ["1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.102", "1.2.826.0.1.3680043.8.498.103"]
SHAPE = (8, 16, 16)


def _kaapana_dataset_json(series, federated=False) -> dict:
    """dataset.json as create_dataset.py writes it: labels built name -> int, then 'Clear Label' popped and
    re-added as 'background' (so it ends up last)."""
    labels = {"liver": 1, "tumor": 2}
    labels["background"] = 0
    training = [] if federated else [{"image": f"./imagesTr/{s}.nii.gz", "label": f"./labelsTr/{s}.nii.gz"}
                                     for s in series]
    return {"name": f"Task{TASK_NUM}_{TASK_DESCRIPTION}", "shuffle_seed": 0, "network_trainer": "nnUNetTrainer",
            "model": ["3d_fullres"], "description": "nnUNet training", "reference": "nnUNet", "licence": "N/A",
            "release": "N/A", "tensorImageSize": "3D", "channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
            "labels": labels, "numTraining": len(series), "numTest": 0, "instance_name": "central",
            "max_epochs": "2", "training": training, "test": []}


def _write_raw(task_dir: Path, series, federated=False) -> None:
    rs = np.random.RandomState(0)
    for s in series:
        img = rs.normal(100, 15, SHAPE).astype(np.float32)
        seg = np.zeros(SHAPE, np.uint8)
        seg[2:6, 4:12, 4:12] = 1
        seg[3:5, 6:9, 6:9] = 2
        img[seg == 1] += 200
        img[seg == 2] += 400
        for arr, sub, name in ((img, "imagesTr", f"{s}_0000.nii.gz"), (seg, "labelsTr", f"{s}.nii.gz")):
            (task_dir / sub).mkdir(parents=True, exist_ok=True)
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(task_dir / sub / name))
    (task_dir / "dataset.json").write_text(json.dumps(_kaapana_dataset_json(series, federated), indent=4))


def _run_entry(monkeypatch, entry, argv):
    monkeypatch.setattr(sys, "argv", argv)
    entry()


def _no_torch_thread_changes(monkeypatch):
    # the commands set torch's thread counts as a fresh process would; kept away from this test process
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: None)


@pytest.fixture(scope="module")
def kaapana(tmp_path_factory):
    """The preprocess operator's output, as start_nnunet.sh (MODE=preprocess) leaves it: raw dataset from
    create_dataset.py, then nnUNetv2_plan_and_preprocess with Kaapana's flags (minus its patched-only ones)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry

    workflow = tmp_path_factory.mktemp("kaapana_workflow")
    prep_out = workflow / "nnunet-preprocess"
    mp = pytest.MonkeyPatch()
    env = {"nnUNet_raw": prep_out / "nnUNet_raw", "nnUNet_preprocessed": prep_out / "nnUNet_preprocessed",
           "nnUNet_results": prep_out / "results"}
    for name, path in env.items():
        path.mkdir(parents=True)
        mp.setenv(name, str(path))
    mp.delenv("nnUNet_compile", raising=False)
    import nnunetv2.configuration
    mp.setattr(nnunetv2.configuration, "default_num_processes", 1)
    _write_raw(env["nnUNet_raw"] / DATASET, SERIES)
    with pytest.MonkeyPatch.context() as argv_mp:
        _run_entry(argv_mp, plan_and_preprocess_entry,
                   ["nnUNetv2_plan_and_preprocess", "-d", TASK_NUM, "-pl", PLANNER, "-c", "3d_fullres", "-np", "1",
                    "--verify_dataset_integrity"])
    # a smaller network of the same class keeps the training tests quick
    plans_file = env["nnUNet_preprocessed"] / DATASET / f"{PLANS}.json"
    plans = json.loads(plans_file.read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [4, 8, 16][:arch["n_stages"]]
    arch["n_blocks_per_stage"] = [1] * arch["n_stages"]
    plans_file.write_text(json.dumps(plans, indent=4))
    yield SimpleNamespace(workflow=workflow, prep_out=prep_out, raw=env["nnUNet_raw"] / DATASET,
                          preprocessed=env["nnUNet_preprocessed"] / DATASET, mp=mp)
    mp.undo()


def test_planning_keeps_kaapanas_dataset_json_and_names_the_plans_as_its_script_expects(kaapana):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw_json = json.loads((kaapana.raw / "dataset.json").read_text())
    assert json.loads((kaapana.preprocessed / "dataset.json").read_text()) == raw_json  # every Kaapana key kept
    # start_nnunet.sh maps -pl nnUNetPlannerResEncM to -p nnUNetResEncUNetMPlans for training
    plans = json.loads((kaapana.preprocessed / f"{PLANS}.json").read_text())
    assert plans["plans_name"] == PLANS and plans["dataset_name"] == DATASET
    assert "3d_fullres" in plans["configurations"]
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"].endswith(
        "ResidualEncoderUNet")
    # the ResEnc planners share the default planner's preprocessed data
    assert plans["configurations"]["3d_fullres"]["data_identifier"] == "nnUNetPlans_3d_fullres"
    assert (kaapana.preprocessed / "nnUNetPlans_3d_fullres").is_dir()
    assert sorted(p.name for p in (kaapana.preprocessed / "gt_segmentations").iterdir()) == \
        sorted(f"{s}.nii.gz" for s in SERIES)
    # background listed last: the label manager still orders the labels by value
    lm = PlansManager(plans).get_label_manager(raw_json)
    assert [int(i) for i in lm.all_labels] == [0, 1, 2] and [int(i) for i in lm.foreground_labels] == [1, 2]
    assert lm.num_segmentation_heads == 3 and not lm.has_regions
    # what the federated server reads from every site's fingerprint
    fp = json.loads((kaapana.preprocessed / "dataset_fingerprint.json").read_text())
    assert {"spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel"} <= set(fp)
    assert len(fp["spacings"]) == len(fp["shapes_after_crop"]) == len(SERIES)
    assert set(fp["foreground_intensity_properties_per_channel"]) == {"0"}
    assert set(fp["foreground_intensity_properties_per_channel"]["0"]) == \
        {"mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5"}


def test_federated_dataset_json_without_training_list_passes_the_integrity_check(kaapana, tmp_path):
    """For federated runs create_dataset.py empties 'training'/'test'; nnU-Net v2 lists imagesTr itself."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    task_dir = tmp_path / DATASET
    _write_raw(task_dir, SERIES, federated=True)
    verify_dataset_integrity(str(task_dir), 1)
    cases = get_filenames_of_train_images_and_targets(str(task_dir))
    assert sorted(cases) == sorted(SERIES)
    assert cases[SERIES[0]]["images"] == [str(task_dir / "imagesTr" / f"{SERIES[0]}_0000.nii.gz")]


@pytest.mark.parametrize("argv,message", [
    # start_nnunet.sh's commands as written for Kaapana's patched build; vanilla 2.8.1 answers exactly so
    (["nnUNetv2_plan_and_preprocess", "-d", TASK_NUM, "-pl", PLANNER, "-c", "3d_fullres", "-np", "2",
      "--increment_step", "all", "--verify_dataset_integrity"], "unrecognized arguments: --increment_step all"),
    (["nnUNetv2_plan_and_preprocess", "-d", TASK_NUM, "-pl", PLANNER, "-c", "3d_fullres", "-np", "2", "-no_pp"],
     "unrecognized arguments: -no_pp"),
    (["nnUNetv2_train", TASK_NUM, "3d_fullres", "all", "-p", PLANS, "-tr", "nnUNetTrainer", "--fp32", "--npz"],
     "unrecognized arguments: --fp32"),
    (["nnUNetv2_find_best_configuration", "-m", "3d_fullres", "-t", TASK_NUM, "--strict"],
     "unrecognized arguments: -m --strict"),
    (["nnUNetv2_export_model_to_zip", "-t", DATASET, "-m", "3d_fullres", "-tr", "nnUNetTrainer", "-o", "x.zip",
      "-f", "0", "1", "2", "3", "4"], "the following arguments are required: -d"),
])
def test_kaapana_only_flags_are_refused_at_parsing_like_the_reference(argv, message, monkeypatch, capsys):
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration_entry_point
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry
    from nnunetv2.model_sharing.entry_points import export_pretrained_model_entry
    from nnunetv2.run.run_training import run_training_entry

    entry = {"nnUNetv2_plan_and_preprocess": plan_and_preprocess_entry, "nnUNetv2_train": run_training_entry,
             "nnUNetv2_find_best_configuration": find_best_configuration_entry_point,
             "nnUNetv2_export_model_to_zip": export_pretrained_model_entry}[argv[0]]
    with pytest.raises(SystemExit) as e:
        _run_entry(monkeypatch, entry, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"{argv[0]}: error: {message}"


def test_federated_fingerprint_written_back_by_the_server_drives_planning_and_preprocessing(kaapana, monkeypatch):
    """Round -2 of run_nnunet_federated.py: concatenate the sites' fingerprints, replace the intensity statistics by
    the global estimate (the v1-style keys mn/mx/sd are added next to the v2 ones), write the file back; the sites
    then plan and preprocess from it without --clean."""
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    fp_file = kaapana.preprocessed / "dataset_fingerprint.json"
    original = fp_file.read_text()
    local = json.loads(original)
    remote = copy.deepcopy(local)  # another site: more cases, larger after cropping
    remote["shapes_after_crop"] = [[10, 20, 20]] * 4
    remote["spacings"] = [local["spacings"][0]] * 4
    merged = copy.deepcopy(local)
    for k in ("shapes_after_crop", "spacings"):
        merged[k] = merged[k] + remote[k]
    glob = {"mn": 80.0, "mx": 900.0, "mean": 250.0, "sd": 90.0, "median": 240.0, "percentile_00_5": 120.0,
            "percentile_99_5": 600.0}
    merged["foreground_intensity_properties_per_channel"]["0"].update(glob)
    merged["foreground_intensity_properties_per_channel"]["0"]["std"] = 90.0
    fp_file.write_text(json.dumps(merged))
    try:
        _run_entry(monkeypatch, plan_and_preprocess_entry,
                   ["nnUNetv2_plan_and_preprocess", "-d", TASK_NUM, "-pl", "ExperimentPlanner", "-c", "3d_fullres",
                    "-np", "1", "-overwrite_plans_name", "nnUNetKaapanaFedPlans"])
        assert json.loads(fp_file.read_text()) == merged  # reused, not recomputed
        plans = json.loads((kaapana.preprocessed / "nnUNetKaapanaFedPlans.json").read_text())
        # the plans carry the server's statistics verbatim, extra keys included
        assert plans["foreground_intensity_properties_per_channel"] == \
            merged["foreground_intensity_properties_per_channel"]
        assert plans["original_median_shape_after_transp"] == [10, 20, 20]  # 4 of the 7 cases are the remote ones
        assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
        # CT normalisation of the site's own data uses the global percentiles, mean and std
        folder = kaapana.preprocessed / "nnUNetKaapanaFedPlans_3d_fullres"
        data, seg, _, props = infer_dataset_class(str(folder))(str(folder)).load_case(SERIES[0])
        raw = sitk.GetArrayFromImage(sitk.ReadImage(str(kaapana.raw / "imagesTr" / f"{SERIES[0]}_0000.nii.gz")))
        expected = (np.clip(raw, 120.0, 600.0) - 250.0) / 90.0
        assert tuple(props["shape_after_cropping_and_before_resampling"]) == SHAPE
        np.testing.assert_allclose(np.asarray(data[0]), expected, rtol=1e-5, atol=1e-5)
    finally:
        fp_file.write_text(original)


# fingerprint of the three cases above with 10e7 // 5_000_000 = 20 foreground voxels in all (6 per case), as the
# reference 2.8.1 computes it with the same patch (the full budget gives max 528.6, std 54.1)
SMALL_BUDGET_STATS = {"max": 333.81427001953125, "mean": 305.8072814941406, "median": 307.04798889160156,
                      "min": 275.9722595214844, "percentile_00_5": 276.730906829834,
                      "percentile_99_5": 333.6537614440918, "std": 15.603423118591309}


def test_fingerprint_voxel_budget_patched_into_the_extractor_is_used_by_the_command(kaapana, tmp_path, monkeypatch):
    """fingerprint_extractor.patch: __init__ divides num_foreground_voxels_for_intensitystats by FED_NUM_CLIENTS;
    the sites then run the fingerprint step (vanilla: nnUNetv2_extract_fingerprint)."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import extract_fingerprint_entry

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    shutil.copytree(kaapana.raw, tmp_path / "nnUNet_raw" / DATASET)
    original_init = DatasetFingerprintExtractor.__init__

    def __init__(self, dataset_name_or_id, num_processes: int = 8, verbose: bool = False):
        original_init(self, dataset_name_or_id, num_processes, verbose)
        clients = os.getenv("FED_NUM_CLIENTS", None)
        self.fed_num_clients = int(clients) if clients else 1
        self.num_foreground_voxels_for_intensitystats = 10e7 // self.fed_num_clients

    monkeypatch.setattr(DatasetFingerprintExtractor, "__init__", __init__)
    monkeypatch.setenv("FED_NUM_CLIENTS", "5000000")
    _run_entry(monkeypatch, extract_fingerprint_entry,
               ["nnUNetv2_extract_fingerprint", "-d", TASK_NUM, "-np", "1", "--clean", "--verify_dataset_integrity"])
    fp = json.loads((tmp_path / "nnUNet_preprocessed" / DATASET / "dataset_fingerprint.json").read_text())
    assert fp["foreground_intensity_properties_per_channel"]["0"] == pytest.approx(SMALL_BUDGET_STATS, rel=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# Kaapana's trainer patches, applied to nnUNetTrainer as monkey-patches


def _apply_kaapana_trainer_patches(monkeypatch, workflow: Path, op_in: str, op_out: str):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    monkeypatch.setenv("WORKFLOW_DIR", str(workflow))
    monkeypatch.setenv("OPERATOR_IN_DIR", op_in)
    monkeypatch.setenv("OPERATOR_OUT_DIR", op_out)
    monkeypatch.setenv("TASK_NUM", TASK_NUM)
    monkeypatch.setenv("TASK_DESCRIPTION", TASK_DESCRIPTION)
    monkeypatch.setenv("MODE", "training")
    orig_init = nnUNetTrainer.__init__
    orig_val_end = nnUNetTrainer.on_validation_epoch_end
    orig_epoch_end = nnUNetTrainer.on_epoch_end
    orig_save = nnUNetTrainer.save_checkpoint
    calls = {"start_weights": [], "saved": []}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        orig_init(self, plans, configuration, fold, dataset_json, device)
        env = os.environ
        self.initial_lr = float(env.get("INITIAL_LEARNING_RATE", self.initial_lr))
        self.weight_decay = float(env.get("WEIGHT_DECAY", self.weight_decay))
        self.oversample_foreground_percent = float(env.get("OVERSAMPLE_FOREGROUND_PERCENT",
                                                           self.oversample_foreground_percent))
        self.num_iterations_per_epoch = int(env.get("NUM_BATCHES_PER_EPOCH", self.num_iterations_per_epoch))
        self.num_val_iterations_per_epoch = int(env.get("NUM_VAL_BATCHES_PER_EPOCH",
                                                        self.num_val_iterations_per_epoch))
        self.num_epochs = int(env.get("TRAIN_MAX_EPOCHS", self.num_epochs))
        self.epochs_per_round = int(env.get("EPOCHS_PER_ROUND", self.num_epochs))
        self.enable_deep_supervision = str(env.get("ENABLE_DEEP_SUPERVISION", True)).lower() == "true"
        self.disable_checkpointing = str(env.get("DISABLE_CHECKPOINTING", "False")).lower() == "true"
        raw_json = Path("/", env["WORKFLOW_DIR"], env["OPERATOR_IN_DIR"], "nnUNet_raw",
                        f"Dataset{int(env['TASK_NUM']):03}_{env['TASK_DESCRIPTION']}", "dataset.json")
        target = Path(self.output_folder) / "dataset.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw_json, target)
        self.dataset_labels = json.loads(target.read_text())["labels"]
        self.kaapana_results = Path("/", env["WORKFLOW_DIR"], env["OPERATOR_OUT_DIR"], "experiment_results.json")

    def on_validation_epoch_end(self, val_outputs):
        orig_val_end(self, val_outputs)
        self.global_dc_per_class = list(self.logger.get_value("dice_per_class_or_region", step=None)[-1])

    def on_epoch_end(self):
        def last(key):  # 2.8.1's MetaLogger: the patches' logger.my_fantastic_logging[key][-1]
            return self.logger.get_value(key, step=None)[-1]

        entry = {"loss/train": float(np.round(last("train_losses"), 4)),
                 "loss/val": float(np.round(last("val_losses"), 4))}
        for name, idx in self.dataset_labels.items():
            if name != "background":
                entry[f"foreground-dice/label_{name}"] = float(self.global_dc_per_class[int(idx) - 1])
        entry.update({"epoch": self.current_epoch, "fold": self.fold,
                      "epoch_started": float(last("epoch_start_timestamps"))})
        previous = json.loads(self.kaapana_results.read_text()) if self.kaapana_results.is_file() else []
        self.kaapana_results.write_text(json.dumps(previous + [entry]))
        orig_epoch_end(self)

    def save_checkpoint(self, filename: str) -> None:
        calls["saved"].append(os.path.basename(filename))
        if self.disable_checkpointing and filename.endswith("checkpoint_final.pth"):
            self.disable_checkpointing = False  # intermediate checkpoints off, the final one always written
            try:
                return orig_save(self, filename)
            finally:
                self.disable_checkpointing = True
        return orig_save(self, filename)

    def run_training(self):
        self.on_train_start()
        calls["start_weights"].append({k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()})
        for epoch in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            self.on_train_epoch_start()
            self.on_train_epoch_end([self.train_step(next(self.dataloader_train))
                                     for _ in range(self.num_iterations_per_epoch)])
            with torch.no_grad():
                self.on_validation_epoch_start()
                self.on_validation_epoch_end([self.validation_step(next(self.dataloader_val))
                                              for _ in range(self.num_val_iterations_per_epoch)])
            self.on_epoch_end()
            if (epoch + 1) % self.epochs_per_round == 0 and (epoch + 1) != self.num_epochs:
                self.print_to_log_file(f"Interrupting training due to epochs_per_round={self.epochs_per_round}")
                break
        self.on_train_end()

    for name, fn in (("__init__", __init__), ("on_validation_epoch_end", on_validation_epoch_end),
                     ("on_epoch_end", on_epoch_end), ("save_checkpoint", save_checkpoint),
                     ("run_training", run_training)):
        monkeypatch.setattr(nnUNetTrainer, name, fn)
    return calls


def _kaapana_run_training(fold, continue_training: bool, npz: bool):
    """run_training as Kaapana's run_training.patch leaves it: no final validation for fold 'all'."""
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    trainer = get_trainer_from_args(TASK_NUM, "3d_fullres", fold, "nnUNetTrainer", PLANS, device=torch.device("cpu"))
    maybe_load_checkpoint(trainer, continue_training, False, None)
    trainer.run_training()
    if fold != "all":
        trainer.perform_actual_validation(npz)
    return trainer


def _load(path: Path) -> dict:
    return torch.load(path, map_location=torch.device("cpu"), weights_only=False)


def _set_env(mp, env: dict) -> None:
    for k, v in env.items():
        mp.setenv(k, str(v))


@pytest.fixture(scope="module")
def trained(kaapana):
    """Two federated rounds of the nnunet-training operator on the preprocess operator's output, with Kaapana's
    trainer patches and the server's FedAvg of the checkpoints in between; what each step left is recorded."""
    from nnunetv2.run.run_training import run_training_entry

    train_out = "nnunet-training"
    results = kaapana.workflow / train_out / "results"
    fold_dir = results / DATASET / f"nnUNetTrainer__{PLANS}__3d_fullres" / "fold_all"
    experiment_results = kaapana.workflow / train_out / "experiment_results.json"
    rec = SimpleNamespace(results=results, fold_dir=fold_dir, experiment_results=experiment_results,
                          train_env={"nnUNet_raw": kaapana.prep_out,  # start_nnunet.sh, MODE=training: the
                                     # preprocess operator's folder, not the raw dataset's parent
                                     "nnUNet_preprocessed": kaapana.prep_out / "nnUNet_preprocessed",
                                     "nnUNet_results": results})
    with pytest.MonkeyPatch.context() as mp:
        _no_torch_thread_changes(mp)
        mp.setenv("nnUNet_n_proc_DA", "0")  # augmentation in this process
        _set_env(mp, rec.train_env)
        _set_env(mp, {"TRAIN_MAX_EPOCHS": 2, "EPOCHS_PER_ROUND": 1, "NUM_BATCHES_PER_EPOCH": 2,
                      "NUM_VAL_BATCHES_PER_EPOCH": 1, "INITIAL_LEARNING_RATE": 0.005, "DISABLE_CHECKPOINTING": True})
        calls = _apply_kaapana_trainer_patches(mp, kaapana.workflow, kaapana.prep_out.name, train_out)

        # round 0: the command Kaapana runs (fold 'all', --npz), on the CPU
        _run_entry(mp, run_training_entry, ["nnUNetv2_train", TASK_NUM, "3d_fullres", "all", "-p", PLANS, "-tr",
                                            "nnUNetTrainer", "--npz", "-device", "cpu"])
        rec.round0_ckpt = _load(fold_dir / "checkpoint_final.pth")
        rec.round0_files = sorted(os.listdir(fold_dir))
        rec.round0_validation = sorted(os.listdir(fold_dir / "validation"))
        rec.round0_log = json.loads(experiment_results.read_text())

        # the server: a second site's checkpoint, FedAvg of network_weights, each checkpoint saved again
        site_b = kaapana.workflow / "site_b" / "checkpoint_final.pth"
        site_b.parent.mkdir()
        b = _load(fold_dir / "checkpoint_final.pth")
        b["network_weights"] = {k: v + 0.5 for k, v in b["network_weights"].items()}
        torch.save(b, site_b)
        sites = [fold_dir / "checkpoint_final.pth", site_b]
        weights = [_load(f)["network_weights"] for f in sites]
        rec.averaged = {k: sum(w[k] for w in weights) / len(weights) for k in weights[0]}
        for f in sites:
            c = _load(f)
            os.remove(f)
            c["network_weights"] = rec.averaged
            torch.save(c, f)

        # round 1: train_continue=True -> --c, through the patched run_training (no validation for fold 'all')
        calls["saved"].clear()
        rec.round1_trainer = _kaapana_run_training("all", continue_training=True, npz=True)
        rec.calls = calls
    rec.final_ckpt = _load(fold_dir / "checkpoint_final.pth")
    rec.final_log = json.loads(experiment_results.read_text())
    return rec


def test_round_zero_with_kaapanas_patches_through_nnUNetv2_train(trained, kaapana):
    ckpt = trained.round0_ckpt
    assert set(ckpt) == {"network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema",
                         "current_epoch", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}
    assert ckpt["current_epoch"] == 1  # stopped after EPOCHS_PER_ROUND epochs; final checkpoint written anyway
    assert ckpt["init_args"]["fold"] == "all" and ckpt["trainer_name"] == "nnUNetTrainer"
    assert ckpt["optimizer_state"]["param_groups"][0]["initial_lr"] == 0.005  # INITIAL_LEARNING_RATE
    assert {k: len(v) for k, v in ckpt["logging"].items()} == {k: 1 for k in ckpt["logging"]}
    assert [f for f in trained.round0_files if f.endswith(".pth")] == ["checkpoint_final.pth"]  # no best/latest
    assert "dataset.json" in trained.round0_files  # the patch's copy of the raw dataset.json
    # vanilla nnUNetv2_train validates fold 'all' too, --npz keeps the probabilities
    assert {"summary.json"} | {f"{s}.npz" for s in SERIES} <= set(trained.round0_validation)
    log = trained.round0_log
    assert [e["epoch"] for e in log] == [0] and log[0]["fold"] == "all"
    assert {"loss/train", "loss/val", "foreground-dice/label_liver", "foreground-dice/label_tumor"} <= set(log[0])
    assert np.isfinite(log[0]["loss/train"]) and 0.0 <= log[0]["foreground-dice/label_liver"] <= 1.0


def test_round_one_continues_from_the_averaged_checkpoint(trained):
    start = trained.calls["start_weights"][-1]  # the network as run_training found it after maybe_load_checkpoint
    assert set(start) == set(trained.averaged)
    for k, v in trained.averaged.items():
        torch.testing.assert_close(start[k], v.float(), msg=k)
    assert trained.round1_trainer.current_epoch == 2
    ckpt = trained.final_ckpt
    assert ckpt["current_epoch"] == 2
    assert {k: len(v) for k, v in ckpt["logging"].items()} == {k: 2 for k in ckpt["logging"]}
    assert trained.calls["saved"][-1] == "checkpoint_final.pth"
    assert sorted(f for f in os.listdir(trained.fold_dir) if f.endswith(".pth")) == ["checkpoint_final.pth"]
    assert [e["epoch"] for e in trained.final_log] == [0, 1]


def test_export_install_and_predict_the_kaapana_way(trained, kaapana, monkeypatch, tmp_path):
    """export-model / install-model modes, model-management's reading of the installed folder, and
    simple_predict.py's calls for a fold 'all' model (Path of the trainer folder, use_folds='all')."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.model_sharing.entry_points import export_pretrained_model_entry, install_from_zip_entry_point

    _set_env(monkeypatch, trained.train_env)
    zip_file = tmp_path / "nnunet_model_3d_fullres.zip"
    with pytest.raises((SystemExit, RuntimeError, AssertionError)) as e:  # Kaapana asks for -f 0 1 2 3 4
        _run_entry(monkeypatch, export_pretrained_model_entry,
                   ["nnUNetv2_export_model_to_zip", "-d", DATASET, "-c", "3d_fullres", "-tr", "nnUNetTrainer", "-p",
                    PLANS, "-o", str(zip_file), "-f", "0", "1", "2", "3", "4"])
    assert not (isinstance(e.value, SystemExit) and e.value.code in (0, None))
    _run_entry(monkeypatch, export_pretrained_model_entry,
               ["nnUNetv2_export_model_to_zip", "-d", DATASET, "-c", "3d_fullres", "-tr", "nnUNetTrainer", "-p",
                PLANS, "-o", str(zip_file), "-f", "all"])
    models = tmp_path / "models" / "nnUNet"  # install-model: nnUNet_results=$MODELS_DIR
    models.mkdir(parents=True)
    monkeypatch.setenv("nnUNet_results", str(models))
    monkeypatch.chdir(tmp_path)
    _run_entry(monkeypatch, install_from_zip_entry_point,
               ["nnUNetv2_install_pretrained_model_from_zip", zip_file.name])

    # model-management/start.py: <models>/<Dataset>/<trainer__plans__config>/{dataset.json, plans.json}
    assert sorted(p.name for p in models.iterdir()) == [DATASET]
    task_ids = [f"{d.name}---{m.name}" for d in models.iterdir() for m in d.iterdir() if m.is_dir()]
    assert task_ids == [f"{DATASET}---nnUNetTrainer__{PLANS}__3d_fullres"]
    model_dir = models / DATASET / f"nnUNetTrainer__{PLANS}__3d_fullres"
    dataset_json = json.loads((model_dir / "dataset.json").read_text())
    raw_json = json.loads((kaapana.raw / "dataset.json").read_text())
    for key in ("description", "channel_names", "labels", "network_trainer", "model", "instance_name"):
        assert dataset_json[key] == raw_json[key], key
    assert [k for k in dataset_json["labels"] if k != "background"] == ["liver", "tumor"]
    assert json.loads((model_dir / "plans.json").read_text())["plans_name"] == PLANS
    assert (model_dir / "fold_all" / "checkpoint_final.pth").is_file()

    # simple_predict.py: inputs copied to nnunet-input-data as <series>_0000.nii.gz, one model after the other
    # into the same output folder with overwrite=False
    inputs = tmp_path / "nnunet-input-data"
    inputs.mkdir()
    for s in SERIES[:2]:
        shutil.copy2(kaapana.raw / "imagesTr" / f"{s}_0000.nii.gz", inputs / f"{s}_0000.nii.gz")
    out = tmp_path / "batch" / "element" / "nnunet-predict"
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=True, device=torch.device("cpu"), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=True)
    predictor.initialize_from_trained_model_folder(Path(model_dir), use_folds="all",
                                                   checkpoint_name="checkpoint_final" + ".pth")
    predictor.predict_from_files(str(inputs), str(out), save_probabilities=False, overwrite=False,
                                 num_processes_preprocessing=2, num_processes_segmentation_export=2,
                                 folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)
    for s in SERIES[:2]:
        seg = sitk.ReadImage(str(out / f"{s}.nii.gz"))
        assert seg.GetSize() == SHAPE[::-1] and seg.GetSpacing() == (1.0, 1.0, 2.0)
        assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1, 2}
    # write_seg_info: label_name/label_int from the model's dataset.json
    seg_info = [{"label_name": k, "label_int": str(v)} for k, v in json.loads(
        (model_dir / "dataset.json").read_text())["labels"].items()]
    assert seg_info[-1] == {"label_name": "background", "label_int": "0"}


def _copy_case(src: Path, dst: Path, case: str) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for ext in (".nii.gz", ".npz", ".pkl"):
        shutil.copy2(src / f"{case}{ext}", dst / f"{case}{ext}")


def test_simple_predict_calls_and_ensemble_on_a_reference_model(golden_model_dir, golden_raw, shared_dir, tmp_path):
    """simple_predict.py's predictor arguments (TRAIN_FOLD='0' split into ['0'], the model folder as a Path,
    overwrite=False), a second run into the same folder, then ensemble.py's ensemble_folders call on folders that
    also hold Kaapana's seg_info.json."""
    from nnunetv2.ensembling.ensemble import ensemble_folders
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    ds = "Dataset902_SynthMRRegions"
    model = golden_model_dir(ds)
    ref = shared_dir / "reference" / "models" / ds / "predictions"
    inputs = tmp_path / "nnunet-input-data"
    inputs.mkdir()
    for c in ("0000", "0001"):
        shutil.copy2(golden_raw(ds) / "imagesTs" / f"mr_008_{c}.nii.gz", inputs / f"mr_008_{c}.nii.gz")
    out = tmp_path / "element" / "do-inference"
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=True, device=torch.device("cpu"), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=True)
    predictor.initialize_from_trained_model_folder(Path(model), use_folds="0".split(","),
                                                   checkpoint_name="checkpoint_final" + ".pth")

    def predict():
        predictor.predict_from_files(str(inputs), str(out), save_probabilities=True, overwrite=False,
                                     num_processes_preprocessing=2, num_processes_segmentation_export=2,
                                     folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)

    predict()
    compare_case(out, ref / "default", "mr_008", ".nii.gz")
    assert json.loads((out / "dataset.json").read_text()) == json.loads((model / "dataset.json").read_text())
    assert (out / "plans.json").is_file()
    written = {f: (out / f).stat().st_mtime_ns for f in ("mr_008.nii.gz", "mr_008.npz")}
    predict()  # the next model of the loop, same output folder, overwrite=False: nothing is redone
    assert {f: (out / f).stat().st_mtime_ns for f in written} == written

    seg_info = {"seg_info": [{"label_name": k, "label_int": str(v)} for k, v in
                             json.loads((model / "dataset.json").read_text())["labels"].items()],
                "task_id": ds, "algorithm": ds + model.name}
    (out / "seg_info.json").write_text(json.dumps(seg_info))
    other = tmp_path / "element2" / "do-inference"
    _copy_case(ref / "disable_tta", other, "mr_008")
    (other / "seg_info.json").write_text(json.dumps(seg_info))
    combination = tmp_path / "do-ensemble" / "combination_0"
    combination.mkdir(parents=True)
    ensemble_folders(list_of_input_folders=[str(out), str(other)], output_folder=str(combination),
                     save_merged_probabilities=True, num_processes=2)
    visible = sorted(f for f in os.listdir(combination) if not f.startswith("."))  # what ensemble.py globs
    assert visible == ["dataset.json", "mr_008.nii.gz", "mr_008.npz", "mr_008.pkl"]
    merged = np.load(combination / "mr_008.npz")["probabilities"]
    expected = (np.load(ref / "default" / "mr_008.npz")["probabilities"].astype(np.float64) +
                np.load(ref / "disable_tta" / "mr_008.npz")["probabilities"]) / 2
    assert_probabilities_close(merged, expected.astype(np.float32))
