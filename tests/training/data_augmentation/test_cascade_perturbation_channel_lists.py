"""The two cascade perturbations (random binary operator, random connected-component removal) each shuffle their own
``channel_idx`` list in place on every call (batchgeneratorsv2). nnU-Net 2.8.1 gives each its own list; ours shared
one, so with the same seeds the removal worked on other channels than in the reference (seeded CPU training of a
3d_cascade_fullres configuration: identical random states, different one-hot input channels from the 2nd batch)."""
import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.nnunet.random_binary_operator import ApplyRandomBinaryOperatorTransform
from batchgeneratorsv2.transforms.nnunet.remove_connected_components import \
    RemoveRandomConnectedComponentFromOneHotEncodingTransform

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDAOrd0 import nnUNetTrainer_DASegOrd0


def _walk(t):
    yield t
    for child in getattr(t, 'transforms', None) or []:
        yield from _walk(child)
    inner = getattr(t, 'transform', None)
    if inner is not None:
        yield from _walk(inner)


def _perturbations(trainer_class):
    pipeline = trainer_class.get_training_transforms(
        (16, 16, 16), (-0.5, 0.5), None, (0, 1, 2), False, use_mask_for_norm=[False], is_cascaded=True,
        foreground_labels=[1, 2, 3], regions=None, ignore_label=None)
    found = list(_walk(pipeline))
    binop = [t for t in found if isinstance(t, ApplyRandomBinaryOperatorTransform)]
    ccrem = [t for t in found if isinstance(t, RemoveRandomConnectedComponentFromOneHotEncodingTransform)]
    assert len(binop) == 1 and len(ccrem) == 1
    return binop[0], ccrem[0]


@pytest.mark.parametrize('trainer_class', [nnUNetTrainer, nnUNetTrainerDA5, nnUNetTrainer_DASegOrd0])
def test_each_perturbation_shuffles_its_own_channel_list(trainer_class):
    binop, ccrem = _perturbations(trainer_class)
    assert binop.channel_idx == [-3, -2, -1] and ccrem.channel_idx == [-3, -2, -1]
    assert binop.channel_idx is not ccrem.channel_idx
    np.random.seed(3)
    torch.manual_seed(3)
    image = torch.zeros((4, 16, 16, 16))
    seen = set()
    for _ in range(5):
        binop.get_parameters(image=image)
        seen.add(tuple(binop.channel_idx))
    assert len(seen) > 1 and all(sorted(s) == [-3, -2, -1] for s in seen)  # it did shuffle
    assert ccrem.channel_idx == [-3, -2, -1]  # ... its own list only


def test_same_draws_same_channels_as_independent_lists():
    # what nnU-Net 2.8.1 applies for a fixed seed: the removal's channels follow from its own list's history only
    binop, ccrem = _perturbations(nnUNetTrainer)
    np.random.seed(0)
    torch.manual_seed(0)
    image = torch.zeros((4, 16, 16, 16))
    got = []
    for _ in range(4):
        binop.get_parameters(image=image)
        got.append(ccrem.get_parameters(image=image)['apply_to_channels'])
    own = [-3, -2, -1]
    np.random.seed(0)
    torch.manual_seed(0)
    expected = []
    for _ in range(4):
        ApplyRandomBinaryOperatorTransform(channel_idx=[-3, -2, -1], strel_size=(1, 8), p_per_label=0.5) \
            .get_parameters(image=image)  # same draws, on a list nobody else holds
        np.random.shuffle(own)
        expected.append([own[i] for i, j in enumerate(torch.rand(3) < 0.5) if j])
    assert got == expected
