"""PNG overlays of a dataset's cases: the slice with the most foreground, image in grey, labels in colour.

Used by ``nnUNetv2_plot_overlay_pngs`` to eyeball a dataset (raw files or preprocessed data). Spacing is
ignored; slices are taken along the first array axis. One RGBA PNG per training case, ``<case id>.png``.
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.file_io import atomic_path, load_json, maybe_mkdir_p
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

color_cycle = (
    "000000", "4363d8", "f58231", "3cb44b", "e6194B", "911eb4", "ffe119", "bfef45",
    "42d4f4", "f032e6", "000075", "9A6324", "808000", "800000", "469990",
)


def hex_to_rgb(hex: str) -> Tuple[int, int, int]:  # noqa: A002 (name kept from the public signature)
    """'4363d8' -> (67, 99, 216)."""
    assert len(hex) == 6, f"expected a 6-digit hex colour, got {hex!r}"
    return tuple(int(hex[i:i + 2], 16) for i in (0, 2, 4))


def _scale_to_255(image: np.ndarray) -> np.ndarray:
    # A constant (all-zero after the shift) image stays 0 instead of becoming NaN.
    m = image.max()
    return image / m * 255 if m != 0 else image * 0


def generate_overlay(input_image: np.ndarray, segmentation: np.ndarray, mapping: Optional[Dict[int, int]] = None,
                     color_cycle: Sequence[str] = color_cycle, overlay_intensity: float = 0.6) -> np.ndarray:
    """RGB uint8 image (x, y, 3): the grey image scaled to 0..255 plus ``overlay_intensity`` x label colour.

    ``mapping`` maps label value -> index into ``color_cycle``. By default the labels present in
    ``segmentation`` are ranked (0, 1, 2, ...), so colours depend on which labels occur in this slice and the
    lowest value present (normally background) gets the first colour, black, i.e. no overlay.
    """
    image = np.copy(input_image)
    if image.ndim == 2:
        image = np.tile(image[:, :, None], (1, 1, 3))
    elif image.ndim == 3:
        if image.shape[2] != 1:
            raise RuntimeError(f"generate_overlay expects a 2-D grey image (x, y) or (x, y, 1), got shape "
                               f"{input_image.shape}")
        image = np.tile(image, (1, 1, 3))
    else:
        raise RuntimeError(f"generate_overlay expects a 2-D grey image, got {image.ndim} dimensions")

    image = image - image.min()
    image = _scale_to_255(image)

    if mapping is None:
        mapping = {int(v): i for i, v in enumerate(np.sort(np.unique(segmentation)))}
    for label, colour_index in mapping.items():
        image[segmentation == label] += overlay_intensity * np.array(hex_to_rgb(color_cycle[colour_index]))

    return _scale_to_255(image).astype(np.uint8)


def select_slice_to_plot(image: np.ndarray, segmentation: np.ndarray) -> int:
    """Index (first axis) of the slice with the most non-zero segmentation voxels."""
    return int(np.argmax((segmentation != 0).sum(axis=tuple(range(1, segmentation.ndim)))))


def select_slice_to_plot2(image: np.ndarray, segmentation: np.ndarray) -> int:
    """Slice (first axis) with the highest mean per-class foreground fraction — with the reference's quirk.

    Column k holds the voxel count of class k per slice and is divided by the sum of the whole matrix *so far*
    (earlier columns already normalised, later ones still zero); only the first column is a true fraction.
    Kept as is because it decides which slice the reference plots.
    """
    classes = np.unique(segmentation)
    classes = classes[classes > 0]
    if len(classes) == 0:
        return 0  # the reference's mean over no classes is NaN everywhere, whose argmax is 0
    spatial_axes = tuple(range(1, segmentation.ndim))
    fractions = np.zeros((segmentation.shape[0], len(classes)))
    for k, c in enumerate(classes):
        fractions[:, k] = (segmentation == c).sum(axis=spatial_axes)
        fractions[:, k] /= fractions.sum()
    return int(np.argmax(fractions.mean(axis=1)))


def _save_png(overlay: np.ndarray, output_file: str) -> None:
    from matplotlib.image import imsave  # = matplotlib.pyplot.imsave, without loading a GUI backend
    with atomic_path(output_file) as tmp:
        imsave(tmp, overlay, format="png")


def plot_overlay(image_file: str, segmentation_file: str, image_reader_writer, output_file: str,
                 overlay_intensity: float = 0.6) -> None:
    image, _ = image_reader_writer.read_images((image_file,))
    image = image[0]
    seg, _ = image_reader_writer.read_seg(segmentation_file)
    seg = seg[0]
    if image.shape != seg.shape:
        raise UserError(f"Image {image_file} (shape {image.shape}) and segmentation {segmentation_file} "
                        f"(shape {seg.shape}) differ in shape.", "Fix the dataset (nnUNetv2_plan_and_preprocess "
                                                                 "--verify_dataset_integrity finds such cases).")
    if image.ndim != 3:
        raise UserError(f"Image {image_file} has {image.ndim} spatial dimensions; overlays need 2-D or 3-D images.")
    s = select_slice_to_plot2(image, seg)
    _save_png(generate_overlay(image[s], seg[s], overlay_intensity=overlay_intensity), output_file)


def plot_overlay_preprocessed(dataset, k: str, output_folder: str, overlay_intensity: float = 0.6,
                              channel_idx: int = 0) -> None:
    data, seg, _, _ = dataset.load_case(k)
    if not 0 <= channel_idx < data.shape[0]:
        raise UserError(f"channel_idx {channel_idx} is out of range: preprocessed case {k} has {data.shape[0]} "
                        f"channel(s).", f"Use -channel_idx between 0 and {data.shape[0] - 1}.")
    image = np.asarray(data[channel_idx])
    seg = np.array(seg[0])
    s = select_slice_to_plot2(image, seg)
    seg_slice = seg[s]
    seg_slice[seg_slice < 0] = 0  # -1 marks background outside the nonzero mask
    _save_png(generate_overlay(image[s], seg_slice, overlay_intensity=overlay_intensity),
              os.path.join(output_folder, k + ".png"))


def _run(fn, arguments: List[tuple], num_processes: int) -> None:
    """Run ``fn(*a)`` for every ``a``: in this process for one worker, else in a spawn pool (errors propagate)."""
    if num_processes <= 1 or len(arguments) <= 1:
        for a in arguments:
            fn(*a)
        return
    from nnunetv2.utilities.watched_pool import WatchedPool
    from nnunetv2.utilities.worker_processes import worker_count
    with WatchedPool(worker_count(num_processes, len(arguments)), "worker process", "-np") as pool:
        pool.starmap(fn, arguments)


def multiprocessing_plot_overlay(list_of_image_files, list_of_seg_files, image_reader_writer,
                                 list_of_output_files, overlay_intensity, num_processes=8) -> None:
    _run(plot_overlay, [(i, s, image_reader_writer, o, overlay_intensity)
                        for i, s, o in zip(list_of_image_files, list_of_seg_files, list_of_output_files)],
         num_processes)


def multiprocessing_plot_overlay_preprocessed(dataset, output_folder, overlay_intensity, num_processes=8,
                                              channel_idx=0) -> None:
    _run(plot_overlay_preprocessed, [(dataset, k, output_folder, overlay_intensity, channel_idx)
                                     for k in dataset.identifiers], num_processes)


def generate_overlays_from_raw(dataset_name_or_id: Union[int, str], output_folder: str, num_processes: int = 8,
                               channel_idx: int = 0, overlay_intensity: float = 0.6) -> None:
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    folder = os.path.join(nnUNet_raw, dataset_name)
    if not os.path.isfile(os.path.join(folder, "dataset.json")):
        raise UserError(f"{os.path.join(folder, 'dataset.json')} does not exist.",
                        "Is this a raw nnU-Net dataset folder?")
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    cases = get_filenames_of_train_images_and_targets(folder, dataset_json)
    if not cases:
        raise UserError(f"Dataset {dataset_name} has no training cases.", "Check imagesTr and labelsTr.")
    identifiers = list(cases.keys())
    n_channels = min(len(cases[k]["images"]) for k in identifiers)
    if not 0 <= channel_idx < n_channels:
        raise UserError(f"channel_idx {channel_idx} is out of range: the image files of {dataset_name} hold "
                        f"{n_channels} channel file(s) per case.", f"Use -channel_idx between 0 and {n_channels - 1}.")
    image_files = [cases[k]["images"][channel_idx] for k in identifiers]
    seg_files = [cases[k]["label"] for k in identifiers]
    missing = [f for f in image_files + seg_files if not os.path.isfile(f)]
    if missing:
        raise UserError(f"{len(missing)} image/label file(s) of {dataset_name} are missing, e.g. {missing[0]}.",
                        "Fix the dataset (nnUNetv2_plan_and_preprocess --verify_dataset_integrity).")
    maybe_mkdir_p(output_folder)
    output_files = [os.path.join(output_folder, k + ".png") for k in identifiers]
    reader = determine_reader_writer_from_dataset_json(dataset_json, image_files[0], verbose=False)()
    multiprocessing_plot_overlay(image_files, seg_files, reader, output_files, overlay_intensity, num_processes)


def generate_overlays_from_preprocessed(dataset_name_or_id: Union[int, str], output_folder: str,
                                        num_processes: int = 8, channel_idx: int = 0,
                                        configuration: Optional[str] = None, plans_identifier: str = "nnUNetPlans",
                                        overlay_intensity: float = 0.6) -> None:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class  # upper floor: lazy import
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    folder = os.path.join(nnUNet_preprocessed, dataset_name)
    if not os.path.isdir(folder):
        raise UserError(f"Preprocessed folder {folder} does not exist: run preprocessing for that task first.",
                        "Run nnUNetv2_plan_and_preprocess, or use --use_raw.")
    plans_file = os.path.join(folder, plans_identifier + ".json")
    if not os.path.isfile(plans_file):
        raise UserError(f"Plans file {plans_file} does not exist.", "Check -p (the plans identifier).")
    plans_manager = PlansManager(load_json(plans_file))
    if configuration is None:
        configuration = "3d_fullres" if "3d_fullres" in plans_manager.available_configurations else "2d"
    data_identifier = plans_manager.get_configuration(configuration).data_identifier
    data_folder = os.path.join(folder, data_identifier)
    if not os.path.isdir(data_folder):
        raise UserError(f"No preprocessed data for configuration {configuration} of plans {plans_identifier}: "
                        f"{data_folder} does not exist.",
                        f"Run nnUNetv2_preprocess -d {dataset_name} -plans_name {plans_identifier} -c {configuration}.")
    dataset = infer_dataset_class(data_folder)(data_folder)
    maybe_mkdir_p(output_folder)
    multiprocessing_plot_overlay_preprocessed(dataset, output_folder, overlay_intensity, num_processes, channel_idx)


def entry_point_generate_overlay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Plots png overlays of the slice with the most foreground, one per "
                                                 "training case. Note that this disregards spacing information!")
    parser.add_argument("-d", type=str, required=True, help="Dataset name or id")
    parser.add_argument("-o", type=str, required=True, help="output folder")
    parser.add_argument("-np", type=int, default=default_num_processes, required=False,
                        help=f"number of processes used. Default: {default_num_processes}")
    parser.add_argument("-channel_idx", type=int, default=0, required=False,
                        help="channel index used (0 = _0000). Default: 0")
    parser.add_argument("--use_raw", action="store_true", required=False,
                        help="if set, raw data is used; otherwise the preprocessed data")
    parser.add_argument("-p", type=str, required=False, default="nnUNetPlans",
                        help="plans identifier. Only used if --use_raw is not set! Default: nnUNetPlans")
    parser.add_argument("-c", type=str, required=False, default=None,
                        help="configuration name. Only used if --use_raw is not set! Default: "
                             "3d_fullres if available, else 2d")
    parser.add_argument("-overlay_intensity", type=float, required=False, default=0.6,
                        help="overlay intensity. Higher = brighter/less transparent. Default: 0.6")
    return parser


@exit_on_user_error
def entry_point_generate_overlay() -> None:
    args = entry_point_generate_overlay_parser().parse_args()

    if args.use_raw:
        generate_overlays_from_raw(args.d, args.o, args.np, args.channel_idx, overlay_intensity=args.overlay_intensity)
    else:
        generate_overlays_from_preprocessed(args.d, args.o, args.np, args.channel_idx, args.c, args.p,
                                            overlay_intensity=args.overlay_intensity)


if __name__ == "__main__":
    entry_point_generate_overlay()
