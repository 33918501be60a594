"""Model folders shared by others, broken or hostile: checkpoint values of the wrong type, NaN weights, mirroring axes
the configuration lacks, plans whose transposes, patch size or architecture cannot be used, and a plans file that
names a function instead of a network class (which would run code). Each is one UserError naming the file; nothing
is predicted with it."""
from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from nnunetv2.errors import UserError

DS = "Dataset903_SynthNatural2D"
MODEL = "nnUNetTrainer_5epochs__nnUNetPlansTiny__2d"


@pytest.fixture(scope="module")
def golden_model(shared_dir, tmp_path_factory) -> Path:
    zips = sorted((shared_dir / "reference" / "models" / DS).glob("*.zip"))
    if not zips:
        pytest.skip(f"no golden zip for {DS}")
    root = tmp_path_factory.mktemp("golden_2d")
    with zipfile.ZipFile(zips[0]) as zf:  # the reference's own export: trusted
        zf.extractall(root)
    return root / DS / MODEL


@pytest.fixture
def model(golden_model, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(golden_model, dst)
    return dst


def _load(model_dir: Path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    p = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_dir), (0,))
    return p


def _edit_checkpoint(model_dir: Path, edit) -> Path:
    path = model_dir / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(path, weights_only=False)  # the golden checkpoint: trusted
    edit(checkpoint)
    torch.save(checkpoint, path)
    return path


def _edit_plans(model_dir: Path, edit) -> Path:
    path = model_dir / "plans.json"
    plans = json.loads(path.read_text())
    edit(plans, plans["configurations"]["2d"])
    path.write_text(json.dumps(plans))
    return path


def _nan_weights(ck):
    for v in ck["network_weights"].values():
        if v.is_floating_point():
            v.fill_(float("nan"))


@pytest.mark.parametrize("edit,fragment", [
    (lambda ck: ck["init_args"].pop("configuration"), "'init_args' has no configuration name"),
    (lambda ck: ck.__setitem__("init_args", [1, 2]), "'init_args' has no configuration name"),
    (lambda ck: ck.__setitem__("network_weights", [1, 2]), "'network_weights' is not a mapping"),
    (lambda ck: ck.__setitem__("trainer_name", 42), "'trainer_name' is 42"),
    (lambda ck: ck.__setitem__("inference_allowed_mirroring_axes", "01"), "'inference_allowed_mirroring_axes' is '01'"),
    (lambda ck: ck.__setitem__("inference_allowed_mirroring_axes", (0, 5)), r"\(0, 5\) names axes that the 2-D"),
    # the reference predicts background everywhere without a word
    (_nan_weights, "holds NaN or infinite weights"),
], ids=["no_configuration", "init_args_list", "weights_list", "trainer_name_int", "axes_string", "axes_out_of_range",
        "nan_weights"])
def test_checkpoint_values_of_the_wrong_kind(model, edit, fragment):
    path = _edit_checkpoint(model, edit)
    with pytest.raises(UserError, match=fragment) as e:
        _load(model)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("edit,fragment", [
    (lambda plans, cfg: cfg.__setitem__("patch_size", "64x64"), "'patch_size' is '64x64'"),
    (lambda plans, cfg: plans.__setitem__("transpose_forward", [0, 1, 2, 3]), "'transpose_forward' is"),
    (lambda plans, cfg: cfg["architecture"]["arch_kwargs"].__setitem__("n_stages", "three"),
     "cannot be built: AssertionError"),
    (lambda plans, cfg: cfg["architecture"]["arch_kwargs"].__setitem__("nonlin", "torch.nn.Conv2d"),
     "cannot be built: TypeError"),
    (lambda plans, cfg: cfg["architecture"]["arch_kwargs"].__setitem__("conv_op", "torch.nn.Identity"),
     "cannot be built: RuntimeError: Invalid conv op"),
], ids=["patch_size_string", "transpose_length", "n_stages_string", "nonlin_wrong_module", "conv_op_no_convolution"])
def test_plans_that_cannot_describe_the_network(model, edit, fragment):
    path = _edit_plans(model, edit)
    with pytest.raises(UserError, match=fragment) as e:
        _load(model)
    assert str(path) in str(e.value)


def test_plans_naming_a_function_as_network_class_runs_no_code(model, tmp_path):
    """torch.hub.load(repo_or_dir=..., source='local') imports that folder's hubconf.py: a plans file naming it as
    the network class would run any code its author put there (the reference runs it)."""
    hub, marker = tmp_path / "hub", tmp_path / "code_ran"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef net(**kwargs):\n    return None\n")

    def edit(plans, cfg):
        cfg["architecture"].update(network_class_name="torch.hub.load", _kw_requires_import=[],
                                   arch_kwargs={"repo_or_dir": str(hub), "model": "net", "source": "local",
                                                "trust_repo": True})
    _edit_plans(model, edit)
    with pytest.raises(UserError, match="'torch.hub.load'.*not a torch.nn.Module class"):
        _load(model)
    assert not marker.exists()


@pytest.mark.parametrize("key", ["nonlin", "dropout_op"])
def test_plans_naming_a_function_as_layer_op_runs_no_code(model, tmp_path, key):
    """The network calls its nonlinearity and dropout ops with keyword arguments from the plans (nonlin_kwargs,
    dropout_op_kwargs): naming torch.hub.load there ran a hubconf.py as surely as naming it as the network class."""
    hub, marker = tmp_path / "hub", tmp_path / "code_ran"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                    f"import torch\ndef net(**kwargs):\n    return torch.nn.Identity()\n")

    def edit(plans, cfg):
        kwargs = cfg["architecture"]["arch_kwargs"]
        kwargs[key] = "torch.hub.load"
        kwargs[f"{key}_kwargs"] = {"repo_or_dir": str(hub), "model": "net", "source": "local", "trust_repo": True}
        assert key in cfg["architecture"]["_kw_requires_import"]
    _edit_plans(model, edit)
    with pytest.raises(UserError, match=f"'{key}' 'torch.hub.load' .*not a torch.nn.Module class"):
        _load(model)
    assert not marker.exists()
    for name in ("subprocess.Popen", "builtins.eval"):  # a class that is no module, a builtin function
        _edit_plans(model, lambda plans, cfg: cfg["architecture"]["arch_kwargs"].__setitem__(key, name))
        with pytest.raises(UserError, match=f"'{key}' '{name}' .*not a torch.nn.Module class"):
            _load(model)


@pytest.mark.parametrize("where", ["network_class_name", "conv_op"])
@pytest.mark.parametrize("name, module", [("unittest.__main__.TestProgram", "unittest.__main__"),
                                          ("antigravity.webbrowser", "antigravity")])
def test_plans_naming_a_module_that_runs_a_program_when_imported_are_refused_before_the_import(model, where, name,
                                                                                             module):
    """Importing unittest.__main__ runs unittest with this command's arguments, antigravity opens a web browser:
    a name in the plans must not start either just to find out that it is no network class."""
    def edit(plans, cfg):
        if where == "network_class_name":
            cfg["architecture"]["network_class_name"] = name
        else:
            cfg["architecture"]["arch_kwargs"]["conv_op"] = name
    _edit_plans(model, edit)
    assert module not in sys.modules
    with pytest.raises(UserError, match=f"'{name}' in the plans names the module '{module}', whose import runs a "
                                        f"program: refused"):
        _load(model)
    assert module not in sys.modules


def test_the_golden_model_still_loads(model):
    p = _load(model)
    assert p.allowed_mirroring_axes == (0, 1) and p.trainer_name == "nnUNetTrainer_5epochs"


def test_mirroring_axes_stored_as_a_numpy_array_are_used(model):
    """A custom trainer may keep its axes as a numpy array; the reference predicts with them, so do we."""
    import numpy as np
    _edit_checkpoint(model, lambda ck: ck.__setitem__("inference_allowed_mirroring_axes", np.array([0, 1])))
    assert _load(model).allowed_mirroring_axes == (0, 1)


def test_a_custom_trainers_own_build_error_keeps_its_traceback(model):
    """A trainer that builds its own network (U-Mamba style) and fails in its own code (a bug, a dependency's changed
    API) is not a plans problem: its TypeError keeps its traceback instead of a line telling to fix plans.json."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class OwnNetTrainer:
        @staticmethod
        def build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                       num_output_channels, enable_deep_supervision=True):
            raise TypeError("Mamba.__init__() got an unexpected keyword argument 'd_state'")

    p = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    with pytest.raises(TypeError, match="d_state") as e:
        p.initialize_from_trained_model_folder(str(model), (0,), trainer_class=OwnNetTrainer)
    assert not isinstance(e.value, UserError)


def test_a_custom_trainer_building_the_plans_network_names_the_plans(model):
    """A trainer whose builder calls get_network_from_plans (as the shipped variants do): the plans are at fault."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    class PlansNetTrainer:
        @staticmethod
        def build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                       num_output_channels, enable_deep_supervision=True):
            return get_network_from_plans(configuration_manager.network_arch_class_name,
                                          configuration_manager.network_arch_init_kwargs,
                                          configuration_manager.network_arch_init_kwargs_req_import,
                                          num_input_channels, num_output_channels, allow_init=False,
                                          deep_supervision=enable_deep_supervision)

    path = _edit_plans(model, lambda plans, cfg: cfg["architecture"]["arch_kwargs"].__setitem__("n_stages", "three"))
    p = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    with pytest.raises(UserError, match="cannot be built: AssertionError") as e:
        p.initialize_from_trained_model_folder(str(model), (0,), trainer_class=PlansNetTrainer)
    assert str(path) in str(e.value)
