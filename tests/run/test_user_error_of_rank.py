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
