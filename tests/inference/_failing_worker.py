"""A preprocessing worker for test_array_inputs (a module of its own: spawned workers import it by name)."""
import time

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.inference.preprocessing_workers import _queue_items, plain_item


def slow_or_failing(cases, target_queue, done_event, abort_event, verbose=False):
    """Each case is 'slow' (queued after 2 s) or 'bad' (fails at once), as a real worker's run_case_npy would."""
    def items():
        for case in cases:
            if case == 'bad':
                raise UserError(f"case {case} is unusable")
            time.sleep(2)
            yield plain_item(np.zeros((1, 2, 2, 2), np.float32), {}, None)

    _queue_items(items(), target_queue, done_event, abort_event)
