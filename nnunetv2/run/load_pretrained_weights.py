"""Initialise a network with the weights of another nnU-Net checkpoint.

Only the network weights are taken; segmentation output layers (``.seg_layers.``) are never transferred, so the
number of output classes may differ. Every other layer must exist with the same shape, else a UserError names the
mismatched layers.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from nnunetv2.errors import UserError
from nnunetv2.training.nnUNetTrainer._setup import unwrap_network


class PretrainedWeightsMismatch(UserError, AssertionError):
    """The checkpoint's layers do not fit the network. Also an ``AssertionError``: that is what the reference raised,
    and fine-tuning scripts catch it to fall back to loading the encoder alone."""


def _device_of(network: torch.nn.Module) -> torch.device:
    for tensor in network.parameters():
        return tensor.device
    return torch.device("cpu")


def _mismatches(model_dict: Dict[str, torch.Tensor], pretrained: Dict[str, torch.Tensor]) -> List[str]:
    problems = []
    for key, value in model_dict.items():
        if ".seg_layers." in key:
            continue
        if key not in pretrained:
            problems.append(f"{key} missing")
        elif tuple(pretrained[key].shape) != tuple(value.shape):
            problems.append(f"{key} {tuple(pretrained[key].shape)} != {tuple(value.shape)}")
    return problems


def load_pretrained_weights(network, fname, verbose=False):
    """Copy the matching weights of checkpoint ``fname`` into ``network`` (except segmentation heads)."""
    from nnunetv2.utilities.checkpoint_io import load_checkpoint, require_keys, strip_state_dict_prefixes
    mod = unwrap_network(network)
    # straight onto the network's own device: under DDP the global rank is no GPU index (gloo ranks run on the
    # CPU, and a multi-node run has ranks beyond the node's GPU count)
    saved = load_checkpoint(fname, map_location=_device_of(mod))
    require_keys(saved, fname)
    pretrained_dict = strip_state_dict_prefixes(saved["network_weights"])

    model_dict = mod.state_dict()
    problems = _mismatches(model_dict, pretrained_dict)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in total)" if len(problems) > 5 else "")
        raise PretrainedWeightsMismatch(f"The pretrained weights in {fname} do not fit this network: {shown}.",
                                        "Pretrained weights must come from the same architecture (only the "
                                        "segmentation output layers may differ); use a plans file transferred with "
                                        "nnUNetv2_move_plans_between_datasets.")

    pretrained_dict = {k: v for k, v in pretrained_dict.items() if k in model_dict and ".seg_layers." not in k}
    model_dict.update(pretrained_dict)
    print("################### Loading pretrained weights from file ", fname, "###################")
    if verbose:
        print("Below is the list of overlapping blocks in pretrained model and nnUNet architecture:")
        for key, value in pretrained_dict.items():
            print(key, "shape", value.shape)
        print("################### Done ###################")
    mod.load_state_dict(model_dict)
