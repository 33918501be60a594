"""The opt-in fast CPU mode (bfloat16): capability detection and the clean fallback, the network it builds, and its
agreement with the exact mode on the golden trained models."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn
from nnunetv2.inference import cpu_fast_mode
from nnunetv2.inference.cpu_fast_mode import build_fast_network, fast_network_for, full_precision_parts

CPU = torch.device('cpu')
needs_bf16 = pytest.mark.skipif(not cpu_fast_mode.native_bf16_cpu(),
                                reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")


def _unet() -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    return PlainConvUNet(1, 3, (8, 16, 32), nn.Conv3d, 3, (1, 2, 2), (2, 2, 2), 3, (2, 2), conv_bias=True,
                         norm_op=nn.InstanceNorm3d, norm_op_kwargs={'eps': 1e-5, 'affine': True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={'inplace': True}).eval()


def _no_native_bf16(monkeypatch):
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    monkeypatch.setattr(cpu_fast_mode, '_cpu_flags', lambda: {'avx2', 'avx512f'})


@pytest.mark.parametrize('value, on', [('1', True), ('true', True), (' ON ', True), ('Yes', True), ('0', False), ('', False),
                                       ('no', False)])
def test_requested_by_the_environment(monkeypatch, value, on):
    monkeypatch.setenv('nnUNet_cpu_fast', value)
    assert cpu_fast_mode.fast_mode_requested() is on
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    assert nnUNetPredictor(device=CPU).cpu_fast is on


def test_capability_from_the_cpu_flags_when_torch_cannot_tell(monkeypatch):
    _no_native_bf16(monkeypatch)
    assert not cpu_fast_mode.native_bf16_cpu()
    monkeypatch.setattr(cpu_fast_mode, '_cpu_flags', lambda: {'avx512f', 'avx512_bf16'})
    assert cpu_fast_mode.native_bf16_cpu()
    monkeypatch.setattr(torch.backends.mkldnn, 'is_available', lambda: False)
    assert not cpu_fast_mode.native_bf16_cpu()


def test_falls_back_to_the_exact_mode_without_native_bf16(monkeypatch, caplog):
    """No native bfloat16: one warning, and the prediction is the exact one, bit for bit."""
    from types import SimpleNamespace

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    _no_native_bf16(monkeypatch)
    cpu_fast_mode._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert fast_network_for(_unet(), CPU) is None
        assert fast_network_for(_unet(), CPU) is None
    assert caplog.text.count('no native bfloat16') == 1  # once, not once per image
    outputs = []
    for fast in (False, True):
        p = nnUNetPredictor(device=CPU, allow_tqdm=False, use_mirroring=False)
        p.network, p.cpu_fast, p.cpu_concurrent_passes = _unet(), fast, 1
        p.configuration_manager = SimpleNamespace(patch_size=(16, 16, 16))
        p.label_manager = SimpleNamespace(num_segmentation_heads=3)
        p.allowed_mirroring_axes = None
        outputs.append(p.predict_sliding_window_return_logits(torch.rand((1, 20, 16, 16),
                                                                         generator=torch.Generator().manual_seed(0))))
    assert torch.equal(outputs[0], outputs[1])


def test_refused_for_networks_of_another_layout(caplog):
    cpu_fast_mode._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert fast_network_for(nn.Sequential(nn.Conv3d(1, 2, 3)), CPU) is None
    assert 'encoder.stages' in caplog.text
    assert fast_network_for(_unet(), torch.device('cuda')) is None  # CPU only, silently


def test_fast_network_keeps_the_image_stage_and_heads_in_fp32():
    net = _unet()
    fast = build_fast_network(net, full_precision_parts(net))
    assert next(net.parameters()).dtype == torch.float32  # the original is untouched
    assert fast.encoder.stages[0][0].convs[0].conv.weight.dtype == torch.float32
    assert fast.encoder.stages[1][0].convs[0].conv.weight.dtype == torch.bfloat16
    assert fast.decoder.stages[0].convs[0].conv.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in fast.decoder.seg_layers.parameters())
    x = torch.rand((2, 1, 16, 16, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact, approx = net(x), fast(x)
    assert approx.dtype == torch.float32 and approx.is_contiguous() and approx.shape == exact.shape
    assert float((approx - exact).abs().max()) < 0.05 * float(exact.abs().max())


def test_fast_network_in_fp32_everywhere_is_the_same_function():
    """With no part in bfloat16 the rewritten layers (group norm per channel, pointwise heads as matrix products,
    channels-last) compute the exact network's function up to fp32 rounding."""
    net = _unet()
    every = [''] + [n for n, _ in net.named_modules() if n]
    x = torch.rand((1, 1, 16, 16, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(build_fast_network(net, every)(x), net(x), rtol=1e-4, atol=1e-4)


def _agreement(a: np.ndarray, b: np.ndarray):
    """(share of equal voxels, {label: Dice})."""
    dice = {}
    for label in np.union1d(np.unique(a), np.unique(b)):
        if label == 0:
            continue
        tp, fp, fn, _ = compute_tp_fp_fn_tn(a == label, b == label)
        dice[int(label)] = 2 * tp / (2 * tp + fp + fn)
    return float((a == b).mean()), dice


def _near_ties(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    """Voxels the exact mode itself decides by a hair: a region probability within 0.02 of the 0.5 threshold, or the
    two largest class probabilities within 0.04 of each other."""
    if regions:
        return np.any(np.abs(probabilities - 0.5) < 0.02, axis=0)
    top2 = np.sort(probabilities, axis=0)[-2:]
    return top2[1] - top2[0] < 0.04


@needs_bf16
@pytest.mark.parametrize('dataset', ['Dataset903_SynthNatural2D', 'Dataset902_SynthMRRegions'])
@pytest.mark.parametrize('tta', [False, True])
def test_agrees_with_the_exact_mode_on_golden_models(shared_dir, golden_raw, tmp_path, dataset, tta):
    """Fast mode against the exact mode on the trained golden models, every test case (exported segmentations):
    >= 99.9 % of the voxels equal, and every voxel that differs is a near-tie of the exact mode. The labels hold only
    200-900 voxels, so one such voxel costs up to 0.005 of Dice (902 with TTA: 2 of 201 voxels, 0.995); the per-label
    Dice bound (0.99) allows for that and no more. Measured numbers: benchmarks/README.md."""
    import zipfile

    from _inference_golden import MODELS, model_folder, read_seg
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    results = tmp_path / 'results'
    with zipfile.ZipFile(next((shared_dir / 'reference' / 'models' / dataset).glob('*.zip'))) as z:
        z.extractall(results)
    ending = MODELS[dataset][1]
    segs = {}
    for fast in (False, True):
        p = nnUNetPredictor(device=CPU, allow_tqdm=False, use_mirroring=tta)
        p.initialize_from_trained_model_folder(str(model_folder(results, dataset)), (0,))
        p.cpu_fast = fast
        out = tmp_path / ('fast' if fast else 'exact')
        p.predict_from_files(str(golden_raw(dataset) / 'imagesTs'), str(out), not fast, True, 0, 0)
        segs[fast] = {f.name: read_seg(f)[0] for f in sorted(out.glob('*' + ending))}
        regions = p.label_manager.has_regions
    assert len(segs[True]) >= 2 and segs[True].keys() == segs[False].keys()
    for name in segs[False]:
        exact, approx = segs[False][name], segs[True][name]
        equal, dice = _agreement(exact, approx)
        assert equal >= 0.999, (name, equal)
        assert min(dice.values()) >= 0.99, (name, dice)
        probabilities = np.load(tmp_path / 'exact' / (name[:-len(ending)] + '.npz'))['probabilities']
        probabilities = probabilities.reshape((probabilities.shape[0],) + exact.shape)
        assert np.all(_near_ties(probabilities, regions)[exact != approx]), name


def test_residual_encoder_unet_pools_in_fp32():
    """Residual U-Nets (ResEnc plans) have a stem and average-pool their skips, which torch cannot do in bfloat16
    on the CPU: the stem stays fp32, the pooling runs in fp32 and hands back bfloat16."""
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    torch.manual_seed(0)
    net = ResidualEncoderUNet(1, 4, (8, 16, 32, 64), nn.Conv3d, 3, (1, 2, 2, 2), (1, 2, 2, 2), 3, (1, 1, 1),
                              conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={'eps': 1e-5, 'affine': True},
                              nonlin=nn.LeakyReLU, nonlin_kwargs={'inplace': True}).eval()
    parts = full_precision_parts(net)
    assert parts[0] == 'encoder.stem'
    fast = build_fast_network(net, parts)
    x = torch.rand((1, 1, 16, 32, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exact, approx = net(x), fast(x)
    assert approx.dtype == torch.float32 and approx.shape == exact.shape
    assert float((approx - exact).abs().max()) < 0.05 * float(exact.abs().max())
