"""Scripts that take a trained model out of nnU-Net: ONNX / TorchScript export and torch.nn.Module wrappers.

Written by us from the public scripts we read (no client code here):

* ULS23 challenge ``export2onnx.py`` and a ``convert_nnunet_model_to_onnx`` variant: an ``nnUNetPredictor`` on the
  CPU, ``initialize_from_trained_model_folder(folder, use_folds=("all"), ...)`` (a bare string, not a tuple), then
  ``predictor.network`` handed to ``torch.onnx.export`` / ``dynamo_export`` as it is, or after
  ``network.load_state_dict(predictor.list_of_parameters[0])`` and ``eval()``;
* a CASIMIR export module (OpenVINO): the same loading with ``("all",)``, a dummy input shaped
  ``(1, 1, *predictor.configuration_manager.patch_size)``, then the exported model put back into the predictor as a
  ``torch.nn.Module`` whose ``load_state_dict`` does nothing, "so nnUNetPredictor's fold loop still works";
* a wrapper ``class nnUNet(nn.Module)`` that saves ``nnUNet_compile``, sets it to '0', initialises a predictor for
  one fold, loads ``list_of_parameters[0]`` into ``predictor.network``, keeps that network as ``self.model``,
  restores the variable, toggles ``model.decoder.deep_supervision`` and ``train(False)`` around
  ``torch.jit.trace``; its ``__main__`` also calls ``predict_single_npy_array``;
* Pierre-Louis Benveniste's ``export_nnunet_model.py``: ``torch.save(predictor.network.state_dict())`` after loading
  ``list_of_parameters[0]``, next to a copy of plans.json, for a rebuild elsewhere;
* ``avnir_convert_nnunet_to_onnx``: no predictor; ``PlansManager``, ``determine_num_input_channels``, the trainer
  class found with ``recursive_find_python_class`` under ``nnunetv2/training/nnUNetTrainer`` and
  ``build_network_architecture(..., enable_deep_supervision=False)``, the checkpoint's ``network_weights``. (It
  calls the pre-2.6 positional signature and imports ``recursive_find_python_class`` from
  ``predict_from_raw_data``; 2.8.1 rejects both, so we use the current signature and module.)
* a BraTS TorchScript script: ``nnUNetTrainer(plans, configuration, fold, dataset_json, device=cpu)``,
  ``initialize()``, ``trainer.network.load_state_dict(checkpoint['network_weights'])``, ``torch.jit.trace``;
* 77even/Fast-nnUNet ``distillation/fast_nnunet_distillation_export_onnx.py``: ``determine_num_input_channels`` and
  ``label_manager.num_segmentation_heads`` from a trainer; desktop apps that ``half()`` / ``float()``
  ``predictor.network`` before ``predict_single_npy_array``; a 2.5-D inference script that loads
  ``list_of_parameters[0]`` itself before ``predict_sliding_window_return_logits``.

What these scripts need, checked here against values read from the reference 2.8.1 on the same golden models:
``predictor.network`` after initialisation is the plain architecture (no torch.compile wrapper unless
``nnUNet_compile`` asks for it, no DDP), its state-dict keys are those of ``list_of_parameters[i]`` (a list of
CPU state dicts) and fold 0 is already loaded; deep supervision is off, so the network returns one tensor; the
network alone, traced, or put back into the predictor gives the predictor's own numbers; and a network the client
puts into ``predictor.network`` is called the way the reference calls it (once per pass, one at a time, in the
caller's thread). Models: the reference-trained golden models (skipped without ../shared).
"""
from __future__ import annotations

import io
import itertools
import os
import shutil
import threading
from collections.abc import Mapping
from os.path import join

import numpy as np
import pytest
import torch
from torch import nn

import nnunetv2
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

# tracing warns about shape-dependent Python branches of instance norm; torch marks jit as deprecated
pytestmark = pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning', 'ignore::FutureWarning')

MODELS = {'2d': 'Dataset903_SynthNatural2D', '3d': 'Dataset902_SynthMRRegions'}
# read from the reference 2.8.1 with these models
PATCH = {'2d': [64, 64], '3d': [32, 32, 32]}
CHANNELS = {'2d': 3, '3d': 2}
MIRROR_AXES = {'2d': (0, 1), '3d': (0, 1, 2)}
HEADS = 3
TRAINER = 'nnUNetTrainer_5epochs'


@pytest.fixture(scope="module")
def models(golden_model_dir):
    return {k: golden_model_dir(v) for k, v in MODELS.items()}


@pytest.fixture(autouse=True)
def _one_thread_no_compile(monkeypatch):
    """One torch thread (fast and deterministic on a shared 2-core machine), nnUNet_compile unset."""
    monkeypatch.delenv('nnUNet_compile', raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _predictor(folder, use_folds=(0,), use_mirroring=False) -> nnUNetPredictor:
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                        device=torch.device('cpu'), verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), use_folds=use_folds, checkpoint_name='checkpoint_final.pth')
    return p


def _checkpoint(folder, fold='0') -> dict:
    return torch.load(join(str(folder), f'fold_{fold}', 'checkpoint_final.pth'), map_location='cpu',
                      weights_only=False)


def _dummy(dim: str, seed: int = 0) -> torch.Tensor:
    """A network input of one patch, batch 1, as the export scripts make it."""
    return torch.randn(1, CHANNELS[dim], *PATCH[dim], generator=torch.Generator().manual_seed(seed))


def _as_predictor_input(dim: str, x: torch.Tensor) -> torch.Tensor:
    """(c, x, y, z) for predict_sliding_window_return_logits; 2-D images with a singleton first axis."""
    return x[0][:, None] if dim == '2d' else x[0]


def _image_2d(seed: int = 0):
    """An RGB image as NaturalImage2DIO reads one: (3, 1, y, x), values 0..255, spacing (999, 1, 1)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (3, 1, 70, 90)).astype(np.float32), {'spacing': (999.0, 1.0, 1.0)}


def _same_state(a: Mapping, b: Mapping) -> bool:
    return list(a.keys()) == list(b.keys()) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _assert_logits_close(net_out: torch.Tensor, predictor_out: torch.Tensor) -> None:
    """The predictor accumulates its logits in float16 (as the reference does) weighted by a Gaussian up to 10:
    rounding of up to half a unit at the largest values, so compared relative to the largest logit."""
    a, b = net_out.float(), predictor_out.float()
    assert a.shape == b.shape
    scale = float(a.abs().max())
    assert float((a - b).abs().max()) <= 0.01 * scale + 1e-3
    assert float((a.argmax(0) == b.argmax(0)).float().mean()) > 0.999


# ----- what initialize_from_trained_model_folder leaves behind --------------------------------------------------
@pytest.mark.parametrize('dim', ['2d', '3d'])
def test_network_is_the_plain_architecture_with_fold_0_loaded(models, dim):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch._dynamo import OptimizedModule
    p = _predictor(models[dim])
    net = p.network
    assert type(net) is PlainConvUNet
    assert not isinstance(net, (OptimizedModule, nn.parallel.DistributedDataParallel, nn.DataParallel))
    assert not hasattr(net, '_orig_mod')
    keys = list(net.state_dict().keys())
    assert keys == list(p.list_of_parameters[0].keys())
    assert len(keys) == 120
    assert not any(k.startswith(('_orig_mod.', 'module.')) for k in keys)
    # 2.8.1 loads the first fold at initialisation: exporting predictor.network as it is (ULS23) exports trained weights
    assert _same_state(net.state_dict(), _checkpoint(models[dim])['network_weights'])
    assert {str(t.device) for t in net.state_dict().values()} == {'cpu'}


@pytest.mark.parametrize('dim', ['2d', '3d'])
def test_list_of_parameters_is_a_list_of_cpu_state_dicts(models, dim):
    p = _predictor(models[dim])
    params = p.list_of_parameters
    assert type(params) is list and len(params) == 1
    sd = params[0]
    assert isinstance(sd, Mapping)
    assert all(isinstance(v, torch.Tensor) and v.device.type == 'cpu' and v.dtype == torch.float32
               for v in sd.values())
    assert _same_state(sd, _checkpoint(models[dim])['network_weights'])
    assert not any(k.startswith(('_orig_mod.', 'module.')) for k in sd)


@pytest.mark.parametrize('dim', ['2d', '3d'])
def test_attributes_the_export_scripts_read(models, dim):
    p = _predictor(models[dim])
    ckpt = _checkpoint(models[dim])
    assert list(p.configuration_manager.patch_size) == PATCH[dim]
    assert p.plans_manager.get_configuration(ckpt['init_args']['configuration']).patch_size == \
        p.configuration_manager.patch_size
    assert isinstance(p.allowed_mirroring_axes, tuple) and p.allowed_mirroring_axes == MIRROR_AXES[dim]
    assert p.trainer_name == ckpt['trainer_name'] == TRAINER
    assert p.label_manager.num_segmentation_heads == HEADS
    assert len(p.dataset_json['channel_names']) == CHANNELS[dim]
    assert p.device == torch.device('cpu') and p.use_mirroring is False and p.tile_step_size == 0.5
    assert getattr(p.network.decoder, 'deep_supervision') is False


# ----- the network on its own -------------------------------------------------------------------------------------
@pytest.mark.parametrize('dim', ['2d', '3d'])
def test_network_alone_gives_the_predictors_logits(models, dim):
    p = _predictor(models[dim])
    net = p.network
    net.load_state_dict(p.list_of_parameters[0])
    net.eval()
    x = _dummy(dim)
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor)  # deep supervision off: one tensor, not a list
    assert tuple(y.shape) == (1, HEADS, *PATCH[dim])
    # the predictor's sliding window over an image of exactly one patch
    logits = p.predict_sliding_window_return_logits(_as_predictor_input(dim, x))
    assert isinstance(logits, torch.Tensor)
    _assert_logits_close(_as_predictor_input(dim, y), logits)
    # mirroring: the mean of the network's outputs over all flips of the allowed axes
    p.use_mirroring = True
    with torch.no_grad():
        mirrored = p._internal_maybe_mirror_and_predict(x)
        spatial = [a + 2 for a in MIRROR_AXES[dim]]
        flips = [()] + [tuple(c) for r in range(1, len(spatial) + 1)
                        for c in itertools.combinations(spatial, r)]
        expected = sum(torch.flip(net(torch.flip(x, f)), f) if f else net(x) for f in flips) / len(flips)
    torch.testing.assert_close(mirrored, expected, rtol=1e-5, atol=1e-5)


def test_training_mode_export_gives_the_same_single_tensor(models):
    """ULS23 exports predictor.network without eval(): still one tensor, and (instance norm, no dropout) the same
    numbers."""
    p = _predictor(models['3d'])
    net = p.network.train()
    x = _dummy('3d', 1)
    with torch.no_grad():
        y_train = net(x)
        y_eval = net.eval()(x)
    assert isinstance(y_train, torch.Tensor)
    torch.testing.assert_close(y_train, y_eval)


def test_deep_supervision_toggled_on_the_network_like_the_wrapper(models):
    p = _predictor(models['2d'])
    model = p.network
    x = _dummy('2d', 2)
    with torch.no_grad():
        single = model.eval()(x)
        model.decoder.deep_supervision = True
        try:
            outputs = model(x)
        finally:
            model.decoder.deep_supervision = False
        again = model(x)
    assert isinstance(outputs, (list, tuple)) and len(outputs) == 2  # 3 stages: full and half resolution
    assert tuple(outputs[1].shape) == (1, HEADS, 32, 32)
    torch.testing.assert_close(outputs[0], single)
    assert isinstance(again, torch.Tensor)
    torch.testing.assert_close(again, single)


# ----- TorchScript / ONNX -------------------------------------------------------------------------------------------
@pytest.mark.parametrize('dim', ['2d', '3d'])
def test_torchscript_trace_agrees_with_the_network(models, dim):
    p = _predictor(models[dim])
    net = p.network
    net.load_state_dict(p.list_of_parameters[0])
    net.eval()
    x = _dummy(dim, 3)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        x2 = _dummy(dim, 4)
        torch.testing.assert_close(loaded(x2), net(x2), rtol=0, atol=0)


def test_traced_or_wrapped_network_put_back_into_the_predictor(models):
    """The exported model goes back into predictor.network (CASIMIR): as a ScriptModule, or inside an nn.Module whose
    load_state_dict does nothing. predict_single_npy_array must run it and give the same result."""
    p = _predictor(models['2d'])
    image, props = _image_2d()
    seg, probs = p.predict_single_npy_array(image, props, None, None, True)
    assert seg.shape == (1, 70, 90) and probs.shape == (HEADS, 1, 70, 90)
    own = p.network.eval()
    with torch.no_grad():
        traced = torch.jit.trace(own, _dummy('2d'))
    p.network = traced
    seg_t, probs_t = p.predict_single_npy_array(image, props, None, None, True)
    np.testing.assert_array_equal(seg_t, seg)
    np.testing.assert_allclose(probs_t, probs, rtol=0, atol=1e-6)

    calls = []

    class ExportedModel(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def load_state_dict(self, state_dict, strict=True, assign=False):
            calls.append('load_state_dict')

        def forward(self, x):
            calls.append(tuple(x.shape))
            return self.inner(x)

    p.network = ExportedModel(traced)
    seg_w, probs_w = p.predict_single_npy_array(image, props, None, None, True)
    np.testing.assert_array_equal(seg_w, seg)
    np.testing.assert_allclose(probs_w, probs, rtol=0, atol=1e-6)
    assert type(p.network) is ExportedModel  # left in place
    assert calls.count('load_state_dict') == 1  # once per fold, as the reference does
    shapes = {c for c in calls if c != 'load_state_dict'}
    assert shapes == {(1, 3, 64, 64)}  # one tile at a time, batch 1: what a static-shape export accepts


def test_onnx_export_if_the_exporter_is_installed(models, tmp_path):
    pytest.importorskip('onnx', reason='torch.onnx needs the onnx package (not installed here)')
    p = _predictor(models['2d'])
    net = p.network
    net.load_state_dict(p.list_of_parameters[0])
    net.eval()
    x = _dummy('2d')
    target = tmp_path / 'model.onnx'
    try:
        with torch.no_grad():
            torch.onnx.export(net, x, str(target), input_names=['input'], output_names=['logits'], dynamo=False)
    except Exception as e:  # an exporter that needs more (onnxscript, ...) than this machine has
        if 'not installed' in str(e) or isinstance(e, ImportError):
            pytest.skip(f'torch.onnx exporter unavailable: {e}')
        raise
    assert target.stat().st_size > 0
    ort = pytest.importorskip('onnxruntime')
    session = ort.InferenceSession(str(target), providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(session.run(None, {'input': x.numpy()})[0], expected, rtol=1e-4, atol=1e-4)


# ----- nnUNet_compile ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('value', ['f', '0', 'false', 'F'])
def test_nnUNet_compile_off_gives_the_plain_network(models, monkeypatch, value):
    monkeypatch.setenv('nnUNet_compile', value)
    p = _predictor(models['2d'])
    assert not hasattr(p.network, '_orig_mod')
    assert list(p.network.state_dict().keys()) == list(p.list_of_parameters[0].keys())


@pytest.mark.parametrize('value', ['t', '1', 'true', 'T'])
def test_nnUNet_compile_on_wraps_the_network_as_the_reference_does(models, monkeypatch, value):
    """The reference compiles at initialisation on any device (lazily: nothing runs until the first call); the
    plain module is then ``network._orig_mod`` and the state dicts in list_of_parameters keep their plain keys."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch._dynamo import OptimizedModule
    monkeypatch.setenv('nnUNet_compile', value)
    p = _predictor(models['2d'])
    assert isinstance(p.network, OptimizedModule)
    assert type(p.network._orig_mod) is PlainConvUNet
    plain_keys = list(p.list_of_parameters[0].keys())
    assert list(p.network._orig_mod.state_dict().keys()) == plain_keys
    assert list(p.network.state_dict().keys()) == ['_orig_mod.' + k for k in plain_keys]


class _WrappedNNUNet(nn.Module):
    """A wrapper in the shape of the clients' ``nnUNet(nn.Module)``: compile off while the predictor loads one fold."""

    def __init__(self, model_dir, fold=0):
        super().__init__()
        saved = os.environ.get('nnUNet_compile')
        os.environ['nnUNet_compile'] = '0'
        try:
            self.predictor = _predictor(model_dir, use_folds=(fold,))
            self.predictor.network.load_state_dict(self.predictor.list_of_parameters[0])
            self.model = self.predictor.network
        finally:
            if saved is None:
                os.environ.pop('nnUNet_compile', None)
            else:
                os.environ['nnUNet_compile'] = saved

    def forward(self, x):
        return self.model(x)


def test_wrapper_module_with_compile_switched_off_around_init(models, monkeypatch):
    monkeypatch.setenv('nnUNet_compile', 't')  # the user's setting, restored by the wrapper
    wrapper = _WrappedNNUNet(models['2d'])
    assert os.environ['nnUNet_compile'] == 't'
    assert not hasattr(wrapper.model, '_orig_mod')
    keys = list(wrapper.state_dict().keys())
    assert keys == ['model.' + k for k in wrapper.predictor.list_of_parameters[0]]
    wrapper.train(False)
    x = _dummy('2d', 5)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, x)
        torch.testing.assert_close(traced(x), wrapper(x), rtol=0, atol=0)
    # the wrapper's own predict_single_npy_array path still works on the predictor it holds
    image, props = _image_2d(1)
    seg = wrapper.predictor.predict_single_npy_array(image, props)
    assert seg.shape == (1, 70, 90) and set(np.unique(seg)) <= {0, 1, 2}


# ----- fold selection -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fold_all_model(models, tmp_path_factory):
    """A copy of the 2-D model whose only fold is fold_all (a model trained with fold 'all')."""
    target = tmp_path_factory.mktemp('fold_all') / models['2d'].name
    shutil.copytree(models['2d'], target)
    (target / 'fold_0').rename(target / 'fold_all')
    return target


@pytest.mark.parametrize('use_folds', [None, (0,), [0], ('0',), '0'])
def test_numbered_fold_selections(models, use_folds):
    p = _predictor(models['2d'], use_folds=use_folds)
    assert len(p.list_of_parameters) == 1
    assert _same_state(p.list_of_parameters[0], _checkpoint(models['2d'])['network_weights'])


@pytest.mark.parametrize('use_folds', [('all',), 'all', ['all']])
def test_fold_all_selections(fold_all_model, use_folds):
    """ULS23 passes ``use_folds=("all")``: a bare string, which 2.8.1 takes as one fold name."""
    p = _predictor(fold_all_model, use_folds=use_folds)
    assert len(p.list_of_parameters) == 1
    assert _same_state(p.network.state_dict(), _checkpoint(fold_all_model, 'all')['network_weights'])


# ----- rebuilding the network outside the predictor -----------------------------------------------------------------
def test_network_rebuilt_from_plans_and_checkpoint(models, tmp_path):
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = str(models['2d'])
    p = _predictor(folder)
    x = _dummy('2d', 6)
    with torch.no_grad():
        expected = p.network.eval()(x)

    plans_manager = PlansManager(load_json(join(folder, 'plans.json')))
    dataset_json = load_json(join(folder, 'dataset.json'))
    ckpt = _checkpoint(folder)
    configuration_manager = plans_manager.get_configuration(ckpt['init_args']['configuration'])
    n_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    assert (n_in, n_out) == (CHANNELS['2d'], HEADS)
    trainer_class = recursive_find_python_class(join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'),
                                                ckpt['trainer_name'], 'nnunetv2.training.nnUNetTrainer')
    assert trainer_class is not None and trainer_class.__name__ == TRAINER
    model = trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, n_out,
                                                     enable_deep_supervision=False)
    model.load_state_dict(ckpt['network_weights'])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected, rtol=0, atol=0)

    # saved next to a copy of plans.json, rebuilt elsewhere with get_network_from_plans
    p.network.load_state_dict(p.list_of_parameters[0])
    torch.save(p.network.state_dict(), tmp_path / 'model.pth')
    shutil.copy(join(folder, 'plans.json'), tmp_path / 'plans.json')
    cm = PlansManager(str(tmp_path / 'plans.json')).get_configuration('2d')
    rebuilt = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, n_in, n_out, deep_supervision=False)
    rebuilt.load_state_dict(torch.load(tmp_path / 'model.pth', map_location='cpu'))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), expected, rtol=0, atol=0)


def test_trainer_network_traced_after_initialize(models):
    """The BraTS TorchScript script: a trainer built from plans and dataset.json, initialize(), the checkpoint's
    weights loaded into trainer.network. On the CPU it is not compiled; deep supervision is on (list output) until
    switched off. initialize() needs the configuration's preprocessed folder (the reference infers the dataset class
    from its files), so an empty case file stands in for it."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    folder = str(models['2d'])
    plans = load_json(join(folder, 'plans.json'))
    plans['continue_training'] = False  # 2.8.1's constructor pops this key
    dataset_json = load_json(join(folder, 'dataset.json'))
    preprocessed = os.path.join(os.fspath(nnUNet_preprocessed), MODELS['2d'],
                                plans['configurations']['2d']['data_identifier'])
    os.makedirs(preprocessed, exist_ok=True)
    open(os.path.join(preprocessed, 'case.npz'), 'wb').close()
    trainer = nnUNetTrainer(plans=plans, configuration='2d', fold=0, dataset_json=dataset_json,
                            device=torch.device('cpu'))
    trainer.initialize()
    net = trainer.network
    assert not hasattr(net, '_orig_mod') and not isinstance(net, nn.parallel.DistributedDataParallel)
    net.load_state_dict(_checkpoint(folder)['network_weights'])
    net.eval()
    x = _dummy('2d', 7)
    with torch.no_grad():
        outputs = net(x)
        expected = _predictor(folder).network.eval()(x)
    assert isinstance(outputs, (list, tuple)) and len(outputs) == 2
    torch.testing.assert_close(outputs[0], expected, rtol=0, atol=0)
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), expected, rtol=0, atol=0)


# ----- precision ----------------------------------------------------------------------------------------------------
def test_half_then_float_network_predicts_as_before(models):
    """Desktop apps cast predictor.network to half on CUDA and back to float on the CPU before predicting."""
    p = _predictor(models['2d'])
    image, props = _image_2d(2)
    seg, probs = p.predict_single_npy_array(image, props, None, None, True)
    x = _dummy('2d', 8)
    with torch.no_grad():
        full = p.network.eval()(x)
    p.network = p.network.half()
    assert next(p.network.parameters()).dtype == torch.float16
    with torch.no_grad():
        half = p.network(x.half())
    assert half.dtype == torch.float16
    assert float((half.float() - full).abs().max()) <= 0.02 * float(full.abs().max())
    p.network = p.network.float()
    seg2, probs2 = p.predict_single_npy_array(image, props, None, None, True)
    np.testing.assert_array_equal(seg2, seg)
    np.testing.assert_allclose(probs2, probs, rtol=0, atol=1e-6)


# ----- a network the client puts into the predictor -----------------------------------------------------------------
def test_client_network_is_called_one_pass_at_a_time_in_the_callers_thread(models):
    """A network exported to another runtime and put back into predictor.network (CASIMIR's OpenVINO module holds
    one infer request; TensorRT contexts and modules that keep state between calls are alike) must be called as the
    reference calls it: each pass in the thread that called the predictor, one after the other. Run with 2 torch
    threads, where a CPU predictor might otherwise spread the passes over threads."""
    p = _predictor(models['2d'], use_mirroring=True)
    inner = p.network.eval()
    caller = threading.get_ident()
    lock = threading.Lock()
    record = {'threads': set(), 'active': 0, 'max_active': 0, 'passes': 0}

    class SingleRequestRuntime(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

        def forward(self, x):
            with lock:
                record['threads'].add(threading.get_ident())
                record['active'] += 1
                record['max_active'] = max(record['max_active'], record['active'])
                record['passes'] += 1
            try:
                return self.net(x)
            finally:
                with lock:
                    record['active'] -= 1

    p.network = SingleRequestRuntime(inner)
    torch.set_num_threads(2)
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(9))
    first = p.predict_sliding_window_return_logits(x)
    second = p.predict_sliding_window_return_logits(x)
    torch.testing.assert_close(first, second)
    assert record['threads'] == {caller}, f"called from {len(record['threads'])} threads"
    assert record['max_active'] == 1
    assert record['passes'] == 2 * 4  # one tile, 4 mirrored passes (axes 0, 1), twice
