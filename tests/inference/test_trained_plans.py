"""A model folder whose plans.json prepares images otherwise than the plans its checkpoint was trained with (replaced
by the plans of a later planning run): the reference predicted with it without a word. Loading the model now names
what differs (target spacing, axis order, normalization and its statistics); a larger patch (edited for faster
inference) is no such difference."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from nnunetv2.inference.trained_plans import preprocessing_differences
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _tiny_plans import tiny_unet_plans, write_tiny_model  # noqa: E402


def _edited(change):
    plans = tiny_unet_plans('Dataset976_Edited')
    change(plans)
    return PlansManager(plans)


def test_same_plans_and_a_larger_patch_are_no_difference():
    trained = tiny_unet_plans('Dataset976_Edited')
    assert preprocessing_differences(trained, _edited(lambda p: None), '3d_fullres') == []
    bigger = _edited(lambda p: p['configurations']['3d_fullres'].update(patch_size=[32, 32, 32]))
    assert preprocessing_differences(trained, bigger, '3d_fullres') == []
    assert preprocessing_differences(None, bigger, '3d_fullres') == []  # a checkpoint without plans: not judged


def test_preprocessing_differences_are_named():
    trained = tiny_unet_plans('Dataset976_Edited')
    coarser = _edited(lambda p: p['configurations']['3d_fullres'].update(spacing=[3.0, 3.0, 3.0]))
    assert preprocessing_differences(trained, coarser, '3d_fullres') == [
        "spacing [2.0, 2.0, 2.0] (training) vs [3.0, 3.0, 3.0] (plans.json)"]

    def restats(p):
        p['foreground_intensity_properties_per_channel']['0']['mean'] += 100
    assert preprocessing_differences(trained, _edited(restats), '3d_fullres') == [
        "foreground_intensity_properties_per_channel (the intensity statistics of normalization)"]


@pytest.mark.parametrize("edit, warned", [("patch", False), ("spacing", True)])
def test_loading_the_model_warns(tmp_path, capsys, edit, warned):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    model = tmp_path / 'model'
    write_tiny_model(model, 'Dataset976_Edited', {'background': 0, 'a': 1}, seed=0)
    plans = json.loads((model / 'plans.json').read_text())
    key, value = ('patch_size', [32, 32, 32]) if edit == 'patch' else ('spacing', [1.0, 1.0, 1.0])
    plans['configurations']['3d_fullres'][key] = value
    (model / 'plans.json').write_text(json.dumps(plans))
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    err = capsys.readouterr().err
    assert ("prepares images otherwise than the plans" in err) is warned
    if warned:
        assert "spacing [2.0, 2.0, 2.0] (training) vs [1.0, 1.0, 1.0] (plans.json)" in err
