"""Write a raw dataset's ``dataset.json`` (the file every nnU-Net v2 dataset needs) with the reference's key order."""
from __future__ import annotations

import os
from typing import Optional, Tuple, Union

from nnunetv2.errors import UserError
from nnunetv2.file_io import save_json


class RegionsWithoutOrderError(UserError, AssertionError):
    """Regions were declared without ``regions_class_order``.

    Also an ``AssertionError`` because that is what the reference raised and callers may catch it.
    """


def _is_region(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) > 1


def _string_keyed(channel_names: dict) -> dict:
    """A copy with every non-string key replaced by ``str(key)``; re-keyed entries move to the end (reference order)."""
    out = dict(channel_names)
    for key in list(out):
        if not isinstance(key, str):
            out[str(key)] = out.pop(key)
    return out


class LabelValueError(UserError, ValueError):
    """A label value that is not an integer (or a list of integers).

    Also a ``ValueError`` because that is what the reference raised (from ``int()``) and callers may catch it.
    """


def _int_labels(labels: dict) -> dict:
    """A copy with lists/tuples turned into tuples of ints and scalars into ints."""
    try:
        return {name: tuple(int(i) for i in v) if isinstance(v, (tuple, list)) else int(v)
                for name, v in labels.items()}
    except (TypeError, ValueError):
        pass
    name, value = next((n, v) for n, v in labels.items()
                       if not all(_is_int_like(i) for i in (v if isinstance(v, (tuple, list)) else [v])))
    # nnU-Net v1 wrote the labels the other way round ({0: 'background', 1: 'tumor'}): a common leftover
    inverted = all(_is_int_like(n) for n in labels) and all(isinstance(v, str) for v in labels.values())
    raise LabelValueError(
        f"labels maps label names to integer values, but label {name!r} has the value {value!r}"
        f"{' (this looks like the nnU-Net v1 form, value -> name)' if inverted else ''}.",
        "Write it as name -> value, e.g. labels={'background': 0, 'tumor': 1} (regions: a list of values).")


def _is_int_like(value) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def generate_dataset_json(output_folder: str,
                          channel_names: dict,
                          labels: dict,
                          num_training_cases: int,
                          file_ending: str,
                          citation: Union[list, str] = None,
                          regions_class_order: Tuple[int, ...] = None,
                          dataset_name: str = None,
                          reference: str = None,
                          release: str = None,
                          description: str = None,
                          overwrite_image_reader_writer: Optional[str] = None,
                          license: str = "Whoever converted this dataset was lazy and didn't look it up!",
                          converted_by: str = "Please enter your name, especially when sharing datasets with others "
                                              "in a common infrastructure!",
                          **kwargs) -> None:
    """Write ``<output_folder>/dataset.json`` (atomically, keys in insertion order, indent 4).

    ``channel_names`` maps channel index -> name (e.g. ``{0: 'CT'}``), ``labels`` maps label name -> int, or -> a
    list of ints for a region (regions need ``regions_class_order``). The license lands under the key
    ``licence`` (British spelling, as in the reference and in Medical Segmentation Decathlon files). Optional
    arguments are written only when given; ``kwargs`` are added last and may override any key (for example
    ``numTraining``). The caller's dicts are left unchanged.
    """
    if any(_is_region(v) for v in labels.values()) and regions_class_order is None:
        raise RegionsWithoutOrderError(
            "You have defined regions (a label whose value is a list of several ints) but regions_class_order is "
            "not set.", "Pass regions_class_order, one output label value per region, e.g. (1, 2, 3).")
    if not os.path.isdir(output_folder):
        raise UserError(f"Cannot write dataset.json: the output folder {output_folder} does not exist.",
                        "Create the dataset folder first.")

    dataset_json = {
        "channel_names": _string_keyed(channel_names),
        "labels": _int_labels(labels),
        "numTraining": num_training_cases,
        "file_ending": file_ending,
        "licence": license,
        "converted_by": converted_by,
    }
    optional = (("name", dataset_name), ("reference", reference), ("release", release),
                # The reference stored `release` under "citation" (a slip); we store the citation itself.
                ("citation", citation), ("description", description),
                ("overwrite_image_reader_writer", overwrite_image_reader_writer),
                ("regions_class_order", regions_class_order))
    for key, value in optional:
        if value is not None:
            dataset_json[key] = value
    dataset_json.update(kwargs)
    save_json(dataset_json, os.path.join(output_folder, "dataset.json"), sort_keys=False)
