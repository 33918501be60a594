"""The written plans equal the reference's for the five golden datasets (default, ResEnc M and L planners)."""
from __future__ import annotations

import contextlib
import io
import json
import math
import shutil

import pytest

from golden_data import GOLDEN_DATASETS
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
    nnUNetPlannerResEncL, nnUNetPlannerResEncM)

PLANNERS = ((ExperimentPlanner, 'nnUNetPlans'), (nnUNetPlannerResEncM, 'nnUNetResEncUNetMPlans'),
            (nnUNetPlannerResEncL, 'nnUNetResEncUNetLPlans'))


def json_differences(mine, ref, path=''):
    """Every place where two JSON values differ: key order and types included, floats to 1e-6 relative."""
    if isinstance(ref, dict):
        if not isinstance(mine, dict):
            return [f'{path}: {mine!r} is not an object']
        diffs = [] if list(mine) == list(ref) else [f'{path}: keys {list(mine)} != {list(ref)}']
        return diffs + [d for k in ref if k in mine for d in json_differences(mine[k], ref[k], f'{path}/{k}')]
    if isinstance(ref, list):
        if not isinstance(mine, list) or len(mine) != len(ref):
            return [f'{path}: {mine!r} != {ref!r}']
        return [d for i, (a, b) in enumerate(zip(mine, ref)) for d in json_differences(a, b, f'{path}[{i}]')]
    if type(mine) is not type(ref):
        return [f'{path}: {mine!r} ({type(mine).__name__}) != {ref!r} ({type(ref).__name__})']
    if isinstance(ref, float):
        # plans are computed from the (identical) fingerprint with float64 scalar arithmetic: the same on every CPU;
        # 1e-6 relative only forgives formatting-level differences
        return [] if math.isclose(mine, ref, rel_tol=1e-6) else [f'{path}: {mine!r} != {ref!r}']
    return [] if mine == ref else [f'{path}: {mine!r} != {ref!r}']


@pytest.mark.parametrize('dataset', GOLDEN_DATASETS)
def test_plans_equal_reference(dataset, nnunet_dirs, shared_dir, golden_raw):
    (nnunet_dirs['nnUNet_raw'] / dataset).symlink_to(golden_raw(dataset), target_is_directory=True)
    pp = nnunet_dirs['nnUNet_preprocessed'] / dataset
    pp.mkdir()
    shutil.copy(shared_dir / 'reference' / dataset / 'dataset_fingerprint.json', pp)
    for planner_class, plans_name in PLANNERS:
        with contextlib.redirect_stdout(io.StringIO()):
            returned = planner_class(dataset).plan_experiment()
        mine = json.loads((pp / f'{plans_name}.json').read_text())
        ref = json.loads((shared_dir / 'reference' / dataset / f'{plans_name}.json').read_text())
        assert json_differences(mine, ref) == [], f'{dataset} {plans_name}'
        assert returned == mine
    assert json.loads((pp / 'dataset.json').read_text()) == \
        json.loads((nnunet_dirs['nnUNet_raw'] / dataset / 'dataset.json').read_text())
