"""Whether a model folder's plans.json preprocesses images as the plans its checkpoint was trained with.

A checkpoint keeps the plans of its training (``init_args['plans']``). The predictor preprocesses with the model
folder's plans.json, which users edit (a larger patch for faster inference, which is harmless) or replace (with the
plans of a later planning run: other target spacing, other CT intensity statistics). In the second case the network
sees images prepared otherwise than in training, and predicts worse without a word (in the reference too).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.dtype.kind in 'fiu' and b_arr.dtype.kind in 'fiu':
            return a_arr.shape == b_arr.shape and bool(np.allclose(a_arr, b_arr, rtol=1e-6, atol=0))
    except (TypeError, ValueError):
        pass
    return a == b or (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b))


def preprocessing_differences(trained_plans: Optional[dict], plans_manager, configuration_name: str) -> List[str]:
    """What the model folder's plans (``plans_manager``) prepare otherwise for ``configuration_name`` than the plans
    the checkpoint was trained with: target spacing, axis order, normalization and its intensity statistics. Empty
    where they agree, or where the checkpoint's plans cannot be read (a checkpoint of another format: not judged)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    if not isinstance(trained_plans, dict):
        return []
    try:
        trained = PlansManager(trained_plans)
        then, now = trained.get_configuration(configuration_name), plans_manager.get_configuration(configuration_name)
        pairs = [('spacing', then.spacing, now.spacing),
                 ('transpose_forward', trained.transpose_forward, plans_manager.transpose_forward),
                 ('normalization_schemes', then.normalization_schemes, now.normalization_schemes),
                 ('use_mask_for_norm', then.use_mask_for_norm, now.use_mask_for_norm),
                 ('foreground_intensity_properties_per_channel',
                  trained.foreground_intensity_properties_per_channel,
                  plans_manager.foreground_intensity_properties_per_channel)]
    except Exception:  # plans of another format or version in the checkpoint
        return []
    statistics = 'foreground_intensity_properties_per_channel'  # long: named, not shown
    return [f"{name} (the intensity statistics of normalization)" if name == statistics
            else f"{name} {then_value} (training) vs {now_value} (plans.json)"
            for name, then_value, now_value in pairs if not _same(then_value, now_value)]
