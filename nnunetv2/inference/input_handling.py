"""Turn the user's input/output arguments into per-case lists, and check them up front.

Every problem becomes one ``UserError`` line before any model work starts: missing or empty input folder, files
of an input folder that do not follow ``CASE_XXXX<ending>``, missing input files, cases with missing channels, the
wrong number of channels for the model, missing previous-stage predictions, outputs that would replace a file they
must not (``check_no_overwrite``). Only an input folder's file names carry channel numbers: in lists of files given
by the caller a file's place is its channel.

The output folder may be the input folder (TotalSegmentator predicts that way): outputs ``CASE<ending>`` never
collide with inputs ``CASE_XXXX<ending>``, and predictions found there on a later run are not taken for inputs.
"""
from __future__ import annotations

import os
import re
import sys
from typing import List, Optional, Sequence, Tuple, Union

from nnunetv2.errors import UserError
from nnunetv2.file_io import json_safe, maybe_mkdir_p, save_json
from nnunetv2.utilities.other_endings import warn_other_endings
from nnunetv2.utilities.output_guard import check_output_files
from nnunetv2.utilities.utils import sorted_files_with_ending

_CHANNEL = re.compile(r"_(\d\d\d\d)$")
# every folder the predictor writes into holds this file (the reference writes it too): it marks predictions
PREDICT_MARKER = 'predict_from_raw_data_args.json'
BOOKKEEPING_FILES = (PREDICT_MARKER, 'dataset.json', 'plans.json')


def written_by_predict(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, PREDICT_MARKER))


def _case_id(first_file: str, file_ending: str) -> str:
    return os.path.basename(first_file)[:-(len(file_ending) + 5)]


def _listed_case_id(first_file: str, file_ending: str) -> str:
    """A caller-given case's name: CASE of CASE_XXXX<ending>, else the file name without the ending (the reference
    cuts five more characters off whatever the name, so t1.nii.gz became '' and its output the hidden '.nii.gz')."""
    if _channel_of(first_file, file_ending) is not None:
        return _case_id(first_file, file_ending)
    name = os.path.basename(first_file)
    return name[:-len(file_ending)] if name.endswith(file_ending) else name


def _channel_of(path: str, file_ending: str) -> Optional[int]:
    name = os.path.basename(path)
    if not name.endswith(file_ending):
        return None
    m = _CHANNEL.search(name[:len(name) - len(file_ending)])
    return None if m is None else int(m.group(1))


def list_cases_in_folder(folder: str, file_ending: str, num_channels: int) -> List[List[str]]:
    """Sorted ``[[case_0000, case_0001, ...], ...]`` of ``folder``; UserError for anything that does not fit."""
    if not os.path.isdir(folder):
        raise UserError(f"Input folder not found: {folder}.", "Pass an existing folder with -i.")
    names = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
    images = sorted_files_with_ending(folder, file_ending)  # a link to nowhere is an error, not a dropped case
    if written_by_predict(folder):  # predictions written into the input folder by an earlier run are not inputs
        images = [f for f in images if _channel_of(f, file_ending) is not None]
    if not images:
        others = sorted({os.path.splitext(f)[1] or f for f in names if not f.startswith('.')})
        if not others:
            raise UserError(f"Input folder {folder} is empty.",
                            f"Put the images to predict there, named CASE_XXXX{file_ending}.")
        raise UserError(f"Input folder {folder} has no files ending with {file_ending} (the model's file ending); "
                        f"found endings: {', '.join(others[:5])}.",
                        f"Convert the images to {file_ending} and name them CASE_XXXX{file_ending}.")
    bad = [f for f in images if _channel_of(f, file_ending) is None]
    if not bad:
        warn_other_endings(folder, names, file_ending, "the model's file ending", "are not predicted")
    if bad:
        raise UserError(f"Input file {os.path.join(folder, bad[0])} does not follow the naming CASE_XXXX{file_ending} "
                        f"(XXXX = 4-digit channel index){f' ({len(bad)} such files)' if len(bad) > 1 else ''}.",
                        f"Rename it, e.g. {bad[0][:-len(file_ending)]}_0000{file_ending}.")
    cases = {}
    for f in images:
        cases.setdefault(_case_id(f, file_ending), []).append(os.path.join(folder, f))
    return [cases[c] for c in sorted(cases)]


def check_files_exist(list_of_lists: Sequence[Sequence[str]]) -> None:
    """Every case has at least one file and every file exists."""
    for files in list_of_lists:
        if len(files) == 0:
            raise UserError("An input case has no files.", "Every case needs one file per channel.")
        for f in files:
            if not os.path.isfile(f):
                raise UserError(f"Input file not found: {f}.")


def check_channels(list_of_lists: Sequence[Sequence[str]], file_ending: str, num_channels: int) -> None:
    """Every file exists and every case has the same consecutive channel files _0000.._000k.

    One file may hold several channels (an RGB .png is 3 channels), so the exact channel count is checked after
    reading (``check_num_channels``); here a case with fewer files than the others, a gap, or more files than the
    model has channels is reported.
    """
    check_files_exist(list_of_lists)
    channel_lists = []
    for files in list_of_lists:
        channels = [_channel_of(f, file_ending) for f in files]
        if None in channels:
            bad = files[channels.index(None)]
            raise UserError(f"Input file {bad} does not end with _XXXX{file_ending}.",
                            "Name the files CASE_XXXX<ending> with the model's file ending.")
        channel_lists.append(channels)
    if not channel_lists:
        return
    n_files = max(max(len(c) for c in channel_lists), max(max(c) + 1 for c in channel_lists))
    expected = list(range(n_files))
    for files, channels in zip(list_of_lists, channel_lists):
        if sorted(channels) == expected and n_files <= num_channels:
            continue
        case = _case_id(files[0], file_ending)
        missing = [c for c in expected if c not in channels and c < num_channels]
        extra = sorted(c for c in channels if c >= num_channels or c not in expected)
        what = []
        if missing:
            what.append(f"missing channel file(s) {', '.join(f'_{c:04d}' for c in missing)}")
        if extra:
            what.append(f"unexpected channel file(s) {', '.join(f'_{c:04d}' for c in extra)}")
        raise UserError(f"Case {case} ({os.path.dirname(files[0]) or '.'}): {'; '.join(what)}; the model expects "
                        f"{num_channels} input channel(s).", "Provide one file per input channel (_0000, _0001, ...).")


def check_num_channels(data_channels: int, expected: int, case: str) -> None:
    """After preprocessing: the image has as many channels as the network's image inputs."""
    if data_channels != expected:
        raise UserError(f"Case {case} has {data_channels} image channel(s) but the model expects {expected}.",
                        "Check the input files (one per channel, _0000, _0001, ...) against the model's "
                        "dataset.json channel_names.")


def check_no_overwrite(output_files: Sequence[str], input_files: Sequence[str]) -> None:
    """Never replace a file given as input, nor an existing file in a folder that no earlier prediction wrote
    (ground-truth labels, say). Files in a folder holding ``PREDICT_MARKER`` may be replaced: that is a rerun."""
    inputs = {os.path.realpath(f) for f in input_files}
    for f in output_files:
        if os.path.realpath(f) in inputs:
            raise UserError(f"The prediction {f} would overwrite an input file of the same name.",
                            "Choose another output folder (-o), or rename the input case.")
    by_folder = {}
    for f in output_files:
        by_folder.setdefault(os.path.dirname(f) or '.', []).append(os.path.basename(f))
    for folder, names in by_folder.items():
        check_output_files(folder, names, 'nnUNetv2_predict', marker=PREDICT_MARKER)


def num_image_channels(dataset_json: dict) -> int:
    """The number of input channels a model takes (dataset.json's 'channel_names', or 'modality' of old ones)."""
    return len(dataset_json['modality'] if 'modality' in dataset_json else dataset_json['channel_names'])


def output_folder_of(output) -> Optional[str]:
    """The folder predictions go to: the output folder, or that of the first truncated output name; None for
    predictions returned in memory."""
    if isinstance(output, str):
        return output
    if output is not None and len(output) > 0:
        return os.path.dirname(output[0]) or '.'
    return None


def write_bookkeeping_files(output_folder: str, arguments: dict, dataset_json: dict, plans: dict) -> None:
    """The files every prediction folder holds beside the predictions; the marker first (it tells later runs that
    the folder holds predictions, see ``written_by_predict``)."""
    maybe_mkdir_p(output_folder)
    save_json(json_safe(arguments), os.path.join(output_folder, PREDICT_MARKER))
    save_json(dataset_json, os.path.join(output_folder, 'dataset.json'), sort_keys=False)
    save_json(plans, os.path.join(output_folder, 'plans.json'), sort_keys=False)


def check_cascade_input(previous_stage_name: Optional[str], folder_with_segs_from_prev_stage) -> None:
    """A cascade stage needs the previous stage's predictions, and only a cascade stage takes them."""
    if previous_stage_name is not None and folder_with_segs_from_prev_stage is None:
        raise UserError(f"The requested configuration is a cascaded network. It requires the segmentations of "
                        f"the previous stage ({previous_stage_name}) as input.",
                        "Predict that stage first and pass its output folder with -prev_stage_predictions.")
    if previous_stage_name is None and folder_with_segs_from_prev_stage is not None:
        # the reference appends the maps anyway and fails later with a confusing channel-count error
        raise UserError(f"Previous-stage predictions were given ({folder_with_segs_from_prev_stage}) but the "
                        f"model's configuration is not a cascade stage (its plans name no previous_stage).",
                        "Leave out -prev_stage_predictions, or predict with the cascade configuration "
                        "(e.g. -c 3d_cascade_fullres).")


def _fspath(value):
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def path_arguments(list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                   folder_with_segs_from_prev_stage=None):
    """The predictor's folder and file arguments with pathlib paths turned into str. The reference tells folders
    from lists by ``isinstance(x, str)``: a ``Path`` input folder failed with a TypeError, and a ``Path`` output
    folder was taken for 'no output' (nothing written, arrays returned)."""
    source = list_of_lists_or_source_folder
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    elif isinstance(source, (list, tuple)):
        source = [[_fspath(f) for f in case] if isinstance(case, (list, tuple)) else _fspath(case) for case in source]
    output = output_folder_or_list_of_truncated_output_files
    if isinstance(output, os.PathLike):
        output = os.fspath(output)
    elif isinstance(output, (list, tuple)):
        output = [_fspath(o) for o in output]
    return source, output, _fspath(folder_with_segs_from_prev_stage)


def _check_cases_are_lists(list_of_lists: Sequence) -> None:
    """A list of file names instead of a list of cases would be read as cases whose 'files' are characters."""
    names = [c for c in list_of_lists if isinstance(c, str)]
    if names:
        raise UserError(f"The input is a list of file names ({names[0]!r}{', ...' if len(list_of_lists) > 1 else ''}); "
                        f"it must be a folder or a list of cases, each case a list of its channel files.",
                        "E.g. [['a_0000.nii.gz'], ['b_0000.nii.gz']] for two one-channel cases, "
                        "[['a_0000.nii.gz', 'a_0001.nii.gz']] for one case with two channels.")


def manage_input_and_output_lists(list_of_lists_or_source_folder: Union[str, List[List[str]]],
                                  output_folder_or_list_of_truncated_output_files: Union[None, str, List[str]],
                                  dataset_json: dict, num_input_image_channels: int,
                                  folder_with_segs_from_prev_stage: Optional[str] = None, overwrite: bool = True,
                                  part_id: int = 0, num_parts: int = 1, save_probabilities: bool = False) \
        -> Tuple[List[List[str]], Optional[List[Optional[str]]], List[Optional[str]]]:
    """(cases, truncated output names or None, previous-stage files) for this part, done cases dropped."""
    file_ending = dataset_json['file_ending']
    if isinstance(list_of_lists_or_source_folder, str):
        list_of_lists = list_cases_in_folder(list_of_lists_or_source_folder, file_ending, num_input_image_channels)
        check_channels(list_of_lists, file_ending, num_input_image_channels)
    else:
        # the caller's own lists: a file's place in its list is its channel, whatever its name (as in the reference:
        # HD-BET passes [['t1.nii.gz']], or [['scan_0002.nii.gz']] for a single-channel model); the number of
        # channels is checked once the case is read (check_num_channels)
        _check_cases_are_lists(list_of_lists_or_source_folder)
        list_of_lists = [list(c) for c in list_of_lists_or_source_folder]
        check_files_exist(list_of_lists)
    print(f'There are {len(list_of_lists)} cases in the source folder')
    all_inputs = [f for case in list_of_lists for f in case]  # other parts' inputs are not to be replaced either
    list_of_lists = list_of_lists[part_id::num_parts]
    caseids = [_listed_case_id(c[0], file_ending) for c in list_of_lists]
    print(f'I am process {part_id} out of {num_parts} (max process ID is {num_parts - 1}, we start counting with 0!)')
    print(f'There are {len(caseids)} cases that I would like to predict')

    out = output_folder_or_list_of_truncated_output_files
    if isinstance(out, str):
        output_filenames_truncated = [os.path.join(out, i) for i in caseids]
    elif out is not None:
        output_filenames_truncated = list(out)[part_id::num_parts]
    else:
        output_filenames_truncated = None

    if folder_with_segs_from_prev_stage is not None:
        seg_files = [os.path.join(folder_with_segs_from_prev_stage, i + file_ending) for i in caseids]
    else:
        seg_files = [None] * len(caseids)

    if output_filenames_truncated is not None:
        endings = (file_ending, '.npz', '.pkl') if save_probabilities else (file_ending,)
        check_no_overwrite([o + e for o in output_filenames_truncated for e in endings],
                           all_inputs + [f for f in seg_files if f is not None])

    if not overwrite and output_filenames_truncated is not None:
        keep = []
        for i, o in enumerate(output_filenames_truncated):
            done = os.path.isfile(o + file_ending) and (not save_probabilities or os.path.isfile(o + '.npz'))
            if not done:
                keep.append(i)
        output_filenames_truncated = [output_filenames_truncated[i] for i in keep]
        list_of_lists = [list_of_lists[i] for i in keep]
        seg_files = [seg_files[i] for i in keep]
        print(f'overwrite was set to {overwrite}, so I am only working on cases that haven\'t been predicted yet. '
              f'That\'s {len(keep)} cases.')
    # only the cases still to predict need their previous-stage prediction (--continue_prediction skips the others)
    _check_previous_stage_files(folder_with_segs_from_prev_stage, seg_files)
    return list_of_lists, output_filenames_truncated, seg_files


def _check_previous_stage_files(folder: Optional[str], seg_files: List[Optional[str]]) -> None:
    if folder is None or not seg_files:  # nothing left to predict: nothing of the previous stage is read
        return
    if not os.path.isdir(folder):
        raise UserError(f"Previous-stage predictions folder {folder} does not exist.",
                        "Predict the previous stage into that folder first, or correct -prev_stage_predictions.")
    missing = [f for f in seg_files if f is not None and not os.path.isfile(f)]
    if missing:
        raise UserError(f"Previous-stage prediction {missing[0]} not found"
                        f"{f' ({len(missing)} missing)' if len(missing) > 1 else ''}.",
                        "Predict the previous stage into -prev_stage_predictions first.")


def spacing_far_from_training(spacing, training: Optional["np.ndarray"], factor: float = 4.0,
                              ignored_axes: Sequence[int] = ()) -> Optional[str]:
    """Why the spacing of an image to predict looks wrong, or None: an axis more than ``factor`` times finer than the
    finest, or coarser than the coarsest, spacing of that axis among the model's training images (``training``: one
    row per image, as in dataset_fingerprint.json). Such an image is resampled by that much before the network sees
    it; mostly the header is wrong (cm or m instead of mm, or no spacing stored and 1 assumed), and the prediction is
    then empty or nonsense, without a word from the reference. ``ignored_axes``: axes the configuration does not
    resample (the slice axis of a 2d configuration)."""
    import numpy as np
    if training is None or spacing is None or len(spacing) != training.shape[1]:
        return None
    spacing = np.asarray(spacing, dtype=np.float64)
    low, high = training.min(axis=0), training.max(axis=0)
    far = [i for i in range(len(spacing)) if i not in ignored_axes
           and (spacing[i] * factor < low[i] or spacing[i] > high[i] * factor)]
    if not far:
        return None
    ranges = "; ".join(f"axis {i}: {spacing[i]:g} vs {low[i]:g}" + (f"-{high[i]:g}" if high[i] != low[i] else "")
                       for i in far)
    return (f"its spacing {tuple(float(f'{s:g}') for s in spacing)} is far from that of the model's training images "
            f"({ranges}); it is resampled to the model's spacing all the same, which seldom gives a useful prediction. "
            f"Check the file's header: spacing in mm (not cm or m), or no spacing stored and 1 assumed")


def warn_if_spacing_far_from_training(properties, training: Optional["np.ndarray"], name: str,
                                      ignored_axes: Sequence[int] = ()) -> None:
    """Print a warning (stderr) naming the case when :func:`spacing_far_from_training` finds its spacing odd."""
    spacing = properties.get('spacing') if isinstance(properties, dict) else None
    problem = spacing_far_from_training(spacing, training, ignored_axes=ignored_axes)
    if problem is not None:
        print(f"WARNING: {name}: {problem}.", file=sys.stderr, flush=True)
