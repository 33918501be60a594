"""nnUNetTrainer's compatibility surface: star-import names, hook signatures, variants, and its pure helpers."""
from __future__ import annotations

import importlib
import inspect
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnunetv2.inference.reference_names import NNUNET_TRAINER, REFERENCE_MODULE_NAMES
from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

# what `from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import *` gives in the reference (listed once, with the
# other modules whose names clients use)
STAR_NAMES = list(REFERENCE_MODULE_NAMES[NNUNET_TRAINER])

# spec 03 §2.4: hook names and their parameters (static methods have no self)
HOOKS = {
    "__init__": ["self", "plans", "configuration", "fold", "dataset_json", "device"],
    "initialize": ["self"], "_do_i_compile": ["self"], "_save_debug_information": ["self"],
    "build_network_architecture": ["plans_manager", "configuration_manager", "num_input_channels",
                                   "num_output_channels", "enable_deep_supervision"],
    "_get_deep_supervision_scales": ["self"], "_set_batch_size_and_oversample": ["self"], "_build_loss": ["self"],
    "configure_rotation_dummyDA_mirroring_and_inital_patch_size": ["self"],
    "print_to_log_file": ["self", "args", "also_print_to_console", "add_timestamp"], "print_plans": ["self"],
    "configure_optimizers": ["self"], "plot_network_architecture": ["self"], "do_split": ["self"],
    "get_tr_and_val_datasets": ["self"], "get_dataloaders": ["self"],
    "get_training_transforms": ["patch_size", "rotation_for_DA", "deep_supervision_scales", "mirror_axes",
                                "do_dummy_2d_data_aug", "use_mask_for_norm", "is_cascaded", "foreground_labels",
                                "regions", "ignore_label"],
    "get_validation_transforms": ["deep_supervision_scales", "is_cascaded", "foreground_labels", "regions",
                                  "ignore_label"],
    "set_deep_supervision_enabled": ["self", "enabled"], "on_train_start": ["self"], "on_train_end": ["self"],
    "on_train_epoch_start": ["self"], "train_step": ["self", "batch"], "on_train_epoch_end": ["self", "train_outputs"],
    "on_validation_epoch_start": ["self"], "validation_step": ["self", "batch"],
    "on_validation_epoch_end": ["self", "val_outputs"], "on_epoch_start": ["self"], "on_epoch_end": ["self"],
    "save_checkpoint": ["self", "filename"], "load_checkpoint": ["self", "filename_or_checkpoint"],
    "perform_actual_validation": ["self", "save_probabilities"], "run_training": ["self"],
}


def test_star_import_provides_reference_names():
    namespace = {}
    exec("from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import *", namespace)
    assert len(STAR_NAMES) == 84
    missing = [n for n in STAR_NAMES if n not in namespace]
    assert not missing
    assert namespace["np"] is np and namespace["torch"] is torch and namespace["nn"] is torch.nn
    assert namespace["dist"] is torch.distributed and namespace["autocast"] is torch.autocast
    assert namespace["DDP"] is torch.nn.parallel.DistributedDataParallel
    assert namespace["ANISO_THRESHOLD"] == 3 and isinstance(namespace["TORCH_HAS_OLD_GRADSCALER"], bool)


@pytest.mark.parametrize("name, params", sorted(HOOKS.items()))
def test_hook_signatures(name, params):
    got = list(inspect.signature(getattr(nnUNetTrainer, name)).parameters)
    if name == "__init__":
        # the ignored pre-2.6 ``unpack_dataset`` may follow the reference parameters
        assert got[:len(params)] == params and got[len(params):] in ([], ["unpack_dataset"])
    else:
        assert got == params
    static = isinstance(inspect.getattr_static(nnUNetTrainer, name), staticmethod)
    assert static == (name in ("build_network_architecture", "get_training_transforms",
                               "get_validation_transforms"))


VARIANTS = {
    "variants.training_length.nnUNetTrainer_Xepochs": [f"nnUNetTrainer_{n}" for n in (
        "1epoch", "5epochs", "10epochs", "20epochs", "50epochs", "100epochs", "250epochs", "500epochs", "750epochs",
        "2000epochs", "4000epochs", "8000epochs")],
    "variants.training_length.nnUNetTrainer_Xepochs_NoMirroring": [
        f"nnUNetTrainer_{n}epochs_NoMirroring" for n in (250, 2000, 4000, 8000)],
    "variants.data_augmentation.nnUNetTrainerNoMirroring": [
        "nnUNetTrainerNoMirroring", "nnUNetTrainer_onlyMirror01", "nnUNetTrainer_onlyMirror01_1500ep",
        "nnUNetTrainer_onlyMirror01_DASegOrd0"],
    "variants.data_augmentation.nnUNetTrainerDAOrd0": ["nnUNetTrainer_DASegOrd0",
                                                       "nnUNetTrainer_DASegOrd0_NoMirroring"],
    "variants.data_augmentation.nnUNetTrainerNoDA": ["nnUNetTrainerNoDA"],
    "variants.data_augmentation.nnUNetTrainerDA5": ["nnUNetTrainerDA5", "nnUNetTrainerDA5ord0",
                                                    "nnUNetTrainerDA5Segord0", "nnUNetTrainerDA5_10epochs"],
    "variants.competitions.aortaseg24": ["nnUNetTrainer_onlyMirror01_DA5"],
    "variants.benchmarking.nnUNetTrainerBenchmark_5epochs": ["nnUNetTrainerBenchmark_5epochs"],
    "variants.benchmarking.nnUNetTrainerBenchmark_5epochs_noDataLoading": [
        "nnUNetTrainerBenchmark_5epochs_noDataLoading"],
    "primus.primus_trainers": [
        "AbstractPrimus", "nnUNet_Primus_S_Trainer", "nnUNet_Primus_B_Trainer", "nnUNet_Primus_M_Trainer",
        "nnUNet_Primus_M_Trainer_BS8", "nnUNet_Primus_M_Trainer_BS8_2e4", "nnUNet_Trainer_BS8",
        "nnUNet_Primus_L_Trainer", "nnUNet_PrimusV2S_Trainer", "nnUNet_PrimusV2B_Trainer",
        "nnUNet_PrimusV2M_Trainer", "nnUNet_PrimusV2L_Trainer", "nnUNet_PrimusV3S_Trainer",
        "nnUNet_PrimusV3B_Trainer", "nnUNet_PrimusV3M_Trainer", "nnUNet_PrimusV3L_Trainer", "_Primus_S_96_BS1",
        "_Primus_B_96_BS1", "_Primus_M_96_BS1", "_Primus_L_48_BS1"],
    "variants.data_augmentation.nnUNetTrainer_noDummy2DDA": ["nnUNetTrainer_noDummy2DDA"],
    "variants.loss.nnUNetTrainerCELoss": ["nnUNetTrainerCELoss", "nnUNetTrainerCELoss_5epochs"],
    "variants.loss.nnUNetTrainerDiceLoss": ["nnUNetTrainerDiceLoss", "nnUNetTrainerDiceCELoss_noSmooth"],
    "variants.loss.nnUNetTrainerTopkLoss": ["nnUNetTrainerTopk10Loss", "nnUNetTrainerTopk10LossLS01",
                                            "nnUNetTrainerDiceTopK10Loss"],
    "variants.optimizer.nnUNetTrainerAdam": [
        "nnUNetTrainerAdam", "nnUNetTrainerVanillaAdam", "nnUNetTrainerVanillaAdam1en3",
        "nnUNetTrainerVanillaAdam3en4", "nnUNetTrainerAdam1en3", "nnUNetTrainerAdam3en4"],
    "variants.optimizer.nnUNetTrainerAdan": ["nnUNetTrainerAdan", "nnUNetTrainerAdan1en3", "nnUNetTrainerAdan3en4",
                                             "nnUNetTrainerAdan1en1", "nnUNetTrainerAdanCosAnneal"],
    "variants.lr_schedule.nnUNetTrainerCosAnneal": ["nnUNetTrainerCosAnneal"],
    "variants.lr_schedule.nnUNetTrainer_warmup": ["nnUNetTrainer_warmup"],
    "variants.network_architecture.nnUNetTrainerBN": ["nnUNetTrainerBN"],
    "variants.network_architecture.nnUNetTrainerNoDeepSupervision": ["nnUNetTrainerNoDeepSupervision"],
    "variants.sampling.nnUNetTrainer_probabilisticOversampling": [
        "nnUNetTrainer_probabilisticOversampling", "nnUNetTrainer_probabilisticOversampling_033",
        "nnUNetTrainer_probabilisticOversampling_010"],
}


@pytest.mark.parametrize("module", sorted(VARIANTS))
def test_variants_at_reference_module_paths(module):
    mod = importlib.import_module(f"nnunetv2.training.nnUNetTrainer.{module}")
    for name in VARIANTS[module]:
        cls = getattr(mod, name)
        assert issubclass(cls, nnUNetTrainer) and cls.__name__ == name
        # subclasses keep the reference constructor (spec 03 §2.1)
        assert list(inspect.signature(cls.__init__).parameters)[:6] == HOOKS["__init__"]
        # and pass the pre-2.6 unpack_dataset on to the base: a subclass of theirs written for 2.1-2.5 calls
        # super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device) (U-Mamba's SegResNet
        # trainer on nnUNetTrainerNoDeepSupervision)
        if "__init__" in vars(cls):
            assert "unpack_dataset" in inspect.signature(cls.__init__).parameters, name
            assert "unpack_dataset)" in inspect.getsource(cls.__init__), name


def test_trainer_lookup_finds_variants():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import nnUNetTrainer_5epochs
    assert recursive_find_trainer_class_by_name("nnUNetTrainer_5epochs") is nnUNetTrainer_5epochs
    assert recursive_find_trainer_class_by_name("nnUNetTrainerDiceTopK10Loss").__name__ == \
        "nnUNetTrainerDiceTopK10Loss"


# ---------------------------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize("B, W, expected", [
    (2, 2, [(1, 0.0), (1, 1.0)]), (5, 2, [(3, 0.0), (2, 1.0)]),
    (12, 4, [(3, 0.0), (3, 0.0), (3, 1 / 3), (3, 1.0)]),
])
def test_ddp_batch_size_and_oversampling(B, W, expected):
    got = [_setup.ddp_batch_size_and_oversampling(B, W, r, 0.33) for r in range(W)]
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert np.allclose([g[1] for g in got], [e[1] for e in expected])


def test_deep_supervision_scales_and_weights():
    scales = _setup.deep_supervision_scales([[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    assert scales == [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25], [0.25, 0.125, 0.125]]
    assert np.allclose(_setup.deep_supervision_weights(3, False, False), [2 / 3, 1 / 3, 0])
    assert np.allclose(_setup.deep_supervision_weights(5, False, False), [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0])
    ddp = _setup.deep_supervision_weights(4, True, False)
    assert 0 < ddp[-1] < 1e-5 and np.isclose(ddp.sum(), 1)
    assert _setup.deep_supervision_weights(4, True, True)[-1] == 0


@pytest.mark.parametrize("is_ddp, compiles, asked, last", [(False, True, 0, 0), (True, False, 1, 1e-6),
                                                            (True, True, 1, 0)])
def test_deep_supervision_asks_do_i_compile_only_under_ddp(is_ddp, compiles, asked, last):
    """As the reference: the compile decision matters for the weights under DDP only, and is asked only there
    (an override of _do_i_compile that logs sees the same calls)."""
    calls = []

    class Trainer:
        enable_deep_supervision = True

        def __init__(self):
            self.is_ddp = is_ddp

        def _get_deep_supervision_scales(self):
            return [[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]

        def _do_i_compile(self):
            calls.append(1)
            return compiles

    wrapped = _setup.maybe_wrap_deep_supervision(Trainer(), torch.nn.MSELoss())
    assert len(calls) == asked
    weights = np.asarray(wrapped.weight_factors)
    assert np.isclose(weights[-1], last / (1 + 0.5 + last), rtol=1e-6, atol=0)


@pytest.mark.parametrize("patch, initial, dummy", [
    ((128, 128, 128), (205, 205, 205), False), ((80, 192, 160), (194, 289, 210), False),
    ((20, 256, 256), (20, 301, 301), True), ((512, 512), (602, 602), False), ((256, 128), (329, 150), False),
    ((40, 40), (47, 47), False)])
def test_rotation_mirroring_and_initial_patch_size(patch, initial, dummy):
    log = []
    fake = SimpleNamespace(configuration_manager=SimpleNamespace(patch_size=list(patch)),
                           print_to_log_file=lambda *a, **k: log.append(a))
    rot, do_dummy, initial_patch, mirror = \
        nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(fake)
    assert do_dummy == dummy and tuple(int(i) for i in initial_patch) == initial
    assert mirror == tuple(range(len(patch))) and fake.inference_allowed_mirroring_axes == mirror
    assert log == [(f"do_dummy_2d_data_aug: {dummy}",)]


def test_log_file_name_and_legacy_device_argument():
    from datetime import datetime
    assert _setup.log_file_name("/o", datetime(2024, 3, 5, 9, 4, 7)) == "/o/training_log_2024_3_5_09_04_07.txt"
    cpu = torch.device("cpu")
    assert _setup.sort_out_device_argument(cpu, None) == cpu
    assert _setup.sort_out_device_argument(True, cpu) == cpu  # pre-2.6 positional (…, unpack_dataset, device)
    assert _setup.select_device(torch.device("cuda", 3), False, 0) == torch.device("cuda", 0)


def test_init_kwargs_from_most_derived_signature():
    class Legacy:
        # a pre-2.6 subclass constructor with an extra parameter the base constructor does not know
        def __init__(self, plans, configuration, fold, dataset_json, unpack_dataset=True, device=None, extra=1):
            pass
    base_locals = {"self": 1, "plans": {}, "configuration": "c", "fold": 0, "dataset_json": {}, "device": "d",
                   "unpack_dataset": False}
    got = _setup.collect_init_kwargs(Legacy.__new__(Legacy).__init__, base_locals)
    # the ignored unpack_dataset and the unknown 'extra' are not recorded (the reference raised KeyError)
    assert got == {"plans": {}, "configuration": "c", "fold": 0, "dataset_json": {}, "device": "d"}


class _Managers:
    """Stand-ins for what build_network needs from a trainer."""
    plans_manager = "PM"
    configuration_manager = SimpleNamespace(network_arch_class_name="Arch", network_arch_init_kwargs={"k": 1},
                                            network_arch_init_kwargs_req_import=("conv_op",))
    dataset_json = {"labels": {}}
    num_input_channels = 2
    label_manager = SimpleNamespace(num_segmentation_heads=3)
    enable_deep_supervision = True


@pytest.mark.parametrize("form", ["2.1", "2.3", "2.7"])
def test_build_network_architecture_binds_historical_signatures_by_name(form):
    calls = []
    if form == "2.1":
        def build(plans_manager, dataset_json, configuration_manager, num_input_channels,
                  enable_deep_supervision=True):
            calls.append((plans_manager, dataset_json, configuration_manager.network_arch_class_name,
                          num_input_channels, enable_deep_supervision))
            return torch.nn.Identity()
        expected = ("PM", {"labels": {}}, "Arch", 2, True)
    elif form == "2.3":
        def build(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import, num_input_channels,
                  num_output_channels, enable_deep_supervision=True):
            calls.append((architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import,
                          num_input_channels, num_output_channels, enable_deep_supervision))
            return torch.nn.Identity()
        expected = ("Arch", {"k": 1}, ("conv_op",), 2, 3, True)
    else:
        def build(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                  enable_deep_supervision=True):
            calls.append((plans_manager, configuration_manager.network_arch_class_name, num_input_channels,
                          num_output_channels, enable_deep_supervision))
            return torch.nn.Identity()
        expected = ("PM", "Arch", 2, 3, True)
    trainer = _Managers()
    trainer.build_network_architecture = build
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert isinstance(_setup.build_network(trainer), torch.nn.Identity)
    assert calls == [expected]
    assert any(issubclass(x.category, DeprecationWarning) for x in w) == (form == "2.3")


def test_batchnorm_variant_builds_through_the_base_builder_and_leaves_the_plans(monkeypatch):
    """nnUNetTrainerBN hands its BatchNorm kwargs to nnUNetTrainer.build_network_architecture (a user's patch of it
    applies to the BN trainer as well), without changing the configuration manager it was given (which is cached per
    plans manager: a later build from it keeps the planned InstanceNorm)."""
    from _tiny_plans import tiny_unet_plans
    from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerBN import nnUNetTrainerBN
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(tiny_unet_plans("Dataset321_BN"))
    configuration_manager = plans_manager.get_configuration("3d_fullres")
    seen = []
    original = nnUNetTrainer.build_network_architecture

    def patched(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                enable_deep_supervision=True):
        seen.append(configuration_manager.network_arch_init_kwargs["norm_op"])
        return original(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                        enable_deep_supervision)

    monkeypatch.setattr(nnUNetTrainer, "build_network_architecture", staticmethod(patched))
    net = nnUNetTrainerBN.build_network_architecture(plans_manager, configuration_manager, 1, 2, False)
    assert seen == ["torch.nn.modules.batchnorm.BatchNorm3d"]
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    assert configuration_manager.network_arch_init_kwargs["norm_op"].endswith("InstanceNorm3d")
    plain = nnUNetTrainer.build_network_architecture(plans_manager, plans_manager.get_configuration("3d_fullres"),
                                                     1, 2, False)
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in plain.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in plain.modules())
