"""A stand-in for the training and validation augmenters in tests of the training loop: endless empty batches, and
a count of how often the loop stopped its workers."""
from __future__ import annotations


class StubAugmenter:
    initialized = True

    def __init__(self):
        self.killed = 0

    def __next__(self):
        return {"data": None}

    def _kill_workers(self):
        self.killed += 1
        self.initialized = False
