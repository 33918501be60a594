"""Background augmentation workers that fail loudly: a dead or failing worker is reported, never waited on forever.

batchgenerators' ``NonDetMultiThreadedAugmenter`` only says "One or more background workers are no longer alive"
when a worker fails, and a worker killed by the OOM killer leaves no message at all. The subclass here keeps its
interface (``generator``, ``num_processes``, ``transform``, ``_finish`` ...) but

* sends a failing worker's exception to the main process and re-raises it there, chained from the worker's
  traceback (a ``UserError`` raised in a worker, e.g. a missing preprocessed file, stays a ``UserError``);
* reports a worker that died without a traceback with its exit code / signal ("killed by signal 9 (SIGKILL),
  probably out of memory: lower nnUNet_n_proc_DA");
* never blocks on the shared queue after a failure: workers are terminated, not drained (a worker killed in the
  middle of writing a batch leaves a half message in the pipe, and reading it would hang forever).

Workers start, fail and die as in every other pool (nnunetv2.utilities.worker_processes): they ignore Ctrl-C (the
trainer's own stop handling ends the training between two iterations) and exit when the main process is gone.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
import traceback
from multiprocessing import Process, Queue, Semaphore
from queue import Empty, Full, Queue as ThreadQueue
from time import sleep, time
from typing import List, Optional, Tuple

import numpy as np
import torch
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import (
    NonDetMultiThreadedAugmenter, pin_memory_of_all_eligible_items_in_dict)
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from threadpoolctl import threadpool_limits

from nnunetv2.training.dataloading._batch_transport import (SlotReader, SlotWriter, make_slot_semaphores,
                                                            slots_per_worker)
from nnunetv2.utilities.worker_processes import (SharedFlag, WorkerDiedError, WorkerFailure, death_message,
                                                 start_worker)

logger = logging.getLogger(__name__)

# seconds the main process waits for a failed worker's traceback to arrive after the abort signal
_ERROR_REPORT_GRACE_S = 5.0
# Shortest timeout of the blocking queue calls. They return as soon as an item or a free place arrives; the timeout
# only bounds how late an abort or a dead worker is noticed. The trainer's wait_time of 2 ms made every waiting
# thread wake 500 times a second (~6 ms of main-process CPU per Dataset902 batch, competing with training).
_MIN_BLOCK_S = 0.05


def _block_s(wait_time: float) -> float:
    return max(wait_time, _MIN_BLOCK_S)


class AugmentationWorkerError(RuntimeError):
    """Data augmentation failed outside a worker's own code (receiving a batch; workers aborted without a report)."""


class AugmentationWorkerDied(WorkerDiedError, AugmentationWorkerError):
    """A data-augmentation worker ended without reporting an exception (killed, e.g. out of memory, or crashed)."""


def _worker(out_queue: Queue, error_queue: Queue, data_loader, transform, thread_id: int, seed,
            abort_event: SharedFlag, pause_event: SharedFlag, wait_time: float, free_slots=None,
            n_slots: int = 0) -> None:
    """Produce batches forever; on an exception, report it (with traceback) before signalling the abort.

    With ``free_slots`` (a semaphore), arrays travel through this worker's shared-memory ring (_batch_transport)."""
    torch.set_num_threads(1)
    if seed is not None:
        torch.manual_seed(seed)
    np.random.seed(seed)  # None -> fresh OS entropy per worker (torch is deliberately not reseeded)
    with threadpool_limits(1, None):
        data_loader.set_thread_id(thread_id)
        writer = SlotWriter(thread_id, free_slots, n_slots) if free_slots is not None else None
        item = None
        try:
            while not abort_event.is_set():
                if pause_event.is_set():
                    sleep(wait_time)
                    continue
                if item is None:
                    item = next(data_loader)
                    if transform is not None:
                        item = transform(**item)
                    if writer is not None:
                        item = writer.wrap(item, abort_event.is_set)
                        if item is None:  # aborted while waiting for a free slot
                            break
                try:
                    out_queue.put(item, timeout=_block_s(wait_time))
                    item = None
                except Full:
                    pass
        except BaseException as e:  # noqa: B902 - reported to the main process, which re-raises it
            error_queue.put((thread_id, WorkerFailure(e)))  # a WorkerFailure always pickles
            abort_event.set()


def _results_loop(in_queue: Queue, out_queue: ThreadQueue, abort_event: SharedFlag, pin_memory: bool,
                  workers: List[Process], gpu: Optional[int], wait_time: float,
                  reader: Optional[SlotReader] = None, failure: Optional[list] = None) -> None:
    """``_move_batches``; an exception there (e.g. a batch that cannot be rebuilt) is kept in ``failure`` and
    aborts, so that the main thread raises it instead of waiting forever for a thread that is gone."""
    try:
        _move_batches(in_queue, out_queue, abort_event, pin_memory, workers, gpu, wait_time, reader)
    except Exception:
        if failure is not None:
            failure.append(traceback.format_exc())
        abort_event.set()


def _move_batches(in_queue: Queue, out_queue: ThreadQueue, abort_event: SharedFlag, pin_memory: bool,
                  workers: List[Process], gpu: Optional[int], wait_time: float,
                  reader: Optional[SlotReader]) -> None:
    """Move batches from the worker queue to the main thread (copying them out of the workers' shared-memory
    slots, pinning memory if asked); watch worker liveness."""
    do_pin_memory = pin_memory and gpu is not None and torch.cuda.is_available()
    if do_pin_memory:
        torch.cuda.set_device(gpu)
    item = None
    while not abort_event.is_set():
        if not all(p.is_alive() for p in workers):
            abort_event.set()
            return
        if item is None:
            try:
                item = in_queue.get(timeout=_block_s(wait_time))
            except Empty:
                continue
            except (OSError, EOFError, ValueError):  # queue closed under us during shutdown
                abort_event.set()
                return
            if reader is not None:
                item = reader.unwrap(item, pin_memory=do_pin_memory)
            if do_pin_memory:  # whatever did not travel through a slot (already pinned tensors stay as they are)
                item = pin_memory_of_all_eligible_items_in_dict(item)
        try:
            out_queue.put(item, timeout=_block_s(wait_time))
            item = None
        except Full:
            continue


def _describe_exit(worker_id: int, p: Process) -> str:
    return death_message(f"data augmentation worker {worker_id}", p, "nnUNet_n_proc_DA")


class nnUNetNonDetMultiThreadedAugmenter(NonDetMultiThreadedAugmenter):
    """``NonDetMultiThreadedAugmenter`` whose failures raise the worker's own error instead of hanging or saying
    only "background workers are no longer alive".

    Batches travel through per-worker shared-memory slots instead of torch's per-tensor shared-memory files
    (see _batch_transport); set ``share_batches_via_slots = False`` (class or instance) for the plain queue.
    """

    share_batches_via_slots = True

    def __init__(self, data_loader, transform, num_processes, num_cached=2, seeds=None, pin_memory=False,
                 wait_time=0.02):
        super().__init__(data_loader, transform, num_processes, num_cached, seeds, pin_memory, wait_time)
        self._error_queue = None
        self._results_failure: List[str] = []  # traceback of a failed results thread

    def _start(self):
        if self.initialized:
            return
        self._finish()
        self._queue = Queue(self.num_cached)
        self._error_queue = Queue()
        self._results_failure = []
        self.results_loop_queue = ThreadQueue(self.num_cached)
        # lock-free flags: a worker killed inside multiprocessing.Event.is_set() would keep its lock forever (and
        # every later set()/is_set() here waiting for it), see SharedFlag
        self.abort_event = SharedFlag()
        self.pause_event = SharedFlag()
        if isinstance(self.generator, DataLoader):
            self.generator.was_initialized = False
        n_slots = slots_per_worker(self.num_cached, self.num_processes)
        free_slots = make_slot_semaphores(Semaphore, self.num_processes, n_slots) \
            if self.share_batches_via_slots else [None] * self.num_processes
        # the semaphores stay referenced by the process objects (start_worker) and the reader for the workers' lifetime
        reader = SlotReader(free_slots, n_slots) if self.share_batches_via_slots else None
        for i in range(self.num_processes):
            self._processes.append(start_worker(multiprocessing, _worker, (
                self._queue, self._error_queue, self.generator, self.transform, i, self.seeds[i], self.abort_event,
                self.pause_event, self.wait_time, free_slots[i], n_slots)))
        gpu = torch.cuda.current_device() if torch.cuda.is_available() else None
        self.results_loop_thread = threading.Thread(target=_results_loop, args=(
            self._queue, self.results_loop_queue, self.abort_event, self.pin_memory, self._processes, gpu,
            self.wait_time, reader, self._results_failure), daemon=True)
        self.results_loop_thread.start()
        self.initialized = True

    def __next__(self):
        if not self.initialized:
            self._start()
        while True:
            if self.abort_event.is_set():
                self._raise_worker_failure()
            try:
                item = self.results_loop_queue.get(timeout=_block_s(self.wait_time))
            except Empty:
                continue
            self.results_loop_queue.task_done()
            return item

    def _collect_failure(self) -> Tuple[Optional[tuple], List[str]]:
        """The first reported worker exception (if any) and descriptions of workers that died silently."""
        report = None
        # a failed results thread is its own report; a worker's, if any, would already be on its way
        deadline = time() + (0.2 if self._results_failure else _ERROR_REPORT_GRACE_S)
        while report is None and time() < deadline:
            try:
                report = self._error_queue.get(timeout=0.05)
            except (Empty, OSError, EOFError, ValueError):
                # a worker that died without reporting will never send anything; stop waiting once one is found
                if any(not p.is_alive() and p.exitcode != 0 for p in self._processes):
                    break
        silent = [_describe_exit(i, p) for i, p in enumerate(self._processes)
                  if not p.is_alive() and p.exitcode not in (0, None) and (report is None or report[0] != i)]
        return report, silent

    def _kill_workers(self) -> None:
        """Stop everything without touching the shared queue (it may hold a half-written message)."""
        self.abort_event.set()
        for p in self._processes:
            if p.is_alive():
                p.terminate()
        for p in self._processes:
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join(timeout=2)
        if self.results_loop_thread is not None:
            self.results_loop_thread.join(timeout=1)  # a daemon thread: if stuck, it dies with the process
        for q in (self._queue, self._error_queue):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        self._queue = self._error_queue = None
        self.results_loop_queue = None
        self.results_loop_thread = None
        self.abort_event = self.pause_event = None
        self._processes = []
        self.initialized = False

    def _raise_worker_failure(self):
        report, silent = self._collect_failure()
        self._kill_workers()
        if report is not None:
            worker_id, failure = report
            failure.reraise(f"data augmentation worker {worker_id}", AugmentationWorkerError)
        if silent:
            raise AugmentationWorkerDied(' '.join(silent))
        if self._results_failure:
            raise AugmentationWorkerError("receiving a batch from the data augmentation workers failed:\n"
                                          + self._results_failure[0])
        raise AugmentationWorkerError("data augmentation stopped: the workers were aborted without reporting an "
                                      "error (was a worker interrupted?)")

    def _finish(self, timeout=10, force=False):
        super()._finish(timeout, force)
        if self._error_queue is not None:
            self._error_queue.cancel_join_thread()
            self._error_queue.close()
            self._error_queue = None


def wrap_in_augmenter(data_loader, num_processes: int, num_cached: int, pin_memory: bool,
                      wait_time: float = 0.002):
    """``SingleThreadedAugmenter`` for 0 workers, else the fail-loud multi-process augmenter."""
    if num_processes == 0:
        return SingleThreadedAugmenter(data_loader, None)
    return nnUNetNonDetMultiThreadedAugmenter(data_loader, None, num_processes, num_cached, seeds=None,
                                              pin_memory=pin_memory, wait_time=wait_time)


def get_train_val_augmenters(dl_tr, dl_val, allowed_num_processes: int, pin_memory: bool):
    """The trainer's augmenters: training gets ``n`` workers and ``max(6, n // 2)`` cached
    batches, validation ``max(1, n // 2)`` workers and ``max(3, n // 4)`` cached batches."""
    n = allowed_num_processes
    if n == 0:
        return wrap_in_augmenter(dl_tr, 0, 0, pin_memory), wrap_in_augmenter(dl_val, 0, 0, pin_memory)
    mt_gen_train = wrap_in_augmenter(dl_tr, n, max(6, n // 2), pin_memory)
    mt_gen_val = wrap_in_augmenter(dl_val, max(1, n // 2), max(3, n // 4), pin_memory)
    return mt_gen_train, mt_gen_val
