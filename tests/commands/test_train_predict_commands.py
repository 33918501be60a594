"""nnUNetv2_train, nnUNetv2_predict and nnUNetv2_predict_from_modelfolder at their default worker counts (data
augmentation processes, validation export processes, -npp, -nps) on the shared workspace, with value checks:
the five-fold prediction of identical folds equals the training's own validation of fold 0."""
from __future__ import annotations

import json
import pickle

import numpy as np

from _commands_helpers import N_TRAIN, case_ids, model_folder, read_seg


def test_train_writes_checkpoint_and_validation(trained, predicted):
    ws = trained.ws
    val_cases = predicted.splits[0]["val"]
    assert len(val_cases) == 3  # 15 cases in five folds: the default export workers outnumber the cores and cases
    for configuration in ("3d_fullres", "2d"):
        fold0 = model_folder(ws, configuration) / "fold_0"
        assert (fold0 / "checkpoint_final.pth").is_file()
        assert not [p for p in fold0.rglob(".nnunet_tmp_*")]
        validation = fold0 / "validation"
        for case in val_cases:
            for ending in (".nii.gz", ".npz", ".pkl"):
                assert (validation / f"{case}{ending}").is_file(), (configuration, case + ending)
        summary = json.loads((validation / "summary.json").read_text())
        assert sorted(m["prediction_file"].rsplit("/", 1)[-1] for m in summary["metric_per_case"]) == \
            [f"{c}.nii.gz" for c in sorted(val_cases)]
        debug = json.loads((fold0 / "debug.json").read_text())
        assert debug["device"] == "cpu" and debug["num_epochs"] == "1"


def test_predict_outputs_for_every_case(predicted):
    for configuration, folder in predicted.out.items():
        assert case_ids(folder) == [f"case_{i:03d}" for i in range(N_TRAIN)], configuration
        assert case_ids(folder, ".npz") == case_ids(folder) == case_ids(folder, ".pkl")
        for name in ("dataset.json", "plans.json", "predict_from_raw_data_args.json"):
            assert (folder / name).is_file(), (configuration, name)
        assert not [p for p in folder.iterdir() if p.name.startswith(".nnunet_tmp_")]
        args = json.loads((folder / "predict_from_raw_data_args.json").read_text())
        assert args["num_processes_preprocessing"] == 3 and args["num_processes_segmentation_export"] == 3
        for case in ("case_000", "case_007"):
            probabilities = np.load(folder / f"{case}.npz")["probabilities"]
            seg = read_seg(folder / f"{case}.nii.gz")
            assert probabilities.shape == (3, *seg.shape)
            np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-3)
            assert (probabilities.argmax(0) == seg).mean() > 0.999  # a tie may break either way


def test_predicted_folds_equal_the_training_validation(predicted):
    """Folds 1-4 hold fold 0's weights: their mean is fold 0's prediction, which the training's validation made from
    the preprocessed data. The probabilities differ only by the rounding of the five-fold sum, which is accumulated
    in half precision as in the reference (a single fold is bit-identical): with partial sums of the logits below 32
    in magnitude, each of the 4 additions rounds by at most 2**-7, so the mean logit is off by at most 2**-5 / 5 =
    0.006, which moves a softmax probability by at most about half of that (0.003; 0.002 was seen). Segmentations
    may differ only where two classes tie within twice that."""
    ws = predicted.ws
    for configuration, folder in predicted.out.items():
        validation = model_folder(ws, configuration) / "fold_0" / "validation"
        for case in predicted.splits[0]["val"]:
            expected = np.load(validation / f"{case}.npz")["probabilities"]
            np.testing.assert_allclose(np.load(folder / f"{case}.npz")["probabilities"], expected, atol=3.2e-3)
            differs = read_seg(folder / f"{case}.nii.gz") != read_seg(validation / f"{case}.nii.gz")
            top2 = np.sort(expected, axis=0)[-2:]
            assert np.all(top2[1][differs] - top2[0][differs] < 6.4e-3), case  # only near-ties may flip
            with open(folder / f"{case}.pkl", "rb") as f, open(validation / f"{case}.pkl", "rb") as g:
                assert pickle.load(f)["shape_before_cropping"] == pickle.load(g)["shape_before_cropping"]


def test_predict_from_modelfolder_copies_the_model_plans(predicted):
    for name in ("plans.json", "dataset.json"):
        written = json.loads((predicted.out["2d"] / name).read_text())
        assert written == json.loads((model_folder(predicted.ws, "2d") / name).read_text()), name
