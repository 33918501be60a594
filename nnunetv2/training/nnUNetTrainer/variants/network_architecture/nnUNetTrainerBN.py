"""nnUNetTrainer with BatchNorm instead of the planned normalisation."""
import copy

from dynamic_network_architectures.building_blocks.helper import get_matching_batchnorm
from torch import nn

from nnunetv2.errors import UserError
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import locate_plans_name
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager


class nnUNetTrainerBN(nnUNetTrainer):
    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        arch_kwargs = dict(configuration_manager.network_arch_init_kwargs)
        if "norm_op" not in arch_kwargs:
            raise UserError(f"nnUNetTrainerBN cannot replace the normalisation: the architecture "
                            f"{configuration_manager.network_arch_class_name} has no 'norm_op' in its plans kwargs.")
        conv_op = arch_kwargs["conv_op"]
        if not isinstance(conv_op, type):
            conv_op = locate_plans_name(conv_op, "Architecture argument 'conv_op'")
        if conv_op is None:
            raise UserError(f"nnUNetTrainerBN: cannot import conv_op {arch_kwargs['conv_op']!r} from the plans.")
        bn_class = get_matching_batchnorm(conv_op)
        arch_kwargs["norm_op"] = bn_class.__module__ + "." + bn_class.__name__
        arch_kwargs["norm_op_kwargs"] = {"eps": 1e-5, "affine": True}
        # built by nnUNetTrainer's builder (a user's patch of it applies here too), from a copy of the configuration
        # manager: the one passed in (cached per plans manager) keeps its planned normalisation
        bn_manager = copy.copy(configuration_manager)
        bn_manager.configuration = dict(configuration_manager.configuration)
        bn_manager.configuration["architecture"] = dict(configuration_manager.configuration["architecture"],
                                                        arch_kwargs=arch_kwargs)
        bn_manager._cache = {}
        return nnUNetTrainer.build_network_architecture(plans_manager, bn_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
