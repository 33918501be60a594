"""Convert a Medical Segmentation Decathlon task (``TaskNN_Name``) into the nnU-Net v2 raw dataset
``DatasetNNN_Name``: 4-D multi-modal images are split into one file per channel (``_0000``, ``_0001``, ...),
labels are copied and dataset.json is translated. Console command: ``nnUNetv2_convert_MSD_dataset``.
"""
from __future__ import annotations

import argparse
import os
import shutil
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2.configuration import default_num_processes
from nnunetv2.dataset_conversion._conversion_common import (conflicting_datasets, load_source_dataset_json,
                                                            nifti_files, require_folder, require_subfolders,
                                                            staged_dataset_folder, translate_dataset_json)
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.file_io import atomic_path, save_json
from nnunetv2.imageio.simpleitk_reader_writer import write_sitk_image
from nnunetv2.paths import nnUNet_raw

SUFFIX = ".nii.gz"


def _nifti_dimension(filename: str) -> Tuple[int, int]:
    """(number of axes, number of channels) of a NIfTI file, from its header only (cheap for large volumes)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(filename)
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise UserError(f"Cannot read the image header of {filename} ({first_line}).",
                        "Replace the file with a valid NIfTI image or remove it.") from None
    if reader.GetNumberOfComponents() != 1:
        raise UserError(f"{filename} has {reader.GetNumberOfComponents()} values per voxel (a vector image); MSD "
                        f"images must hold one value per voxel, with channels along a 4th axis.",
                        "Remove or fix that file.")
    return reader.GetDimension(), (reader.GetSize()[3] if reader.GetDimension() == 4 else 1)


def _wrong_dimension(filename: str, dim: int) -> UserError:
    return UserError(f"{filename} is a {dim}-D image; only 3-D images (one channel) and 4-D images (channels along "
                     f"the 4th axis) can be converted.", "Remove or fix that file.")


def split_4d_nifti(filename: str, output_folder: str) -> None:
    """Write ``filename`` (``<case>.nii.gz``) as ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ... in ``output_folder``.

    A 3-D image is copied unchanged as ``_0000``. A 4-D image gives one file per volume along its 4th axis, each
    with the spacing and origin of the first three axes and the upper-left 3x3 block of the direction matrix.
    """
    base = os.path.basename(filename)[:-len(SUFFIX)] if filename.endswith(SUFFIX) else os.path.basename(filename)
    image = sitk.ReadImage(filename)
    dim = image.GetDimension()
    if dim == 3:
        with atomic_path(os.path.join(output_folder, f"{base}_0000{SUFFIX}")) as tmp:
            shutil.copy(filename, tmp)
        return
    if dim != 4:
        raise _wrong_dimension(filename, dim)
    spacing = image.GetSpacing()[:3]
    origin = image.GetOrigin()[:3]
    direction = tuple(np.array(image.GetDirection()).reshape(4, 4)[:3, :3].ravel())
    volumes = sitk.GetArrayFromImage(image)  # (t, z, y, x): the 4th image axis is the outermost array axis
    for t, volume in enumerate(volumes):
        out = sitk.GetImageFromArray(volume)
        out.SetSpacing(spacing)
        out.SetOrigin(origin)
        out.SetDirection(direction)
        final = os.path.join(output_folder, f"{base}_{t:04d}{SUFFIX}")
        with atomic_path(final) as tmp:
            write_sitk_image(out, tmp, final, use_compression=False)


def _split_job(args: Tuple[str, str]) -> None:
    split_4d_nifti(*args)


def parse_task_folder_name(source_folder: str) -> Tuple[int, str]:
    """``.../Task05_Prostate`` -> ``(5, 'Prostate')``; only the first ``_`` separates id and name."""
    folder_name = os.path.basename(source_folder)
    task, _, name = folder_name.partition("_")
    if not (task.startswith("Task") and task[4:].isdigit() and name):
        raise UserError(f"Cannot read a task id and name from the folder name '{folder_name}' ({source_folder}).",
                        "MSD task folders are named TaskNN_Name (e.g. Task05_Prostate); rename the folder.")
    return int(task[4:]), name


def _check_images(folder: str, files: List[str], num_channels: int, dataset_json_file: str) -> None:
    for f in files:
        path = os.path.join(folder, f)
        dim, channels = _nifti_dimension(path)
        if dim not in (3, 4):
            raise _wrong_dimension(path, dim)
        if channels != num_channels:
            raise UserError(f"{path} has {channels} channel(s) but {dataset_json_file} declares {num_channels} "
                            f"modalities.", "Fix the 'modality' entry of dataset.json or the image.")


def _check_labels(folder: str, files: List[str]) -> None:
    for f in files:
        path = os.path.join(folder, f)
        dim, _ = _nifti_dimension(path)
        if dim != 3:
            raise UserError(f"{path} is a {dim}-D label map; labels must be 3-D.", "Remove or fix that file.")


def convert_msd_dataset(source_folder: str, overwrite_target_id: Optional[int] = None,
                        num_processes: Optional[int] = default_num_processes) -> None:
    """Convert the MSD task folder ``source_folder`` into ``nnUNet_raw/Dataset%03d_<Name>``.

    ``num_processes=None`` uses one process per CPU, as the reference's pool does (MONAI's runner passes None).

    Everything is checked before anything is written (a bad input raises ``UserError`` and changes nothing);
    the dataset is built in a hidden sibling folder and renamed into place at the end.
    """
    source_folder = os.path.abspath(os.fspath(source_folder))
    require_folder(source_folder, "MSD task folder", "Give the path of the extracted TaskNN_Name folder.")
    require_subfolders(source_folder, ("imagesTr", "labelsTr"), "MSD")
    task_id, task_name = parse_task_folder_name(source_folder)
    dataset_json_file = os.path.join(source_folder, "dataset.json")
    old_json = load_source_dataset_json(source_folder, "MSD")
    if num_processes is None:
        num_processes = os.cpu_count() or 1
    if num_processes < 1:
        raise UserError(f"The number of processes must be at least 1 (got {num_processes}).", "Use e.g. -np 4.")

    target_id = task_id if overwrite_target_id is None else int(overwrite_target_id)
    taken = conflicting_datasets(target_id)
    if taken:
        raise UserError(f"Target dataset id {target_id} is already taken by: {', '.join(taken)}.",
                        "Pick a free id with -overwrite_id (overwrite_target_id) or remove/rename those datasets.")
    target_name = "Dataset%03d_%s" % (target_id, task_name)
    target_folder = os.path.join(nnUNet_raw, target_name)

    images = {sub: nifti_files(os.path.join(source_folder, sub)) for sub in ("imagesTr", "imagesTs")}
    labels = nifti_files(os.path.join(source_folder, "labelsTr"))
    num_channels = len(old_json["modality"])
    for sub, files in images.items():
        _check_images(os.path.join(source_folder, sub), files, num_channels, dataset_json_file)
    _check_labels(os.path.join(source_folder, "labelsTr"), labels)
    new_json = translate_dataset_json(old_json, dataset_json_file, drop=("training", "test"), channel_names_last=True)

    with staged_dataset_folder(target_folder) as staging:
        for sub in ("imagesTr", "imagesTs", "labelsTr"):
            os.makedirs(os.path.join(staging, sub))
        jobs = [(os.path.join(source_folder, sub, f), os.path.join(staging, sub))
                for sub, files in images.items() for f in files]
        _run_jobs(jobs, num_processes)
        for f in labels:
            shutil.copy(os.path.join(source_folder, "labelsTr", f), os.path.join(staging, "labelsTr", f))
        save_json(new_json, os.path.join(staging, "dataset.json"), sort_keys=False)


def _run_jobs(jobs: List[Tuple[str, str]], num_processes: int) -> None:
    progress = tqdm(total=len(jobs), desc="Splitting images", unit="image")
    try:
        if num_processes == 1 or len(jobs) <= 1:  # no worker start-up cost when there is nothing to share
            for job in jobs:
                _split_job(job)
                progress.update()
            return
        # spawn, not fork: SimpleITK/ITK thread pools do not survive a fork reliably
        from nnunetv2.utilities.watched_pool import WatchedPool
        from nnunetv2.utilities.worker_processes import worker_count
        with WatchedPool(worker_count(num_processes, len(jobs)), "worker process", "-np") as pool:
            pool.starmap(_split_job, [(job,) for job in jobs], names=[os.path.basename(j[0]) for j in jobs],
                         chunksize=1, on_done=progress.update)
    finally:
        progress.close()


def entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Convert a Medical Segmentation Decathlon task folder "
                                                 "(TaskNN_Name) into the nnU-Net v2 raw dataset DatasetNNN_Name.")
    parser.add_argument("-i", type=str, required=True,
                        help="Extracted MSD task folder, e.g. /data/Task05_Prostate (not an nnU-Net v1 task: use "
                             "nnUNetv2_convert_old_nnUNet_dataset for those).")
    parser.add_argument("-overwrite_id", type=int, required=False, default=None,
                        help="Dataset id of the result. Default: the id in the task folder name. Use it when that "
                             "id is already taken.")
    parser.add_argument("-np", type=int, required=False, default=default_num_processes,
                        help=f"Number of worker processes. Default: {default_num_processes}")
    return parser


@exit_on_user_error
def entry_point() -> None:
    args = entry_point_parser().parse_args()
    convert_msd_dataset(args.i, args.overwrite_id, args.np)


if __name__ == "__main__":
    entry_point()
