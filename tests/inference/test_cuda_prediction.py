"""The predictor on CUDA (skipped without a GPU; benchmarks/gpu_check.py runs them): results on the device and on the
CPU agree with a CPU prediction, tiles reach the network contiguous and on the GPU, the prefetch thread feeds the
results-on-CPU path, and a real out-of-memory with the results on the device falls back after freeing that attempt."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import nnunetv2.inference.sliding_window_prediction as swp
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

pytestmark = pytest.mark.cuda

CUDA = torch.device('cuda', 0)
MiB = 1 << 20


def _unet() -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    return PlainConvUNet(1, 3, (8, 16, 32), torch.nn.Conv3d, 3, (1, 2, 2), (2, 2, 2), 3, (2, 2),
                         conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={'eps': 1e-5, 'affine': True},
                         nonlin=torch.nn.LeakyReLU, nonlin_kwargs={'inplace': True}).eval()


def _predictor(device: torch.device, on_device: bool, patch=(32, 48, 48), mirroring: bool = True) -> nnUNetPredictor:
    p = nnUNetPredictor(tile_step_size=0.5, use_mirroring=mirroring, perform_everything_on_device=on_device,
                        device=device, allow_tqdm=False)
    p.network = _unet()
    p.configuration_manager = SimpleNamespace(patch_size=patch)
    p.label_manager = SimpleNamespace(num_segmentation_heads=3)
    p.allowed_mirroring_axes = (0, 1, 2)
    return p


def _image(shape=(1, 40, 80, 70)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('on_device', [True, False])
def test_predictor_on_cuda_agrees_with_the_cpu(on_device, monkeypatch):
    prefetchers = []
    real_prefetcher = swp.TilePrefetcher
    monkeypatch.setattr(swp, 'TilePrefetcher', lambda items, depth: prefetchers.append(depth) or
                        real_prefetcher(items, depth))
    expected = _predictor(torch.device('cpu'), False).predict_sliding_window_return_logits(_image())
    prefetchers.clear()

    predictor = _predictor(CUDA, on_device)
    assert predictor.perform_everything_on_device is on_device
    tiles = []
    predictor.network.register_forward_pre_hook(
        lambda module, args: tiles.append((args[0].device.type, args[0].is_contiguous())))
    logits = predictor.predict_sliding_window_return_logits(_image())
    assert logits.device.type == ('cuda' if on_device else 'cpu') and logits.dtype == torch.float16
    assert tiles and set(tiles) == {('cuda', True)}
    # the results-on-CPU path gathers and copies tiles in the prefetch thread
    assert prefetchers == ([] if on_device else [2])
    logits = logits.cpu().float()
    # autocast fp16 against fp32. This random network's instance norms divide by near-zero variances here and there,
    # which turns fp16 rounding into logit errors up to 0.2 at a few voxels: on an H100, 11 of the 672000 logits were
    # more than 3e-2 off (at most 0.2); the same prediction under CPU fp16 autocast has 25 (at most 0.25), a mean
    # error of 1.8e-4 and 99.96 % of argmaxes equal. Bounds: a few times those.
    error = (logits - expected.float()).abs()
    assert (error > 3e-2).float().mean().item() < 1e-4
    assert error.mean().item() < 1e-3
    agreement = (logits.argmax(0) == expected.argmax(0)).float().mean().item()
    assert agreement > 0.999


def test_out_of_memory_with_results_on_the_device_falls_back_after_freeing(capsys):
    """A memory cap that holds the network and one tile's activations but not the full-image accumulators next to
    the image: the first attempt fails allocating them, the retry keeps the results on the CPU."""
    image = _image((1, 256, 256, 256))  # 64 MiB as fp32 on the device; the fp16 accumulators take 128 MiB more
    predictor = _predictor(CUDA, True, patch=(64, 64, 64), mirroring=False)
    predictor.network.to(CUDA)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(CUDA)
    allocated_at_retry = []
    first_attempt = predictor._internal_predict_sliding_window_return_logits

    def spy(data, slicers, do_on_device=True):
        if not do_on_device:
            allocated_at_retry.append(torch.cuda.memory_allocated(CUDA))
        return first_attempt(data, slicers, do_on_device)

    predictor._internal_predict_sliding_window_return_logits = spy
    total = torch.cuda.get_device_properties(CUDA).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved(CUDA) + 120 * MiB) / total, CUDA)
    try:
        logits = predictor.predict_sliding_window_return_logits(image)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
    assert 'Prediction on device was unsuccessful' in capsys.readouterr().out
    assert len(allocated_at_retry) == 1
    # nothing of the failed attempt is left on the GPU (the cached Gaussian of one tile may be)
    assert allocated_at_retry[0] - baseline <= 2 * MiB
    assert logits.device.type == 'cpu' and tuple(logits.shape) == (3, 256, 256, 256)
    reference = _predictor(CUDA, False, patch=(64, 64, 64), mirroring=False).predict_sliding_window_return_logits(
        image)
    torch.testing.assert_close(logits.float(), reference.float(), atol=1e-2, rtol=1e-2)
