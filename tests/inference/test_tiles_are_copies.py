"""Each tile the network gets is a tensor of its own, never a view into the image: where a tile spans the image's full
in-plane extent (2D slices as large as the patch, volumes padded to the patch in-plane), a contiguous slice of the
image would otherwise be handed over as it is. A network that changes its input in place would then change the image
under the tiles still to come (and the caller's tensor). The reference copies every tile."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import accumulate_tiles, get_sliding_window_slicers
from nnunetv2.inference.tile_prefetch import gather_tile

CPU = torch.device('cpu')


@pytest.mark.parametrize('image, slicer', [
    ((1, 20, 16, 16), (slice(None), slice(4, 12), slice(0, 16), slice(0, 16))),  # 3D, full in-plane extent
    ((1, 5, 16, 16), (slice(None), 2, slice(0, 16), slice(0, 16))),  # a 2D slice as large as the patch
    ((2, 20, 16, 16), (slice(None), slice(4, 12), slice(0, 8), slice(0, 8))),  # a strided slice
])
def test_a_tile_shares_no_memory_with_the_image(image, slicer):
    data = torch.rand(image)
    tile = gather_tile(data, slicer, CPU)
    assert tile.is_contiguous()
    assert tile.untyped_storage().data_ptr() != data.untyped_storage().data_ptr()
    assert torch.equal(tile, data[slicer][None])


class _ScalesItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x):
        x.mul_(2)  # in place on the tile
        return self.conv(x)


@pytest.mark.parametrize('prefetch', [0, 2])
def test_a_network_changing_its_input_in_place_changes_neither_the_image_nor_other_tiles(prefetch):
    network = _ScalesItsInput().eval()
    image = torch.randn((1, 20, 16, 16), generator=torch.Generator().manual_seed(0))
    original = image.clone()
    slicers = get_sliding_window_slicers(tuple(image.shape[1:]), (8, 16, 16), 0.5)
    assert len(slicers) > 2  # overlapping tiles along the first axis
    with torch.no_grad():
        logits = accumulate_tiles(image, slicers, network, 2, 1, CPU, CPU, prefetch=prefetch)
        # what every tile should have been: a copy of the untouched image
        expected = accumulate_tiles(original.clone(), slicers, lambda x: network(x.clone()), 2, 1, CPU, CPU,
                                    prefetch=prefetch)
    assert torch.equal(image, original)
    assert torch.equal(logits, expected)


def test_the_predictor_leaves_the_callers_image_alone():
    p = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=CPU, allow_tqdm=False)
    p.network = _ScalesItsInput().eval()
    p.configuration_manager = SimpleNamespace(patch_size=(8, 16, 16))
    p.label_manager = SimpleNamespace(num_segmentation_heads=2)
    p.allowed_mirroring_axes = (0, 1, 2)
    p.cpu_concurrent_passes = 1
    image = torch.randn((1, 20, 16, 16), generator=torch.Generator().manual_seed(0))
    original = image.clone()
    p.predict_sliding_window_return_logits(image)
    assert torch.equal(image, original)
