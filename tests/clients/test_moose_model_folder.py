"""MOOSE's model folders and predictor calls (moosez 3.2.2, read from its public wheel), beyond
test_moose_patterns.py: fabricated model, no golden data, no client package.

* MOOSE passes ``use_folds`` as the fold folder names minus ``fold_`` (strings, several folds);
* its real models name its own trainer ``nnUNetTrainer_2000_epochs_DA5NoMirroring`` (a subclass of nnUNetTrainerDA5
  that MOOSE copies into the installed nnunetv2; here it is found through nnUNet_extTrainer instead);
* plans with a non-identity ``transpose_forward``; MOOSE preprocesses with ``run_case_npy`` and properties holding
  only ``spacing`` and adds a ``location`` key to every item of ``predict_from_data_iterator``.
"""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from _tiny_plans import tiny_unet_plans

TRAINER = "nnUNetTrainer_2000_epochs_DA5NoMirroring"
# a trainer in the style of MOOSE's own (written here): DA5 augmentation, the pre-2.6 constructor with
# unpack_dataset, 2000 epochs, mirroring off for training and inference
TRAINER_SOURCE = textwrap.dedent('''
    import torch
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5


    class nnUNetTrainer_2000_epochs_DA5NoMirroring(nnUNetTrainerDA5):
        def __init__(self, plans, configuration, fold, dataset_json, unpack_dataset=True,
                     device=torch.device('cuda')):
            super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
            self.num_epochs = 2000

        def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
            settings = list(super().configure_rotation_dummyDA_mirroring_and_inital_patch_size())
            settings[3] = self.inference_allowed_mirroring_axes = None
            return tuple(settings)
''')
CT_INTENSITIES = {"max": 3000.0, "mean": 60.0, "median": 45.0, "min": -1024.0, "percentile_00_5": -900.0,
                  "percentile_99_5": 1200.0, "std": 220.0}


def _plans() -> dict:
    """MOOSE's body model has a transposed plan and CT normalisation."""
    plans = tiny_unet_plans("Dataset001_body", (4.0, 4.0, 4.0), "CTNormalization", CT_INTENSITIES)
    plans["transpose_forward"] = plans["transpose_backward"] = [0, 2, 1]
    return plans


@pytest.fixture()
def moose_model(tmp_path, monkeypatch):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "MOOSE_custom_trainers.py").write_text(TRAINER_SOURCE)
    monkeypatch.setenv("nnUNet_extTrainer", str(ext))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, "")  # moosez.system blanks them at import
    folder = tmp_path / "Dataset001_body" / f"{TRAINER}__nnUNetPlans__3d_fullres"
    plans = _plans()
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2, "c": 3},
                    "numTraining": 10, "file_ending": ".nii.gz"}
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    cm = PlansManager(plans).get_configuration("3d_fullres")
    for fold in ("0", "1"):
        torch.manual_seed(int(fold))
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, 4, allow_init=True,
                                     deep_supervision=True)
        (folder / f"fold_{fold}").mkdir()
        torch.save({"network_weights": net.state_dict(), "trainer_name": TRAINER,
                    "inference_allowed_mirroring_axes": None, "current_epoch": 1000,
                    "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": int(fold),
                                  "dataset_json": dataset_json, "device": "cpu"}},
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def test_string_folds_custom_trainer_transposed_plan_extra_item_key(moose_model):
    folds = tuple(sorted(p.name.replace("fold_", "") for p in moose_model.iterdir() if p.is_dir()))
    assert folds == ("0", "1")
    predictor = nnUNetPredictor(allow_tqdm=False, device=torch.device("cpu"))
    predictor.initialize_from_trained_model_folder(str(moose_model), use_folds=folds)
    assert predictor.trainer_name == TRAINER
    assert len(predictor.list_of_parameters) == 2
    assert predictor.allowed_mirroring_axes is None

    rng = np.random.default_rng(0)
    image = rng.normal(0, 300, (1, 40, 20, 28)).astype(np.float32)  # chunk of a long scan (z, y, x)
    chunks = [image[:, :24], image[:, 16:]]
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=True)
    items = []
    for i, chunk in enumerate(chunks):
        data, seg, props = preprocessor.run_case_npy(chunk, None, {"spacing": (4.0, 4.0, 4.0)},
                                                     predictor.plans_manager, predictor.configuration_manager,
                                                     predictor.dataset_json)
        assert data.shape[0] == 1
        assert {"shape_before_cropping", "bbox_used_for_cropping",
                "shape_after_cropping_and_before_resampling"} <= set(props)
        items.append({"data": torch.from_numpy(data).contiguous(), "data_properties": props, "ofile": None,
                      "location": {"index": i}})
    segmentations = predictor.predict_from_data_iterator(iter(items))
    assert len(segmentations) == 2
    for chunk, seg in zip(chunks, segmentations):
        assert seg.shape == chunk.shape[1:]
        alone = predictor.predict_single_npy_array(chunk, {"spacing": (4.0, 4.0, 4.0)})
        assert np.array_equal(seg, alone)
    assert len(np.unique(np.concatenate([s.ravel() for s in segmentations]))) > 1
