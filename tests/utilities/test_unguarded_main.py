"""Scripts that call nnU-Net at their top level, outside ``if __name__ == '__main__':``: spawned workers would import
the script and run the call again. They used to hang (a pool replacing its dying workers forever, or the parent
blocked writing a large argument to a worker that died); now they stop at once with one line naming the statement.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnunetv2.utilities.unguarded_main import refuse_workers_from_unguarded_main, unguarded_main_statement

POOL_CALL = """
    from nnunetv2.utilities.watched_pool import WatchedPool
    with WatchedPool(2, 'worker process', '-np') as pool:
        print('RESULT', pool.starmap(divmod, [(7, 2), (9, 4)]))
"""
LARGE_ARGUMENT_CALL = """
    import multiprocessing
    import numpy as np
    from nnunetv2.utilities.worker_processes import start_worker
    p = start_worker(multiprocessing.get_context('spawn'), np.sum, (np.ones(2_000_000),))
    p.join()
    print('RESULT', p.exitcode)
"""


def _run(tmp_path: Path, source: str, name: str = 'script.py') -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize('call', [POOL_CALL, LARGE_ARGUMENT_CALL], ids=['pool', 'large_argument'])
def test_unguarded_script_is_refused_at_once(tmp_path, call):
    done = _run(tmp_path, 'import sys\n' + textwrap.dedent(call))
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "script.py, line " in last and "if __name__ == '__main__':" in last, last
    assert 'RESULT' not in done.stdout
    assert 'bootstrapping phase' not in done.stderr  # no worker got as far as running the script


@pytest.mark.parametrize('guard', ["if __name__ == '__main__':",
                                   "if __import__('multiprocessing').current_process().name == 'MainProcess':"])
def test_guarded_script_runs(tmp_path, guard):
    done = _run(tmp_path, guard + textwrap.indent(textwrap.dedent(POOL_CALL), '    '))
    assert done.returncode == 0, done.stderr
    assert 'RESULT [(3, 1), (2, 1)]' in done.stdout


def test_function_called_from_a_guarded_block_runs(tmp_path):
    source = 'def main():\n' + textwrap.indent(textwrap.dedent(POOL_CALL), '    ') + \
        "\n\nif __name__ == '__main__':\n    main()\n"
    done = _run(tmp_path, source)
    assert done.returncode == 0, done.stderr
    assert 'RESULT [(3, 1), (2, 1)]' in done.stdout


def test_function_called_unguarded_is_refused(tmp_path):
    source = 'def main():\n' + textwrap.indent(textwrap.dedent(POOL_CALL), '    ') + '\n\nmain()\n'
    done = _run(tmp_path, source)
    assert done.returncode == 1
    assert 'script.py, line 8, runs at the script' in done.stderr.strip().splitlines()[-1]


def test_forked_workers_and_this_test_process_are_never_refused():
    assert unguarded_main_statement() is None  # pytest's own entry point is guarded
    refuse_workers_from_unguarded_main('fork')
    refuse_workers_from_unguarded_main('spawn')


def test_reading_the_script_does_not_repeat_its_warnings(tmp_path):
    """The check parses the user's script again; warnings the script's source raises (an invalid escape sequence,
    'is' with a literal) were shown when it started and must not be printed a second time."""
    import warnings
    from nnunetv2.utilities.unguarded_main import _lines_inside_an_if
    script = tmp_path / "script.py"
    script.write_text('pattern = "\\d+"\nif pattern is "x":\n    pass\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = _lines_inside_an_if(str(script), script.stat().st_mtime_ns)
    assert parsed is not None and parsed[0] == frozenset({2, 3})
    assert [str(w.message) for w in caught] == []
