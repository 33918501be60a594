"""Side-by-side PNGs of predictions and their ground truth: what a person opens to see whether a model works.

One PNG per case: the same slice three times, the grey image alone, then with the ground truth labels in colour,
then with the predicted labels. The slice is picked from the ground truth the way ``nnUNetv2_plot_overlay_pngs`` picks
it (the slice where the labels take up most room), slices along the first array axis.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from nnunetv2.file_io import atomic_path, load_json, maybe_mkdir_p
from nnunetv2.utilities.overlay_plots import color_cycle, generate_overlay, select_slice_to_plot2

FIGURE_INCHES = (11.0, 4.4)
FIGURE_DPI = 100
# Size in pixels (height, width) of every picture written here.
PICTURE_SHAPE = (int(FIGURE_INCHES[1] * FIGURE_DPI), int(FIGURE_INCHES[0] * FIGURE_DPI))


def side_by_side_figure(image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, title: str,
                        label_names: Dict[int, str], output_file: str) -> None:
    """Write one PNG: the 2-D ``image``, then with the ``reference`` labels, then with the ``prediction`` labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    # One colour per label for both panels (the overlay's default would rank the labels present per slice).
    mapping = {label: i % len(color_cycle) for i, label in enumerate(sorted(label_names))}
    fig = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    panels = ((np.zeros_like(reference), "image"), (reference, "ground truth"), (prediction, "prediction"))
    for i, (seg, name) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(generate_overlay(image, seg, mapping=mapping), interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    handles = [Patch(color="#" + color_cycle[mapping[label]], label=f"{label}: {name}")
               for label, name in sorted(label_names.items()) if label != 0]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title)
    with atomic_path(output_file) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI)


def write_prediction_pictures(raw_dataset_folder: str, predictions_folder: str, output_folder: str,
                              summary_file: Optional[str] = None) -> List[str]:
    """One side-by-side PNG per predicted test case of a raw dataset (imagesTs/labelsTs); returns their paths.

    The titles carry each case's Dice per label from ``summary_file`` (default: the predictions'
    summary.json, as written by nnUNetv2_evaluate_folder) when it exists.
    """
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    dataset_json = load_json(os.path.join(raw_dataset_folder, "dataset.json"))
    ending = dataset_json["file_ending"]
    label_names = {int(v): k for k, v in dataset_json["labels"].items()}
    summary_file = summary_file or os.path.join(predictions_folder, "summary.json")
    per_case = {}
    if os.path.isfile(summary_file):
        for entry in load_json(summary_file)["metric_per_case"]:
            case = os.path.basename(entry["prediction_file"])[:-len(ending)]
            per_case[case] = {k: m["Dice"] for k, m in entry["metrics"].items()}
    cases = sorted(f[:-len(ending)] for f in os.listdir(predictions_folder) if f.endswith(ending))
    maybe_mkdir_p(output_folder)
    written = []
    reader = None
    for case in cases:
        image_file = os.path.join(raw_dataset_folder, "imagesTs", f"{case}_0000{ending}")
        reference_file = os.path.join(raw_dataset_folder, "labelsTs", case + ending)
        if reader is None:
            reader = determine_reader_writer_from_dataset_json(dataset_json, image_file, verbose=False)()
        image = reader.read_images((image_file,))[0][0]
        reference = reader.read_seg(reference_file)[0][0]
        prediction = reader.read_seg(os.path.join(predictions_folder, case + ending))[0][0]
        s = select_slice_to_plot2(image, reference)
        title = case
        if case in per_case:
            title += "   Dice " + ", ".join(f"{label_names.get(int(k), k) if k.isdigit() else k} {d:.2f}"
                                           for k, d in per_case[case].items())
        output_file = os.path.join(output_folder, f"{case}.png")
        side_by_side_figure(image[s], reference[s].astype(np.int16), prediction[s].astype(np.int16), title,
                            label_names, output_file)
        written.append(output_file)
    return written
