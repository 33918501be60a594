"""fix_2: only a UserError the rank stopped with becomes one line; whole (multi-line) message kept."""
import traceback
from nnunetv2.errors import UserError
from nnunetv2.run.run_training import _user_error_of_rank


def _text(fn):
    try:
        fn()
    except Exception:
        return "\n\n-- Process 1 terminated with the following error:\n" + traceback.format_exc()


def test_bug_while_handling_a_user_error_keeps_its_traceback():
    def f():
        try:
            raise UserError("Fold 7 is busy.", "Wait.")
        except UserError:
            {}['missing']
    assert _user_error_of_rank(_text(f)) is None


def test_user_error_message_is_whole():
    def f():
        raise UserError("line one\nline two", "hint")
    assert str(_user_error_of_rank(_text(f))) == "line one line two hint"


def test_user_error_subclasses_and_other_errors():
    from nnunetv2.experiment_planning.verify_dataset_integrity import DatasetIntegrityError

    def integrity():
        raise DatasetIntegrityError("/data/Dataset001_X", ["case_003 has no label file.", "case_004 is empty."])
    line = str(_user_error_of_rank(_text(integrity)))
    assert line.startswith("Dataset integrity check failed for /data/Dataset001_X: 2 problem(s)")
    assert "- case_003 has no label file. - case_004 is empty. Fix the files" in line

    def bug():
        raise ValueError("nnunetv2.errors.UserError: not this one")
    assert _user_error_of_rank(_text(bug)) is None
    assert _user_error_of_rank("no traceback at all") is None

    def caused():
        try:
            raise KeyError("k")
        except KeyError as e:
            raise UserError("Fold 3 is busy.") from e
    assert str(_user_error_of_rank(_text(caused))) == "Fold 3 is busy."
