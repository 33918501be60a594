"""nnInteractive's way of using nnU-Net, written by us from its public source (MIC-DKFZ/nnInteractive, package version
2.5.0: ``nnInteractive/inference/inference_session.py`` at commit 04a01f8, ``trainer/nnInteractiveTrainer.py`` at
f2e3504, ``utils/erosion_dilation.py``, the CVPR 2025 baseline ``predict.py``; also the 1.x session at fde15f3 for the
older call shapes). No client code here.

nnInteractive does not use the predictor. Its inference session reads a trained model folder itself and only borrows
building blocks from nnunetv2 (it requires nnunetv2>=2.7):

* ``load_json`` of ``plans.json`` and ``dataset.json`` and ``PlansManager(plans_dict)``; the fold folder is either
  ``fold_<n>`` / ``fold_all`` or, when no fold is given, the only ``fold_*`` folder found with ``subdirs``;
  ``fold_x/checkpoint_final.pth`` is read with ``torch.load(..., weights_only=False)`` for ``trainer_name``,
  ``init_args['configuration']`` and ``network_weights``;
* ``plans_manager.get_configuration(name)``, then ``configuration_manager.patch_size`` as a list of ints for crop
  arithmetic (``round(p * zoom)``, ``zip``) and the warm-up tensor ``zeros((1, C, *patch_size))``;
* ``determine_num_input_channels(plans_manager, configuration_manager, dataset_json)`` plus its own interaction
  channels (7 in the released checkpoints);
* the trainer class named in the checkpoint, looked up with ``recursive_find_python_class`` first in its own
  ``nnInteractive.trainer`` package (``current_module='nnInteractive.trainer'``), then in
  ``join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer')`` / ``'nnunetv2.training.nnUNetTrainer'``; both
  searches must return None for an unknown name. It then falls back to a stub class (no nnUNetTrainer subclass) whose
  static ``build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
  enable_deep_supervision=True)`` calls ``nnUNetTrainer.build_network_architecture`` positionally with 2 outputs;
  whatever class was found is called ``build_network_architecture(plans_manager, configuration_manager, n_in, 2,
  enable_deep_supervision=False)`` and gets ``load_state_dict(network_weights)`` (strict); the network's output is
  used as ``net(x)[0].argmax(0)``, so it must be a tensor. The 1.x session used the checkpoint's trainer the same way
  with ``label_manager.num_segmentation_heads`` outputs;
* ``plans_manager.get_label_manager(dataset_json)`` is kept, even for aggregated datasets listing thousands of object
  ids as labels;
* ``nnunetv2.utilities.helpers``: ``with torch.autocast(...) if device.type == 'cuda' else dummy_context():`` and
  ``empty_cache(device)`` everywhere, also ``empty_cache(torch.device('cuda', 0))`` at the end of the CVPR script.

Models: a tiny interactive model (1 image + 7 interaction channels, 2 outputs, 300 object labels) made here, and the
reference-trained 3-D golden model (skipped without ../shared).
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from os.path import join

import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json, subdirs

import nnunetv2
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.helpers import dummy_context, empty_cache
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from _tiny_plans import tiny_unet_plans

N_INTERACTION = 7
TRAINER_NAME = 'nnInteractiveTrainerV2_tiny'  # defined nowhere: the session then falls back to its stub
NNUNET_TRAINERS = (join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'), 'nnunetv2.training.nnUNetTrainer')

STUB_MODULE = '''
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class InteractiveStub:
    def __init__(self, *args, **kwargs):
        pass

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision=True):
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels, 2,
                                                        enable_deep_supervision)
'''


@pytest.fixture(scope='module')
def interactive_model(tmp_path_factory):
    """A model folder as nnInteractive ships it: plans.json, dataset.json (one image channel, 300 object ids as
    labels), fold_all/checkpoint_final.pth of a network with 1 + 7 input channels and 2 outputs trained with deep
    supervision. Returns (folder, the trained network)."""
    folder = tmp_path_factory.mktemp('nnInteractive_tiny')
    plans = tiny_unet_plans('Dataset225_nnInteractiveTiny')
    labels = {'background': 0, **{f'object_{i}': i for i in range(1, 301)}}
    dataset_json = {'channel_names': {'0': 'any'}, 'labels': labels, 'numTraining': 3, 'file_ending': '.nii.gz'}
    (folder / 'plans.json').write_text(json.dumps(plans))
    (folder / 'dataset.json').write_text(json.dumps(dataset_json))
    (folder / 'inference_info.json').write_text(json.dumps({'interaction_channels': N_INTERACTION - 1}))
    pm = PlansManager(plans)
    torch.manual_seed(0)
    trained = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration('3d_fullres'), 1 + N_INTERACTION, 2,
                                                       True)
    (folder / 'fold_all').mkdir()
    torch.save({'network_weights': trained.state_dict(), 'trainer_name': TRAINER_NAME,
                'init_args': {'plans': plans, 'configuration': '3d_fullres', 'fold': 'all',
                              'dataset_json': dataset_json, 'device': 'cpu'},
                'inference_allowed_mirroring_axes': (0, 1, 2), 'current_epoch': 1000},
               folder / 'fold_all' / 'checkpoint_final.pth')
    trained.eval()
    return folder, trained


@pytest.fixture
def own_trainer_package(tmp_path, monkeypatch):
    """nnInteractive's own trainer sub-package (<pkg>.trainer) holding the stub builder, importable. Returns
    (folder of the sub-package, its module name)."""
    name = f'nni_pkg_{uuid.uuid4().hex[:8]}'
    sub = tmp_path / name / 'trainer'
    sub.mkdir(parents=True)
    (tmp_path / name / '__init__.py').write_text('')
    (sub / '__init__.py').write_text('')
    (sub / 'nnInteractiveTrainer.py').write_text(STUB_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield str(sub), f'{name}.trainer'
    for m in [m for m in sys.modules if m == name or m.startswith(name + '.')]:
        del sys.modules[m]


def _load_like_the_session(folder, own_trainers, use_fold=None):
    """The session's model loading, step by step, as its source does it."""
    dataset_json = load_json(join(str(folder), 'dataset.json'))
    plans_manager = PlansManager(load_json(join(str(folder), 'plans.json')))
    if use_fold is not None:
        fold_folder = f'fold_{use_fold}'
    else:
        found = subdirs(str(folder), prefix='fold_', join=False)
        assert len(found) == 1
        fold_folder = found[0]
    checkpoint = torch.load(join(str(folder), fold_folder, 'checkpoint_final.pth'), map_location=torch.device('cpu'),
                            weights_only=False)
    configuration_manager = plans_manager.get_configuration(checkpoint['init_args']['configuration'])
    n_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json) + N_INTERACTION
    trainer_class = recursive_find_python_class(own_trainers[0], checkpoint['trainer_name'], own_trainers[1])
    searched = [trainer_class]
    if trainer_class is None:
        trainer_class = recursive_find_python_class(NNUNET_TRAINERS[0], checkpoint['trainer_name'], NNUNET_TRAINERS[1])
        searched.append(trainer_class)
    if trainer_class is None:
        trainer_class = recursive_find_python_class(own_trainers[0], 'InteractiveStub', own_trainers[1])
    network = trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, 2,
                                                       enable_deep_supervision=False)
    network.load_state_dict(checkpoint['network_weights'])
    return {'network': network.eval(), 'plans_manager': plans_manager, 'configuration_manager': configuration_manager,
            'dataset_json': dataset_json, 'label_manager': plans_manager.get_label_manager(dataset_json),
            'n_in': n_in, 'trainer_class': trainer_class, 'searched': searched}


def test_model_folder_loaded_the_way_the_session_does(interactive_model, own_trainer_package):
    folder, trained = interactive_model
    art = _load_like_the_session(folder, own_trainer_package)
    assert art['searched'] == [None, None]  # an unknown trainer name: None from both searches, no exception
    assert art['trainer_class'].__name__ == 'InteractiveStub' and not issubclass(art['trainer_class'], nnUNetTrainer)
    assert isinstance(art['plans_manager'], PlansManager)
    assert isinstance(art['configuration_manager'], ConfigurationManager)
    assert art['n_in'] == 1 + N_INTERACTION
    assert art['label_manager'].num_segmentation_heads == 301  # why nnInteractive hard-codes 2 outputs
    patch_size = art['configuration_manager'].patch_size
    assert list(patch_size) == [16, 16, 16] and all(isinstance(p, int) for p in patch_size)
    assert [round(p * 1.5) for p in patch_size] == [24, 24, 24]

    x = torch.randn((1, art['n_in'], *patch_size), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode(), dummy_context():
        out = art['network'](x)
        expected = trained(x)  # the training network (deep supervision on): its full-resolution output
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2, 16, 16, 16)
    assert isinstance(expected, (list, tuple))
    torch.testing.assert_close(out, expected[0], rtol=0, atol=0)
    seg = out[0].argmax(0)
    assert tuple(seg.shape) == (16, 16, 16) and set(seg.unique().tolist()) <= {0, 1}


def test_explicit_fold_all_and_trainer_found_in_own_package(interactive_model, own_trainer_package):
    folder, trained = interactive_model
    stub = recursive_find_python_class(own_trainer_package[0], 'InteractiveStub', own_trainer_package[1])
    assert stub is not None and stub.__module__ == f'{own_trainer_package[1]}.nnInteractiveTrainer'
    art = _load_like_the_session(folder, own_trainer_package, use_fold='all')
    assert art['trainer_class'] is stub
    x = torch.randn((1, 1 + N_INTERACTION, 16, 16, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(art['network'](x), trained(x)[0], rtol=0, atol=0)


def test_stub_builder_positional_call():
    """The stub's positional delegation: deep supervision as passed, 2 outputs whatever was asked, He-initialised."""
    plans = tiny_unet_plans('Dataset225_nnInteractiveTiny')
    pm = PlansManager(plans)
    cm = pm.get_configuration('3d_fullres')
    for ds in (True, False):
        torch.manual_seed(0)
        net = nnUNetTrainer.build_network_architecture(pm, cm, 8, 2, ds)
        assert net.decoder.deep_supervision is ds
        first = net.encoder.stages[0][0].convs[0].conv
        assert first.in_channels == 8 and first.out_channels == 4
        assert net.decoder.seg_layers[-1].out_channels == 2
        assert all(float(m.bias.detach().abs().max()) == 0 for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    torch.manual_seed(0)
    again = nnUNetTrainer.build_network_architecture(pm, cm, 8, 2, False)
    for (k, a), (k2, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


@pytest.mark.parametrize('trainer_name,norm', [('nnUNetTrainer', torch.nn.InstanceNorm3d),
                                               ('nnUNetTrainerNoMirroring', torch.nn.InstanceNorm3d),
                                               ('nnUNetTrainerBN', torch.nn.BatchNorm3d)])
def test_trainer_from_nnunetv2_folder_builds_with_keyword_deep_supervision(trainer_name, norm):
    assert os.path.isdir(NNUNET_TRAINERS[0])
    trainer_class = recursive_find_python_class(NNUNET_TRAINERS[0], trainer_name, NNUNET_TRAINERS[1])
    assert trainer_class is not None and trainer_class.__name__ == trainer_name
    pm = PlansManager(tiny_unet_plans('Dataset225_nnInteractiveTiny'))
    net = trainer_class.build_network_architecture(pm, pm.get_configuration('3d_fullres'), 8, 2,
                                                   enable_deep_supervision=False)
    assert any(isinstance(m, norm) for m in net.modules())
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 8, 16, 16, 16, generator=torch.Generator().manual_seed(5)))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2, 16, 16, 16)


def test_golden_checkpoint_rebuilt_from_its_trainer_name(golden_model_dir):
    """A reference-trained checkpoint, rebuilt as the session does with the trainer class its checkpoint names
    (nnUNetTrainer_5epochs, found under nnunetv2) and, as the 1.x session did, num_segmentation_heads outputs; the
    values were recorded with nnU-Net 2.8.1 on the same input."""
    folder = golden_model_dir('Dataset902_SynthMRRegions')
    dataset_json = load_json(join(str(folder), 'dataset.json'))
    pm = PlansManager(load_json(join(str(folder), 'plans.json')))
    (fold_folder,) = subdirs(str(folder), prefix='fold_', join=False)
    checkpoint = torch.load(join(str(folder), fold_folder, 'checkpoint_final.pth'), map_location='cpu',
                            weights_only=False)
    cm = pm.get_configuration(checkpoint['init_args']['configuration'])
    n_in = determine_num_input_channels(pm, cm, dataset_json)
    lm = pm.get_label_manager(dataset_json)
    assert n_in == 2 and lm.num_segmentation_heads == 3 and lm.has_regions
    trainer_class = recursive_find_python_class(NNUNET_TRAINERS[0], checkpoint['trainer_name'], NNUNET_TRAINERS[1])
    assert trainer_class.__name__ == 'nnUNetTrainer_5epochs'
    net = trainer_class.build_network_architecture(pm, cm, n_in, lm.num_segmentation_heads,
                                                   enable_deep_supervision=False)
    net.load_state_dict(checkpoint['network_weights'])
    net.eval()
    x = torch.randn(1, n_in, *cm.patch_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = net(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 3, 32, 32, 32)
    means = out[0].double().mean(dim=(1, 2, 3)).tolist()
    assert means == pytest.approx([-13.305317297810689, -34.43276895134477, -34.47809456390678], rel=1e-4)
    assert float(out.abs().max()) == pytest.approx(73.87728881835938, rel=1e-4)
    positives = (out[0] > 0).sum(dim=(1, 2, 3)).tolist()
    assert all(abs(a - b) <= 3 for a, b in zip(positives, [6611, 435, 257]))


def test_session_helpers_on_cpu():
    device = torch.device('cpu')
    net = torch.nn.Conv3d(2, 2, 1)
    with torch.inference_mode():
        with torch.autocast(device.type, enabled=True) if device.type == 'cuda' else dummy_context() as entered:
            out = net(torch.ones(1, 2, 2, 2, 2))
    assert entered is None and out.dtype == torch.float32  # no autocast happened
    with pytest.raises(KeyError):  # errors inside the block are not swallowed
        with dummy_context():
            raise KeyError('x')
    assert empty_cache(device) is None
    assert empty_cache(torch.device('cuda', 0)) is None  # the CVPR script's last call; harmless without a GPU
