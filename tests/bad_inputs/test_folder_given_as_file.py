"""A folder passed where a file is expected (-pretrained_weights, -pp_pkl_file, e.g. the fold folder instead of its
checkpoint) was reported as 'not found' / 'does not exist'; it is named as a folder."""
import pytest

from nnunetv2.errors import UserError
from nnunetv2.postprocessing._safe_pickle import load_postprocessing_pickle


def test_postprocessing_pickle_that_is_a_folder(tmp_path):
    with pytest.raises(UserError, match="is a folder") as e:
        load_postprocessing_pickle(str(tmp_path))
    assert "does not exist" not in e.value.one_line()
    with pytest.raises(UserError, match="does not exist"):
        load_postprocessing_pickle(str(tmp_path / "nope.pkl"))


def test_pretrained_weights_that_are_a_folder(tmp_path):
    from nnunetv2.run.run_training import maybe_load_checkpoint

    class _Trainer:  # the check comes before anything of the trainer is used
        was_initialized = False
    with pytest.raises(UserError, match="is a folder") as e:
        maybe_load_checkpoint(_Trainer(), False, False, str(tmp_path))
    assert "not found" not in e.value.one_line()
    with pytest.raises(UserError, match="not found"):
        maybe_load_checkpoint(_Trainer(), False, False, str(tmp_path / "nope.pth"))
