"""benchmarks/training_run_fuzz.py: what a drawn case turns into (dataset.json labels, tiny plans, the trainings run),
without the reference; the trial itself is run by hand (benchmarks/README.md)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from training_run_fuzz import draw_case, labels_json, runs_of, tiny_plans  # noqa: E402


def _case(**changes):
    case = draw_case(random.Random(1), cascade_share=0.0)
    for k, v in changes.items():
        setattr(case, k, v)
    return case


def _reference_like_plans() -> dict:
    configuration = {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2, "patch_size": [16, 16, 16],
                     "spacing": [3.0, 0.8, 1.0], "median_image_size_in_voxels": [15, 24, 19],
                     "architecture": {"arch_kwargs": {"n_stages": 4}}}
    return {"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": configuration, "2d": {}}}


def test_regions_are_lists_and_the_ignore_label_is_the_highest_value():
    labels, highest = labels_json(_case(label_kind="regions+ignore", n_classes=2))
    assert labels == {"background": 0, "region1": [1, 2], "region2": [2], "ignore": 3} and highest == 3
    labels, highest = labels_json(_case(label_kind="labels", n_classes=1))
    assert labels == {"background": 0, "label1": 1} and highest == 1


def test_a_cascade_gets_a_lowres_stage_at_twice_the_spacing_and_a_second_stage_after_it():
    case = _case(three_d=True, cascade=True, configuration="3d_fullres", patch=[8, 16, 16], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    plans = tiny_plans(_reference_like_plans(), case)
    configurations = plans["configurations"]
    assert plans["plans_name"] == "nnUNetPlansTiny"
    assert sorted(configurations) == ["3d_cascade_fullres", "3d_fullres", "3d_lowres"]
    low = configurations["3d_lowres"]
    assert low["spacing"] == [6.0, 1.6, 2.0] and low["next_stage"] == "3d_cascade_fullres"
    assert low["data_identifier"] != configurations["3d_fullres"]["data_identifier"]
    assert configurations["3d_cascade_fullres"] == {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    assert configurations["3d_fullres"]["architecture"]["arch_kwargs"]["strides"] == case.strides

    first, second = runs_of(case)
    assert (first.configuration, first.fold, first.final_validation) == ("3d_lowres", "all", True)
    assert (second.configuration, second.fold) == ("3d_cascade_fullres", case.fold)
    args = second.driver_args()
    assert args[args.index("--fold") + 1] == case.fold and args[args.index("--plans") + 1] == "nnUNetPlansTiny"


def test_drawn_patches_fit_their_strides():
    for seed in range(200):
        case = draw_case(random.Random(seed), cascade_share=0.5)
        for axis, size in enumerate(case.patch):
            product = 1
            for stride in case.strides:
                product *= stride[axis]
            assert size % product == 0
        assert not case.cascade or case.three_d
        assert case.fold in ("0", "1", "2", "3", "4", "all")
        assert not case.cascade or len(case.shapes) >= 5
