"""``ResEncUNetPlanner`` at its historical module path (the reference keeps an identical copy here; name lookup
finds this module first, so it must expose the class). One class, two import paths."""
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import \
    ResEncUNetPlanner

__all__ = ['ResEncUNetPlanner']
