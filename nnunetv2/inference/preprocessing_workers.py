"""The preprocessing workers of prediction: read and preprocess their cases and queue them for the consumer
(nnunetv2.inference.data_iterators, which starts them and hands the items out in input order).

This module imports no torch: a worker's arrays reach the consumer through shared memory (utilities.shared_array),
so a worker spends no second importing torch. Items are ``{'data': float32 array (C, ...), 'data_properties': dict,
'ofile': str or None}``; a case whose input is unusable comes as a ``SkippedCase``, a worker's exception as a
``WorkerFailure``.
"""
from __future__ import annotations

import logging
import queue as queue_module
import time
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.utilities import shared_array
from nnunetv2.utilities.freed_memory import release_freed_memory
from nnunetv2.utilities.worker_processes import WorkerFailure

logger = logging.getLogger(__name__)


class SkippedCase(object):
    """A case whose input files are unusable (a UserError while reading or preprocessing them, e.g. a 0-slice
    image). When the consumer collects these in a ``skipped`` list, the other cases are still predicted."""

    def __init__(self, files: Sequence[str], message: str):
        self.files = [str(f) for f in files]
        self.message = message

    def report(self, skipped: Optional[list]) -> None:
        """Record it in ``skipped`` (and say so now), or raise its error where nobody collects skipped cases."""
        if skipped is None:
            raise UserError(self.message)
        logger.error("nnU-Net: skipping %s: %s", ", ".join(self.files), self.message)
        skipped.append(self)


def append_previous_stage_one_hot(data: np.ndarray, seg: Optional[np.ndarray], label_manager,
                                  source: str = "the previous-stage segmentation") -> np.ndarray:
    """Cascade: append the previous stage's segmentation as one channel per foreground label (data's dtype).

    Background and the -1 'outside the nonzero mask' marker become all-zero. Every way in (files, arrays, worker
    processes or not) passes here, so the labels are checked here too (``check_previous_stage_labels``, naming
    ``source``).
    """
    if seg is None:
        return data
    seg = np.asarray(seg)
    check_previous_stage_labels(seg, source, label_manager)
    if seg.ndim == data.ndim:
        seg = seg[0]
    one_hot = np.stack([seg == label for label in label_manager.foreground_labels]).astype(data.dtype)
    return np.concatenate((data, one_hot))


def npy_previous_stage_source(image: np.ndarray, ofile: Optional[str]) -> str:
    """How an error names a previous-stage segmentation handed in as an array: there is no file to name, so the
    output it is for, or else the shape of its image."""
    return f"given as an array for {ofile}" if ofile else \
        f"given as an array for the image of shape {list(np.shape(image))}"


def check_previous_stage_labels(seg: np.ndarray, seg_file: str, label_manager, max_shown: int = 5) -> None:
    """UserError if a previous-stage map holds values that are no label of the model (the prediction of another
    model or dataset): the one-hot encoding would read them as background. -1, the preprocessor's 'outside the
    nonzero mask', is allowed. ``seg_file`` names the map (a path, or which array). Costs a min/max unless such
    values are there."""
    known = set(int(v) for v in label_manager.all_labels) | {-1}
    seg = np.asarray(seg)
    if seg.size == 0 or (int(seg.min()) >= min(known) and int(seg.max()) <= max(known) and
                         len(known) == max(known) - min(known) + 1):
        return
    unknown = [int(v) for v in np.unique(seg) if int(v) not in known][:max_shown]
    if unknown:
        raise UserError(f"Previous-stage prediction {seg_file} holds label value(s) "
                        f"{', '.join(str(v) for v in unknown)} that the model does not have (its labels: "
                        f"{', '.join(str(v) for v in label_manager.all_labels)}); they would be read as background.",
                        "Is it the prediction of another model or dataset? Give the previous stage's prediction of "
                        "this model (-prev_stage_predictions, or the previous-stage array).")


def plain_item(data: np.ndarray, properties: dict, ofile: Optional[str]) -> dict:
    """An item with its data as a float32, C-contiguous numpy array (what every path hands out, as a tensor)."""
    return {'data': np.ascontiguousarray(data, dtype=np.float32), 'data_properties': properties, 'ofile': ofile}


def _to_shared_item(data: np.ndarray, properties: dict, ofile: Optional[str]) -> dict:
    """A worker's item: float32 data in shared memory (a numpy array again in the consumer, which makes it a tensor),
    or a torch tensor in torch's shared memory where ``memfd`` is missing (macOS, Windows)."""
    item = plain_item(data, properties, ofile)
    if shared_array.AVAILABLE:
        item['data'] = shared_array.SharedArray(item['data'])
    else:
        import torch
        item['data'] = torch.from_numpy(item['data'])
    return item


def _put(target_queue, item, abort_event) -> bool:
    """Put with a short timeout so a worker notices an abort instead of blocking forever; False if aborted."""
    while True:
        if abort_event.is_set():
            return False
        try:
            target_queue.put(item, timeout=0.01)
            return True
        except queue_module.Full:
            continue


# how often a worker that has queued all its items looks whether the consumer is done
_DONE_POLL_S = 0.02


def _stay_alive_until_consumed(finished_event) -> None:
    """Arrays travel as shared-memory file descriptors that this process hands out on request; exiting before
    the consumer has fetched the last item would make that fetch fail. The consumer sets the flag when done.

    Polled rather than waited on: a worker killed while waiting on a ``multiprocessing.Event`` leaves the consumer's
    ``set()`` waiting forever for it to wake (a ``SharedFlag`` has no wait; an Event handed in by a caller works
    the same way here)."""
    while not finished_event.is_set():
        time.sleep(_DONE_POLL_S)


def _queue_items(items: Iterator, target_queue, done_event, abort_event) -> None:
    """A worker's life: queue every item (a case's dict or a ``SkippedCase``), handing freed memory back after each,
    then stay until the consumer is done. An exception (also while setting up) goes to the consumer instead."""
    try:
        for item in items:
            if not _put(target_queue, item, abort_event):
                return
            del item
            release_freed_memory()
        done_event.set()
        _stay_alive_until_consumed(abort_event)
    except BaseException as e:  # noqa: B902 - forwarded to the consumer, which re-raises it
        _put(target_queue, WorkerFailure(e), abort_event)
        abort_event.set()


def preprocess_fromfiles_save_to_queue(list_of_lists: List[List[str]],
                                       list_of_segs_from_prev_stage_files: Union[None, List[str]],
                                       output_filenames_truncated: Union[None, List[str]],
                                       plans_manager, dataset_json: dict, configuration_manager,
                                       target_queue, done_event, abort_event, verbose: bool = False) -> None:
    """Worker: read + preprocess each case with the configuration's preprocessor and queue it."""
    def items() -> Iterator:
        label_manager = plans_manager.get_label_manager(dataset_json)
        preprocessor = configuration_manager.preprocessor_class(verbose=verbose)
        for idx in range(len(list_of_lists)):
            seg_file = None if list_of_segs_from_prev_stage_files is None else list_of_segs_from_prev_stage_files[idx]
            try:
                data, seg, properties = preprocessor.run_case(list_of_lists[idx], seg_file, plans_manager,
                                                              configuration_manager, dataset_json)
                data = append_previous_stage_one_hot(data, seg if seg_file is not None else None, label_manager,
                                                     seg_file)
            except UserError as e:  # this case's input is unusable; the consumer decides whether to go on
                yield SkippedCase(list_of_lists[idx], e.one_line())
                continue
            ofile = None if output_filenames_truncated is None else output_filenames_truncated[idx]
            item = _to_shared_item(data, properties, ofile)
            del data, seg  # not kept alive while this generator waits
            yield item

    _queue_items(items(), target_queue, done_event, abort_event)


def preprocess_fromnpy_save_to_queue(list_of_images: List[np.ndarray],
                                     list_of_segs_from_prev_stage: Union[List[np.ndarray], None],
                                     list_of_image_properties: List[dict],
                                     truncated_ofnames: Union[List[str], None],
                                     plans_manager, dataset_json: dict, configuration_manager,
                                     target_queue, done_event, abort_event, verbose: bool = False) -> None:
    """Worker: preprocess in-memory images (``run_case_npy``) and queue them."""
    def items() -> Iterator:
        label_manager = plans_manager.get_label_manager(dataset_json)
        preprocessor = configuration_manager.preprocessor_class(verbose=verbose)
        for idx in range(len(list_of_images)):
            prev = None if list_of_segs_from_prev_stage is None else list_of_segs_from_prev_stage[idx]
            data, seg, properties = preprocessor.run_case_npy(list_of_images[idx], prev,
                                                              list_of_image_properties[idx], plans_manager,
                                                              configuration_manager, dataset_json)
            ofile = None if truncated_ofnames is None else truncated_ofnames[idx]
            data = append_previous_stage_one_hot(data, seg if prev is not None else None, label_manager,
                                                 npy_previous_stage_source(list_of_images[idx], ofile))
            item = _to_shared_item(data, properties, ofile)
            del data, seg
            yield item

    _queue_items(items(), target_queue, done_event, abort_event)
