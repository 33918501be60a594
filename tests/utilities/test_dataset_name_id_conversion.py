import os

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities.dataset_name_id_conversion import (convert_dataset_name_to_id, convert_id_to_dataset_name,
                                                           find_candidate_datasets, maybe_convert_to_dataset_name)
from nnunetv2.utilities.file_path_utilities import (convert_ensemble_folder_to_model_identifiers_and_folds,
                                                    folds_string_to_tuple, folds_tuple_to_string, get_ensemble_name,
                                                    get_output_folder,
                                                    parse_dataset_trainer_plans_configuration_from_path)


def test_found_in_any_root(nnunet_dirs):
    (nnunet_dirs["nnUNet_results"] / "Dataset005_Toy").mkdir()
    (nnunet_dirs["nnUNet_raw"] / "Dataset006_Other").mkdir()
    assert convert_id_to_dataset_name(5) == "Dataset005_Toy"
    assert maybe_convert_to_dataset_name("5") == maybe_convert_to_dataset_name("005") == "Dataset005_Toy"
    assert maybe_convert_to_dataset_name("Dataset123_NotChecked") == "Dataset123_NotChecked"
    assert list(find_candidate_datasets(6)) == ["Dataset006_Other"]


def test_same_name_in_several_roots_is_one_dataset(nnunet_dirs):
    for root in nnunet_dirs.values():
        (root / "Dataset005_Toy").mkdir()
    assert convert_id_to_dataset_name(5) == "Dataset005_Toy"


def test_ambiguous_id_lists_candidates(nnunet_dirs):
    (nnunet_dirs["nnUNet_raw"] / "Dataset005_Toy").mkdir()
    (nnunet_dirs["nnUNet_preprocessed"] / "Dataset005_Other").mkdir()
    with pytest.raises(UserError) as e:
        convert_id_to_dataset_name(5)
    msg = e.value.one_line()
    assert "Dataset005_Other" in msg and "Dataset005_Toy" in msg and "More than one" in msg


def test_unknown_id(nnunet_dirs):
    with pytest.raises(UserError) as e:
        maybe_convert_to_dataset_name(42)
    msg = e.value.one_line()
    assert "42" in msg and str(nnunet_dirs["nnUNet_raw"]) in msg and "setup_paths.sh" in msg


def test_unset_roots_are_skipped(monkeypatch, tmp_path):
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(v, raising=False)
    assert len(find_candidate_datasets(1)) == 0
    with pytest.raises(UserError, match="nnUNet_raw, nnUNet_preprocessed, nnUNet_results are not set"):
        convert_id_to_dataset_name(1)


def test_not_a_name_or_id():
    with pytest.raises(UserError, match="neither a dataset id nor a dataset name"):
        maybe_convert_to_dataset_name("Toy")
    assert convert_dataset_name_to_id("Dataset1234_x") == 123  # only three digits are read, as the reference
    with pytest.raises(UserError):
        convert_dataset_name_to_id("Task005_x")


def test_output_folder_and_names(nnunet_dirs):
    (nnunet_dirs["nnUNet_raw"] / "Dataset005_Toy").mkdir()
    assert get_output_folder(5, "T", "P", "C", fold=0) == os.path.join(
        str(nnunet_dirs["nnUNet_results"]), "Dataset005_Toy", "T__P__C", "fold_0")
    path = os.path.join("x", "Dataset005_Toy", "T__P__C", "fold_all", "validation")
    assert parse_dataset_trainer_plans_configuration_from_path(path) == ("Dataset005_Toy", "T", "P", "C")
    assert parse_dataset_trainer_plans_configuration_from_path(os.path.join("a", "b")) is None
    name = get_ensemble_name("r/T__P__2d", "r/T__P__3d_fullres", (0, 1, "all"))
    assert name == "ensemble___T__P__2d___T__P__3d_fullres___0_1_all"
    assert convert_ensemble_folder_to_model_identifiers_and_folds(name) == (["T__P__2d", "T__P__3d_fullres"], "0_1_all")
    assert folds_string_to_tuple(folds_tuple_to_string([0, 1, "all"])) == [0, 1, "all"]
    assert isinstance(find_candidate_datasets(5), np.ndarray)
