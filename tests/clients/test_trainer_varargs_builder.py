"""Client pattern: a custom trainer whose ``build_network_architecture`` takes only ``*args, **kwargs`` and parses
the arguments itself (common in public trainers written for nnU-Net 2.3-2.6, e.g. ``if len(args) >= 6 and
isinstance(args[1], dict): ...``). The reference only uses the current (plans_manager, ...) form when the signature
names ``plans_manager``; otherwise it passes the 2.3-2.6 form: class name, init kwargs, kwargs needing import,
input channels, output channels, then the deep-supervision flag (positionally when training, as
``enable_deep_supervision=`` keyword when predicting)."""
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from _tiny_plans import tiny_unet_plans
from nnunetv2.inference.model_loading import call_build_network_architecture
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

_PLANS = tiny_unet_plans("Dataset990_VarArgs")
_ARCH = _PLANS["configurations"]["3d_fullres"]["architecture"]
_DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 2,
                 "file_ending": ".nii.gz"}


class _VarArgsBuilderTrainer(nnUNetTrainer):
    calls = []

    @staticmethod
    def build_network_architecture(*args, **kwargs):
        _VarArgsBuilderTrainer.calls.append((args, kwargs))
        if not (len(args) >= 5 and isinstance(args[0], str) and isinstance(args[1], dict)):
            raise RuntimeError("unsupported call")
        ds = args[5] if len(args) > 5 else kwargs["enable_deep_supervision"]
        return get_network_from_plans(args[0], args[1], args[2], args[3], args[4], allow_init=True,
                                      deep_supervision=ds)


def _managers():
    pm = PlansManager(_PLANS)
    return pm, pm.get_configuration("3d_fullres")


def test_varargs_builder_gets_old_form_when_training():
    from nnunetv2.training.nnUNetTrainer import _setup
    pm, cm = _managers()
    _VarArgsBuilderTrainer.calls.clear()
    trainer = SimpleNamespace(build_network_architecture=_VarArgsBuilderTrainer.build_network_architecture,
                              plans_manager=pm, configuration_manager=cm, dataset_json=_DATASET_JSON,
                              num_input_channels=1, label_manager=pm.get_label_manager(_DATASET_JSON),
                              enable_deep_supervision=True)
    net = _setup.build_network(trainer)
    assert isinstance(net, nn.Module)
    (args, kwargs), = _VarArgsBuilderTrainer.calls
    assert args[0] == _ARCH["network_class_name"] and args[1] == cm.network_arch_init_kwargs
    assert list(args[2]) == list(cm.network_arch_init_kwargs_req_import)
    assert args[3:] == (1, 3, True) and kwargs == {}
    assert isinstance(net(torch.zeros(1, 1, 16, 16, 16)), (list, tuple))  # deep supervision on: a list of outputs


def test_varargs_builder_gets_old_form_when_predicting():
    from nnunetv2.inference.model_loading import build_network
    pm, cm = _managers()
    _VarArgsBuilderTrainer.calls.clear()
    net = build_network("_VarArgsBuilderTrainer", pm, cm, _DATASET_JSON, 1, 3, trainer_class=_VarArgsBuilderTrainer)
    (args, kwargs), = _VarArgsBuilderTrainer.calls
    assert args[0] == _ARCH["network_class_name"] and args[3:] == (1, 3)
    assert kwargs == {"enable_deep_supervision": False}
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_forwarding_wrapper_falls_back_to_the_current_arguments():
    """A *args/**kwargs wrapper that hands everything on to a builder of the current form (as 2.6 and 2.7 called
    every builder) rejects the old arguments; it is then called with the current ones. A builder that names
    parameters we do not know and rejects the old arguments keeps its TypeError."""
    calls = []

    def current(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                enable_deep_supervision=True):
        return (plans_manager, num_input_channels, num_output_channels, enable_deep_supervision)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return current(*args, **kwargs)

    cm = SimpleNamespace(network_arch_class_name='X', network_arch_init_kwargs={},
                         network_arch_init_kwargs_req_import=())
    with pytest.warns(DeprecationWarning):
        assert call_build_network_architecture(wrapper, 'PM', cm, {}, 2, 3, True) == ('PM', 2, 3, True)
    assert [len(a) for a, _ in calls] == [6, 5]  # old form (rejected), then the current one

    def renamed(name, kw, kw_import, nin, nout, ds):  # unknown names: old form, positionally, like the reference
        raise TypeError('from inside the builder')
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match='from inside'):
        call_build_network_architecture(renamed, 'PM', cm, {}, 2, 3, True)


def test_real_type_error_is_not_retried():
    pm, cm = _managers()
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        kw = dict(args[1]); kw['not_an_arg'] = 1
        return get_network_from_plans(args[0], kw, args[2], args[3], args[4], allow_init=True, deep_supervision=True)
    with warnings.catch_warnings(), pytest.raises(TypeError, match='not_an_arg'):
        warnings.simplefilter('ignore')
        call_build_network_architecture(wrapper, pm, cm, _DATASET_JSON, 1, 3, True)
    assert len(calls) == 1


def test_varargs_with_keyword_flag_gets_positional_arguments():
    pm, cm = _managers()
    got = []

    def wrapper(*args, enable_deep_supervision=True, **kwargs):
        got.append((args, enable_deep_supervision, kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        call_build_network_architecture(wrapper, pm, cm, _DATASET_JSON, 1, 3, False)
        call_build_network_architecture(wrapper, pm, cm, _DATASET_JSON, 1, 3, False, deep_supervision_as_keyword=True)
    assert len(got[0][0]) == 6 and got[0][0][0] == cm.network_arch_class_name   # training: as the reference
    assert len(got[1][0]) == 5 and got[1][1] is False                          # inference: keyword
