"""Plans names given on the command line (nnUNetv2_move_plans_between_datasets -sp/-tp, nnUNetv2_plan_experiment
-overwrite_plans_name) name a file <nnUNet_preprocessed>/<dataset>/<name>.json. Found by fuzz round 3: -tp "" wrote a
hidden '.json', -tp X.json wrote 'X.json.json' (while -sp X.json failed with 'X.json.json not found'), and
-tp ../../evil / -overwrite_plans_name ../Foo wrote outside the dataset folder. Each is now one nnU-Net error line,
before anything is read or written."""
import pytest

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset
from nnunetv2.experiment_planning.plans_for_pretraining.move_plans_between_datasets import \
    move_plans_between_datasets

BAD = [("", "is empty"), ("  ", "is empty"), ("X.json", "ends with .json"), ("../../evil", "is a path"),
       ("a/b", "is a path"), ("..", "is a path")]


@pytest.mark.parametrize("name, why", BAD)
def test_bad_target_plans_name_is_refused(name, why):
    with pytest.raises(UserError, match=f"-tp .*{why}"):
        move_plans_between_datasets(998, 999, "nnUNetPlans", name)  # refused before the datasets are looked up


def test_source_plans_name_with_json_gets_a_hint():
    with pytest.raises(UserError, match="-sp 'nnUNetPlans.json' ends with .json") as e:
        move_plans_between_datasets(998, 999, "nnUNetPlans.json", "T")
    assert "-sp nnUNetPlans" in e.value.one_line()


@pytest.mark.parametrize("name, why", BAD)
def test_bad_overwrite_plans_name_is_refused(name, why):
    with pytest.raises(UserError, match=f"-overwrite_plans_name .*{why}"):
        plan_experiment_dataset(999, overwrite_plans_name=name)


@pytest.mark.parametrize("name", ["nnUNetPlans", "nnUNetResEncUNetMPlans", "my.plans_v2"])
def test_good_names_pass(name):
    from nnunetv2.utilities.plans_handling.plans_handler import check_plans_identifier
    check_plans_identifier(name, "-tp")
