"""nnUNetv2_plan_experiment -gpu_memory_target 0 or less ended in a ZeroDivisionError traceback inside the planner
(found by fuzz round 3); now one nnU-Net error line, before the dataset is read."""
import pytest

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset


@pytest.mark.parametrize("gb", [0.0, -5.0, float("nan"), float("inf")])
def test_non_positive_gpu_memory_target_is_refused(gb):
    with pytest.raises(UserError, match="-gpu_memory_target must be a positive number"):
        plan_experiment_dataset(999, gpu_memory_target_in_gb=gb)  # refused before the dataset is looked up
