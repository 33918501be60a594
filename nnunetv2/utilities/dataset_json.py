"""Reading and checking a raw dataset's dataset.json, with one clear message per mistake.

``load_dataset_json`` turns a missing file, broken JSON or a non-object into a ``UserError`` that names the file.
``dataset_json_problems`` lists *all* problems of the content at once (so a user fixes them in one go);
``validate_dataset_json`` raises them as one ``UserError``. verify_dataset_integrity and the commands use these.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from nnunetv2.errors import UserError
from nnunetv2.utilities.input_checks import is_whole_number

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
_EXAMPLE = ('{"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumor": 1}, '
            '"numTraining": 10, "file_ending": ".nii.gz"}')


def _dataset_json_file(path_or_folder: str) -> str:
    """The dataset.json file meant by ``path_or_folder``: a file, or a path whose name ends with .json, is the file
    itself (even where it is a folder by mistake); anything else is a dataset folder, which must exist."""
    path = os.fspath(path_or_folder)
    if path.endswith(".json") or os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise UserError(f"The dataset folder {path} does not exist.",
                        "Check the dataset id/name and the environment variable nnUNet_raw.")
    return os.path.join(path, "dataset.json")


def load_dataset_json(path_or_folder: str, validate: bool = False) -> dict:
    """Load ``dataset.json`` (a file, or a dataset folder containing one); optionally check its content."""
    file = _dataset_json_file(path_or_folder)
    try:
        # utf-8-sig: also a file saved with a byte-order mark (Windows editors, PowerShell 5 write one)
        with open(file, "r", encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise UserError(f"dataset.json not found: {file}.",
                        "Every raw dataset folder needs one; write it with "
                        "nnunetv2.dataset_conversion.generate_dataset_json.") from None
    except IsADirectoryError:
        raise UserError(f"{file} is a folder, not a dataset.json file.") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{file} is not UTF-8 text ({e.reason} at byte {e.start}).",
                        "Save it as UTF-8 JSON.") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{file} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.",
                        "Fix the syntax (quotes around keys and strings, no trailing commas, no comments).") from None
    if not isinstance(content, dict):
        raise UserError(f"{file} must contain a JSON object ({{...}}), not a {type(content).__name__}.",
                        f"Example: {_EXAMPLE}")
    if validate:
        validate_dataset_json(content, file)
    return content


def _label_problems(labels: Any, d: dict) -> List[str]:
    if not isinstance(labels, dict):
        return [f"'labels' must be an object mapping label names to integer values (or lists of integers for "
                f"regions), not {type(labels).__name__}"]
    problems: List[str] = []
    if not labels:
        return ["'labels' is empty; it needs at least \"background\": 0"]
    values: List[int] = []
    region_count = 0
    has_regions = False
    for name, v in labels.items():
        if name == "ignore":
            continue
        if isinstance(v, list):
            if not v or not all(is_whole_number(i) for i in v):
                problems.append(f"label {name!r} has value {json.dumps(v)}: a region must be a non-empty list of "
                                f"integers")
                continue
            values.extend(v)
            has_regions = has_regions or len(v) > 1
            if set(v) != {0}:
                region_count += 1
        elif is_whole_number(v):
            values.append(v)
            if v != 0:
                region_count += 1
        else:
            problems.append(f"label {name!r} has value {json.dumps(v)}: must be an integer or a list of integers")

    if "background" not in labels:
        problems.append("'labels' has no \"background\" entry; add \"background\": 0")
    else:
        bg = labels["background"]
        if isinstance(bg, list):
            problems.append(f"\"background\" must be the integer 0, not a list ({json.dumps(bg)})")
        elif is_whole_number(bg) and bg != 0:
            problems.append(f"\"background\" must be 0, not {bg}")

    ignore = labels.get("ignore")
    if "ignore" in labels:
        if not is_whole_number(ignore):
            problems.append(f"\"ignore\" must be a single integer, not {json.dumps(ignore)}")
            ignore = None
        elif values and ignore != max(values) + 1:
            problems.append(f"\"ignore\" is {ignore} but must be the highest label value, i.e. {max(values) + 1} "
                            f"(highest other label + 1)")
            ignore = None  # reported already; don't report it again as a gap

    expected = sorted(set(values) | ({ignore} if ignore is not None else set()))
    gaps = [(a, b) for a, b in zip(expected[:-1], expected[1:]) if b - a != 1]
    if gaps:
        problems.append(f"label values {expected} are not consecutive (gap between "
                        f"{', '.join(f'{a} and {b}' for a, b in gaps)}); renumber them 0, 1, 2, ...")
    elif expected and expected[0] < 0:
        problems.append(f"label values {expected} must not be negative")

    if has_regions:
        rco = d.get("regions_class_order")
        if rco is None:
            problems.append(f"'labels' declares regions (values that are lists) but 'regions_class_order' is "
                            f"missing; add one output value per foreground region ({region_count})")
        elif not isinstance(rco, list) or not all(is_whole_number(i) for i in rco):
            problems.append(f"'regions_class_order' must be a list of integers, not {json.dumps(rco)}")
        elif len(rco) != region_count:
            problems.append(f"'regions_class_order' has {len(rco)} entries but 'labels' declares {region_count} "
                            f"foreground regions; give one entry per region in the order of 'labels'")
    return problems


def _channel_problems(d: dict) -> List[str]:
    key = "channel_names" if "channel_names" in d or "modality" not in d else "modality"
    if key not in d:
        return []
    channels = d[key]
    if not isinstance(channels, dict):
        return [f"'{key}' must be an object like {{\"0\": \"CT\", \"1\": \"T2\"}}, not {type(channels).__name__}"]
    if not channels:
        return [f"'{key}' is empty; it needs one entry per input channel, e.g. {{\"0\": \"CT\"}}"]
    bad = [k for k, v in channels.items() if not isinstance(v, str)]
    if bad:
        return [f"'{key}' values must be channel names (strings); not for key(s) {', '.join(map(repr, bad))}"]
    return []


def _dataset_entry_problems(dataset: Any) -> List[str]:
    if not isinstance(dataset, dict):
        return [f"'dataset' must be an object mapping case identifiers to {{\"images\": [...], \"label\": ...}}, "
                f"not {type(dataset).__name__}"]
    bad = [k for k, e in dataset.items()
           if not (isinstance(e, dict) and isinstance(e.get("label"), str) and isinstance(e.get("images"), list)
                   and e["images"] and all(isinstance(i, str) for i in e["images"]))]
    if bad:
        shown = ", ".join(map(repr, bad[:5])) + (" ..." if len(bad) > 5 else "")
        return [f"'dataset' entries need \"images\" (a non-empty list of paths) and \"label\" (a path); wrong for "
                f"case(s) {shown}"]
    return []


def _problems(d: Any) -> List[str]:
    if not isinstance(d, dict):
        return [f"must be a JSON object, not {type(d).__name__}"]
    problems: List[str] = []
    missing = [k for k in REQUIRED_KEYS if k not in d and not (k == "channel_names" and "modality" in d)]
    if missing:
        problems.append(f"missing required key(s) {', '.join(map(repr, missing))} (required: "
                        f"{', '.join(REQUIRED_KEYS)})")
    problems += _channel_problems(d)
    if "labels" in d:
        problems += _label_problems(d["labels"], d)
    if "numTraining" in d and not is_whole_number(d["numTraining"]):
        problems.append(f"'numTraining' must be an integer (the number of training cases), not "
                        f"{json.dumps(d['numTraining'])}")
    if "file_ending" in d:
        fe = d["file_ending"]
        if not isinstance(fe, str) or not fe.startswith(".") or len(fe) < 2:
            problems.append(f"'file_ending' must be a string starting with '.', e.g. \".nii.gz\", not "
                            f"{json.dumps(fe)}")
    rw = d.get("overwrite_image_reader_writer")
    if rw is not None and not isinstance(rw, str):
        problems.append(f"'overwrite_image_reader_writer' must be the name of a reader/writer class (a string), "
                        f"not {json.dumps(rw)}")
    if "dataset" in d:
        problems += _dataset_entry_problems(d["dataset"])
    return problems


def dataset_json_problems(dataset_json: Any, source: str = "dataset.json") -> List[str]:
    """Every problem of a dataset.json's content, each as one line starting with ``source``; [] if it is fine."""
    return [f"{source}: {p}" for p in _problems(dataset_json)]


def validate_dataset_json(dataset_json: Any, source: str = "dataset.json") -> None:
    """Raise one ``UserError`` listing all problems of ``dataset_json`` (nothing if it is fine)."""
    problems = _problems(dataset_json)
    if problems:
        n = len(problems)
        raise UserError(f"{source} has {n} problem{'s' if n > 1 else ''}: " + "; ".join(problems) + ".",
                        "See documentation/dataset_format.md for the expected keys.")


def file_ending_problem(dataset_json: dict) -> Optional[str]:
    """Why ``dataset_json['file_ending']`` cannot be used as a file ending (missing, no leading dot), or None."""
    if "file_ending" not in dataset_json:
        return "has no 'file_ending' (e.g. \".nii.gz\")"
    fe = dataset_json["file_ending"]
    if not isinstance(fe, str) or not fe.startswith(".") or len(fe) < 2:
        return f"has 'file_ending' {json.dumps(fe)}, which must start with a dot (e.g. \".nii.gz\")"
    return None


def check_dataset_json_for_use(dataset_json: Any, source: str, needs_channels: bool = True) -> dict:
    """The keys every command needs from a dataset.json it is handed (a model folder's or a prediction folder's
    copy, which users also edit): 'labels', a 'file_ending' with its dot, and the channels (unless
    ``needs_channels`` is False: evaluating label files needs none). UserError naming the
    file and what is wrong; the content itself is returned unchanged."""
    if not isinstance(dataset_json, dict):
        raise UserError(f"{source} must contain a JSON object ({{...}}), not a {type(dataset_json).__name__}.")
    problems = []
    if not isinstance(dataset_json.get("labels"), dict):
        problems.append("has no 'labels' object")
    if needs_channels and "channel_names" not in dataset_json and "modality" not in dataset_json:
        problems.append("has no 'channel_names'")
    ending = file_ending_problem(dataset_json)
    if ending:
        problems.append(ending)
    if problems:
        raise UserError(f"{source} {'; '.join(problems)}.",
                        "Restore the dataset.json the model was trained with (it is a copy of the raw dataset's).")
    return dataset_json


def check_raw_dataset_json(dataset_json: dict, source: str, need_num_training: bool = True) -> dict:
    """The structure every command reading a raw dataset relies on (without --verify_dataset_integrity, which
    checks the values too): the required keys, 'channel_names' and 'labels' as objects, 'numTraining' a whole
    number. UserError naming ``source`` and every such problem; the content is returned unchanged.
    ``need_num_training=False``: 'numTraining' may be missing (fingerprint extraction never uses it; planning
    does), but where present it must still be a number."""
    problems = []
    missing = [k for k in REQUIRED_KEYS if k not in dataset_json
               and not (k == "channel_names" and "modality" in dataset_json)
               and not (k == "numTraining" and not need_num_training)]
    if missing:
        problems.append(f"misses the required key(s) {', '.join(map(repr, missing))}")
    key = "channel_names" if "channel_names" in dataset_json or "modality" not in dataset_json else "modality"
    if key in dataset_json and not isinstance(dataset_json[key], dict):
        problems.append(f"has '{key}' {type(dataset_json[key]).__name__}, which must be an object like "
                        f"{{\"0\": \"CT\", \"1\": \"T2\"}}")
    if "labels" in dataset_json and not isinstance(dataset_json["labels"], dict):
        problems.append(f"has 'labels' {type(dataset_json['labels']).__name__}, which must be an object like "
                        f"{{\"background\": 0, \"tumor\": 1}}")
    n = dataset_json.get("numTraining", 0)
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        problems.append(f"has 'numTraining' {json.dumps(dataset_json['numTraining'])}, which must be a whole number "
                        f"(the number of training cases)")
    if problems:
        raise UserError(f"{source} {'; '.join(problems)}.", f"Example of the required keys: {_EXAMPLE}")
    return dataset_json


def num_training_mismatch(dataset_json: dict, num_cases_found: int) -> Optional[str]:
    """"numTraining is X but N training case(s) were found", or None where they agree (or numTraining is missing)."""
    declared = dataset_json.get("numTraining")
    if declared is None or declared == num_cases_found:
        return None
    return f"numTraining is {declared} but {num_cases_found} training case(s) were found"
