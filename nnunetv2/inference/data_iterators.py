"""Preprocess prediction inputs in background processes and hand them out in input order.

Every item is ``{'data': float32 torch tensor (C, ...), 'data_properties': dict, 'ofile': str or None}``. Worker
``i`` of ``n`` handles cases ``i, i + n, ...`` and owns one queue of capacity 1; the consumer visits the queues
round-robin, so items come out in input order. A worker that fails sends its exception through its queue, so a
bad input file surfaces as that file's one-line error in the main process instead of "a worker died". Workers start,
fail and die as in every other pool (nnunetv2.utilities.worker_processes). The workers' side, which imports no torch,
is nnunetv2.inference.preprocessing_workers; this side makes their shared-memory arrays tensors.
"""
from __future__ import annotations

import os
import queue as queue_module
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.multiprocessing as torch_mp

from nnunetv2.errors import UserError
from nnunetv2.inference import prestarted_preprocessing
# the workers' side; its names are importable from here as well (the module path clients know)
from nnunetv2.inference.preprocessing_workers import (SkippedCase, append_previous_stage_one_hot,  # noqa: F401
                                                      check_previous_stage_labels, npy_previous_stage_source,
                                                      plain_item, preprocess_fromfiles_save_to_queue,
                                                      preprocess_fromnpy_save_to_queue)
from nnunetv2.utilities.worker_processes import (SharedFlag, WorkerFailure, raise_worker_died, start_worker,
                                                 worker_count)


def _to_item(data: np.ndarray, properties: dict, ofile: Optional[str]) -> dict:
    return _as_tensor(plain_item(data, properties, ofile))


def _as_tensor(item: dict) -> dict:
    """A worker's item with its data as a float32 tensor (it arrives as a numpy array in shared memory)."""
    if isinstance(item['data'], np.ndarray):
        item['data'] = torch.from_numpy(item['data'])
    return item


def _reraise_failure_of_another_worker(queues: list, stopped: int) -> None:
    """Worker ``stopped`` ended without queueing its next case because another worker failed: a failing worker
    queues its exception and then raises the abort flag, which makes the others stop early (exit code 0). Raise that
    exception, not "worker ``stopped`` died" about a case that was never wrong. Items still queued are dropped (the
    run ends here anyway)."""
    for other, q in enumerate(queues):
        if other == stopped:
            continue
        try:
            item = q.get(timeout=0.5)  # the failure may still be on its way through the pipe
        except queue_module.Empty:
            continue
        if isinstance(item, WorkerFailure):
            item.reraise("preprocessing worker")


def _round_robin(worker_fn, per_case_lists: List[Optional[Sequence]], num_cases: int, shared_args: tuple,
                 num_processes: int, pin_memory: bool, verbose: bool,
                 skipped: Optional[list] = None, case_names: Optional[Sequence[str]] = None,
                 adopt_prestarted: bool = False) -> Iterator[dict]:
    num_processes = min(num_cases, num_processes)
    if num_processes < 1:
        raise UserError(f"Preprocessing needs at least one worker process (got {num_processes} for {num_cases} "
                        f"cases).", "Use -npp >= 1.")
    num_processes = worker_count(num_processes, num_cases)
    context = torch_mp.get_context('spawn')
    tasks = prestarted_preprocessing.round_robin_tasks(worker_fn, per_case_lists, shared_args, num_processes, verbose)
    # workers a prediction command started before it imported torch (some perhaps already at work on exactly these
    # tasks); they share one abort flag. Flags, not multiprocessing.Events: a worker killed inside an Event's method
    # (out of memory) would leave its lock taken, or its wait unanswered, and the abort below would wait forever
    prestarted = prestarted_preprocessing.take(num_processes, tasks) if adopt_prestarted else []
    abort_event = prestarted[0].abort_event if prestarted else SharedFlag(context)
    # start_worker keeps what each worker is handed (its queue: named semaphores, unlinked when the parent's object
    # is freed) referenced by the process object, which lives in ``processes`` until the end
    queues, done_events, processes = [], [], []
    completed = False
    try:
        for i, (_, args, _) in enumerate(tasks):
            if i < len(prestarted):
                prestarted[i].hand_over(worker_fn, args, verbose)
                queues.append(prestarted[i].queue)
                done_events.append(prestarted[i].done_event)
                processes.append(prestarted[i].process)
                continue
            queues.append(context.Queue(maxsize=1))
            done_events.append(SharedFlag(context))
            processes.append(start_worker(context, worker_fn, (*args, queues[i], done_events[i], abort_event,
                                                               verbose)))
        for case in range(num_cases):
            w = case % num_processes
            while True:
                try:
                    item = queues[w].get(timeout=0.01)
                    break
                except queue_module.Empty:
                    if not processes[w].is_alive() and queues[w].empty():
                        if abort_event.is_set():
                            _reraise_failure_of_another_worker(queues, w)
                        name = case_names[case] if case_names is not None else f"input case {case + 1}"
                        raise_worker_died("preprocessing worker", processes[w], "-npp", f"preprocessing {name}")
            if isinstance(item, WorkerFailure):
                item.reraise("preprocessing worker")
            if isinstance(item, SkippedCase):
                item.report(skipped)
                continue
            item = _as_tensor(item)
            if pin_memory:
                item['data'] = item['data'].pin_memory()
            yield item
        completed = True
    finally:
        # after the last item the workers only wait for the abort event; otherwise (an error, Ctrl-C, the consumer
        # stopped early) they may be deep in a case: stop them at once instead of waiting for them
        abort_event.set()
        for p in processes:
            if completed:
                p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def preprocessing_iterator_fromfiles(list_of_lists: List[List[str]],
                                     list_of_segs_from_prev_stage_files: Union[None, List[str]],
                                     output_filenames_truncated: Union[None, List[str]],
                                     plans_manager, dataset_json: dict, configuration_manager,
                                     num_processes: int, pin_memory: bool = False,
                                     verbose: bool = False, skipped: Optional[list] = None) -> Iterator[dict]:
    """Items in input order. With a ``skipped`` list, cases with unusable input files are reported, collected
    there (``SkippedCase``) and left out; without one, the first such case raises its UserError."""
    return _round_robin(preprocess_fromfiles_save_to_queue,
                        [list_of_lists, list_of_segs_from_prev_stage_files, output_filenames_truncated],
                        len(list_of_lists), (plans_manager, dataset_json, configuration_manager),
                        num_processes, pin_memory, verbose, skipped,
                        [os.path.basename(files[0]) if files else f"input case {i + 1}"
                         for i, files in enumerate(list_of_lists)], adopt_prestarted=True)


def preprocessing_iterator_fromnpy(list_of_images: List[np.ndarray],
                                   list_of_segs_from_prev_stage: Union[List[np.ndarray], None],
                                   list_of_image_properties: List[dict],
                                   truncated_ofnames: Union[List[str], None],
                                   plans_manager, dataset_json: dict, configuration_manager,
                                   num_processes: int, pin_memory: bool = False,
                                   verbose: bool = False) -> Iterator[dict]:
    return _round_robin(preprocess_fromnpy_save_to_queue,
                        [list_of_images, list_of_segs_from_prev_stage, list_of_image_properties, truncated_ofnames],
                        len(list_of_images), (plans_manager, dataset_json, configuration_manager),
                        num_processes, pin_memory, verbose, None,
                        [os.path.basename(str(n)) for n in truncated_ofnames] if truncated_ofnames else None)


class PreprocessAdapter(object):
    """Single-process iterator over files with the same item format (no worker processes)."""

    def __init__(self, list_of_lists: List[List[str]],
                 list_of_segs_from_prev_stage_files: Union[None, List[str]], preprocessor,
                 output_filenames_truncated: Union[None, List[str]], plans_manager, dataset_json: dict,
                 configuration_manager, num_threads_in_multithreaded: int = 1, skipped: Optional[list] = None):
        self.preprocessor, self.plans_manager, self.configuration_manager, self.dataset_json = \
            preprocessor, plans_manager, configuration_manager, dataset_json
        self.skipped = skipped  # as in preprocessing_iterator_fromfiles
        self.label_manager = plans_manager.get_label_manager(dataset_json)
        n = len(list_of_lists)
        self.list_of_lists = list_of_lists
        self.segs = list_of_segs_from_prev_stage_files or [None] * n
        self.ofiles = output_filenames_truncated or [None] * n
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while True:
            if self._next >= len(self.list_of_lists):
                raise StopIteration
            try:
                return self.generate_train_batch()
            except UserError as e:
                SkippedCase(self.list_of_lists[self._next - 1], e.one_line()).report(self.skipped)

    def generate_train_batch(self) -> dict:
        idx = self._next
        self._next += 1
        data, seg, properties = self.preprocessor.run_case(self.list_of_lists[idx], self.segs[idx],
                                                           self.plans_manager, self.configuration_manager,
                                                           self.dataset_json)
        data = append_previous_stage_one_hot(data, seg if self.segs[idx] is not None else None, self.label_manager,
                                             self.segs[idx])
        return _to_item(data, properties, self.ofiles[idx])


class PreprocessAdapterFromNpy(object):
    """Single-process iterator over in-memory images (``run_case_npy``)."""

    def __init__(self, list_of_images: List[np.ndarray], list_of_segs_from_prev_stage: Union[List[np.ndarray], None],
                 list_of_image_properties: List[dict], truncated_ofnames: Union[List[str], None], plans_manager,
                 dataset_json: dict, configuration_manager, num_threads_in_multithreaded: int = 1,
                 verbose: bool = False):
        self.preprocessor = configuration_manager.preprocessor_class(verbose=verbose)
        self.plans_manager, self.configuration_manager, self.dataset_json = \
            plans_manager, configuration_manager, dataset_json
        self.label_manager = plans_manager.get_label_manager(dataset_json)
        n = len(list_of_images)
        self.images = list_of_images
        self.segs = list_of_segs_from_prev_stage or [None] * n
        self.properties = list_of_image_properties
        self.truncated_ofnames = truncated_ofnames or [None] * n
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._next >= len(self.images):
            raise StopIteration
        return self.generate_train_batch()

    def generate_train_batch(self) -> dict:
        idx = self._next
        self._next += 1
        prev = self.segs[idx]
        data, seg, properties = self.preprocessor.run_case_npy(self.images[idx], prev,
                                                               self.properties[idx], self.plans_manager,
                                                               self.configuration_manager, self.dataset_json)
        data = append_previous_stage_one_hot(data, seg if prev is not None else None, self.label_manager,
                                             npy_previous_stage_source(self.images[idx], self.truncated_ofnames[idx]))
        return _to_item(data, properties, self.truncated_ofnames[idx])
