"""The progress bar of evaluation, ensembling and postprocessing (nnunetv2.evaluation._parallel.starmap): shown on
a terminal, in-process and with workers; never in logs or pipes; the results are the same either way."""
from __future__ import annotations

import io
import operator
import sys

import pytest

from nnunetv2.evaluation._parallel import starmap


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize('num_processes', [1, 2])
def test_bar_on_a_terminal_only(monkeypatch, num_processes):
    args = [(i, 10) for i in range(5)]
    terminal = _Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    assert starmap(operator.add, args, num_processes, desc='Evaluating') == [10, 11, 12, 13, 14]
    assert 'Evaluating' in terminal.getvalue() and '5/5' in terminal.getvalue()

    pipe = io.StringIO()  # a log file, nohup, a notebook
    monkeypatch.setattr(sys, 'stderr', pipe)
    assert starmap(operator.add, args, num_processes, desc='Evaluating') == [10, 11, 12, 13, 14]
    assert pipe.getvalue() == ''


def test_no_bar_without_a_name_or_for_one_task(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    assert starmap(operator.add, [(1, 2), (3, 4)], 1) == [3, 7]
    assert starmap(operator.add, [(1, 2)], 1, desc='Ensembling') == [3]
    assert terminal.getvalue() == ''
