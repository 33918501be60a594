"""Readers/writers backed by SimpleITK (.nii.gz, .nrrd, .mha, .gipl).

SimpleITK's numpy arrays are in reverse ITK index order (z, y, x for 3-D), so nnU-Net spacings are the ITK
spacings reversed; the ITK geometry itself is kept under ``properties['sitk_stuff']`` to be restored on writing.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path_named_by_writer, raise_if_disk_full
from nnunetv2.imageio._helpers import files_str, seg_output_dtype, stack_channels_float32, unreadable_file_error
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter, check_write_properties
from nnunetv2.imageio.nifti_completeness import cut_off_nifti, incomplete_nifti, load_nifti_lazily

logger = logging.getLogger(__name__)


def _read_sitk(fname: str) -> sitk.Image:
    try:
        img = sitk.ReadImage(fname)
    except RuntimeError as e:
        raise unreadable_file_error(fname, e) from None
    if fname.endswith(('.nii', '.nii.gz')):
        if 1 in img.GetSize():
            _check_nifti_not_empty(fname)
        why = cut_off_nifti(fname)
        if why is not None:
            raise UserError(f"{fname} is incomplete: {why}; SimpleITK would read the missing voxels as 0.",
                            "Copy, download or export the file again.")
    return img


def _check_nifti_not_empty(fname: str) -> None:
    """ITK reads a NIfTI axis of size 0 as size 1 (an image made up from nothing); its header tells the truth."""
    try:
        with open(fname, 'rb') as f:
            shape = load_nifti_lazily(fname, f).shape  # the header only
    except Exception:  # noqa: BLE001 - SimpleITK read it; nibabel's opinion is only a second check
        return
    if 0 in shape:
        raise UserError(f"{fname} holds no voxels (its header says shape {tuple(shape)}).",
                        "Re-export the image; a volume needs at least one slice.")


def _array_and_spacing(img: sitk.Image, fname: str) -> Tuple[np.ndarray, List[np.float64]]:
    """numpy array with a leading channel axis and the nnU-Net spacing (array axis order, absolute values)."""
    itk_spacing = img.GetSpacing()
    if img.GetNumberOfComponentsPerPixel() > 1:
        # reading the components as channels or slices would silently scramble the image
        raise UserError(f"Image {fname} has {img.GetNumberOfComponentsPerPixel()} components per voxel (a vector or "
                        f"colour image); SimpleITKIO reads images with one value per voxel.",
                        "Save each component as its own channel file (CASE_0000, CASE_0001, ...).")
    # A view avoids one full copy when the float32 cast copies anyway (the caller keeps ``img`` alive until then).
    # A float32 image would not be copied by the cast, so it must be copied here to outlive ``img``.
    arr = sitk.GetArrayViewFromImage(img)
    if arr.dtype == np.float32:
        arr = sitk.GetArrayFromImage(img)
    if arr.ndim == 2:
        # 2-D: fake a huge out-of-plane spacing so that nothing is ever resampled across "slices"
        arr = arr[None, None]
        spacing = (999 * max(itk_spacing), *itk_spacing[::-1])
    elif arr.ndim == 3:
        arr = arr[None]
        spacing = itk_spacing[::-1]
    elif arr.ndim == 4:
        # several channels in one file: the slowest numpy axis is the channel; its ITK spacing is meaningless
        spacing = itk_spacing[::-1][1:]
    else:
        raise UserError(f"Image {fname} has {arr.ndim} dimensions (shape {arr.shape}); only 2-D, 3-D and 4-D "
                        f"(channels in one file) images are supported.",
                        "Convert it to one 2-D or 3-D file per channel.")
    return arr, list(np.abs(np.asarray(spacing, dtype=np.float64)))


class SimpleITKIO(BaseReaderWriter):
    supported_file_endings = ['.nii.gz', '.nrrd', '.mha', '.gipl']
    geometry_keys = ('sitk_stuff',)

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        return _read_case(image_fnames)

    def read_seg(self, seg_fname: str) -> Tuple[np.ndarray, dict]:
        return self.read_images((seg_fname,))

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        check_write_properties(type(self), properties, output_fname)
        itk_img = _seg_to_sitk(seg, output_fname, properties)
        _write_sitk(itk_img, output_fname)


_PLAIN_READ_SEG = SimpleITKIO.read_seg
_PLAIN_READ_IMAGES = SimpleITKIO.read_images

# integer types whose every value float32 holds exactly: reading them as float32 changes no value
_EXACT_IN_FLOAT32 = (np.uint8, np.int8, np.uint16, np.int16)


def read_seg_in_own_type(reader_writer: BaseReaderWriter, seg_fname: str) -> Tuple[np.ndarray, dict]:
    """What ``reader_writer.read_seg(seg_fname)`` returns (same shape, values and properties); for a plain SimpleITKIO
    (not a subclass, not a patched ``read_seg``/``read_images``, which may read differently) the voxels stay in the
    file's own integer type where float32 holds every value of that type exactly (8- and 16-bit integers).

    For code that only compares label values (evaluation, postprocessing): no float32 copy of the volume (4 bytes
    per voxel), and labels counted in small integer types."""
    # read_seg reads through read_images: a patched read_images (class or instance) changes what it returns too
    if type(reader_writer) is SimpleITKIO and SimpleITKIO.read_seg is _PLAIN_READ_SEG \
            and SimpleITKIO.read_images is _PLAIN_READ_IMAGES \
            and not {'read_seg', 'read_images'} & set(vars(reader_writer)):
        return _read_case((seg_fname,), exact_ints=True)
    return reader_writer.read_seg(seg_fname)


def _read_case(image_fnames, transform: Optional[Callable[[sitk.Image], sitk.Image]] = None,
               exact_ints: bool = False) -> Tuple[np.ndarray, dict]:
    """Read the channel files of one case (each optionally transformed after reading), check that they agree and
    stack them; properties come from the first file."""
    image_fnames = [str(f) for f in image_fnames]
    images, arrays, spacings = [], [], []
    for f in image_fnames:
        img = _read_sitk(f)
        if transform is not None:
            img = transform(img)
        arr, spacing = _array_and_spacing(img, f)
        images.append(img)
        arrays.append(arr)
        spacings.append(spacing)
    _check_case_consistency(image_fnames, images, arrays, spacings)
    first = images[0]
    props = {
        'sitk_stuff': {
            'spacing': first.GetSpacing(),
            'origin': first.GetOrigin(),
            'direction': first.GetDirection(),
        },
        'spacing': spacings[0],
    }
    if exact_ints and len(arrays) == 1 and arrays[0].dtype.type in _EXACT_IN_FLOAT32 and arrays[0].size > 0:
        return np.array(arrays[0]), props  # a copy: the array may be a view into the image
    return stack_channels_float32(arrays, image_fnames), props


def _check_case_consistency(fnames: List[str], images, arrays, spacings) -> None:
    """All channel files of a case must share shape and spacing; origin/direction differences only warn."""
    if len(fnames) == 1:
        return
    shapes = [a.shape for a in arrays]
    if any(s != shapes[0] for s in shapes[1:]):
        raise UserError(f"The channel files of one case have different shapes ({shapes}): {files_str(fnames)}.",
                        "All channels of a case must be co-registered and have the same size; resample them.")
    itk_spacings = [im.GetSpacing() for im in images]
    if not BaseReaderWriter._check_all_same(itk_spacings) or not BaseReaderWriter._check_all_same(spacings):
        raise UserError(f"The channel files of one case have different spacings ({itk_spacings}): "
                        f"{files_str(fnames)}.", "All channels of a case must share the same voxel spacing.")
    origins = [im.GetOrigin() for im in images]
    if not BaseReaderWriter._check_all_same(origins):
        logger.warning("WARNING! Not all input images have the same origin! Origins: %s. Files: %s. It is up to "
                       "you to decide whether that's a problem. You should run nnUNetv2_plot_overlay_pngs to verify "
                       "that segmentations and data overlap.", origins, files_str(fnames))
    directions = [im.GetDirection() for im in images]
    if not BaseReaderWriter._check_all_same(directions):
        logger.warning("WARNING! Not all input images have the same direction! Directions: %s. Files: %s. It is "
                       "up to you to decide whether that's a problem. You should run nnUNetv2_plot_overlay_pngs to "
                       "verify that segmentations and data overlap.", directions, files_str(fnames))


def _seg_to_sitk(seg: np.ndarray, output_fname: str, properties: dict, dtype=None) -> sitk.Image:
    if seg.ndim != 3:
        raise ValueError(f"write_seg expects a 3-D segmentation (for 2-D data (1, X, Y)), got shape {seg.shape} "
                         f"for {output_fname}")
    stuff = properties['sitk_stuff']
    out_dim = len(stuff['spacing'])
    if out_dim not in (2, 3):
        raise UserError(f"Cannot write {output_fname}: the case was read from a {out_dim}-D image and SimpleITKIO "
                        f"writes only 2-D or 3-D segmentations.", "Use one 3-D file per channel for the input.")
    if out_dim == 2:
        seg = seg[0]
    dtype = seg_output_dtype(seg) if dtype is None else dtype
    itk_img = sitk.GetImageFromArray(seg.astype(dtype, copy=False))
    itk_img.SetSpacing(stuff['spacing'])
    itk_img.SetOrigin(stuff['origin'])
    itk_img.SetDirection(stuff['direction'])
    return itk_img


def _write_sitk(itk_img: sitk.Image, output_fname: str) -> None:
    # the temporary file has the full file name, so SimpleITK still picks the format from the ending; it is moved
    # under the name SimpleITK gave it (NIfTI: "x.nii.gz.nii.gz" is written as "x.nii.gz", as by the reference)
    with atomic_path_named_by_writer(str(output_fname)) as tmp:
        write_sitk_image(itk_img, tmp, str(output_fname), written_in=os.path.dirname(tmp))


def write_sitk_image(itk_img: sitk.Image, path: str, named_as: str, use_compression: bool = True,
                     written_in: Optional[str] = None) -> None:
    """``sitk.WriteImage`` that reports the failed writes SimpleITK hides or words as a bug.

    Its NIfTI writer ignores a full disk or an exceeded quota and leaves an empty or cut-off file behind (which may
    even read back, with wrong voxels): every NIfTI file written (``path``, or each file in the private folder
    ``written_in``) is checked against the length its header gives. Its other writers raise a bare RuntimeError.
    A full disk becomes ``OSError(ENOSPC)`` about the written file (the caller's atomic writer names the final one),
    anything else a ``UserError`` naming ``named_as``, the file the user asked for.
    """
    try:
        sitk.WriteImage(itk_img, path, use_compression)
    except RuntimeError as e:
        raise_if_disk_full(path)
        detail = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UserError(f"SimpleITK could not write {named_as}: {detail[-1] if detail else type(e).__name__}",
                        "Check that its disk has space (and quota) left and that the file format can hold this "
                        "image.") from e
    written = [os.path.join(written_in, n) for n in os.listdir(written_in)] if written_in else [path]
    for file in written:
        why = incomplete_nifti(file) if file.endswith(('.nii', '.nii.gz')) and os.path.isfile(file) else None
        if why is not None:
            raise_if_disk_full(file)
            raise UserError(f"SimpleITK wrote {named_as} only in part ({why}) and reported no error: its disk is "
                            f"probably full or over its quota.", "Free space (or point the output to another disk) "
                            "and run again.")


class SimpleITKIOWithReorient(SimpleITKIO):
    """SimpleITKIO that reorients every image to ``orientation`` (default RAS) on reading and back on writing.

    Not part of the automatic choice; select it with ``overwrite_image_reader_writer`` in dataset.json.
    """
    geometry_keys = ('sitk_stuff', 'original_orientation')

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]], orientation: str = "RAS"
                    ) -> Tuple[np.ndarray, dict]:
        original_orientations = []

        def reorient(img: sitk.Image) -> sitk.Image:
            # DICOM orientation codes exist only for 3-D images; SimpleITK's own complaint is a multi-line C++ trace
            if img.GetDimension() != 3:
                raise UserError(f"{image_fnames[len(original_orientations)]} is a {img.GetDimension()}-D image: "
                                f"SimpleITKIOWithReorient reorients only 3-D images.",
                                "Use SimpleITKIO for 2-D images and for 4-D files, or save each channel as its own "
                                "3-D file.")
            original_orientations.append(
                sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(img.GetDirection()))
            return sitk.DICOMOrient(img, orientation)

        stacked, props = _read_case(image_fnames, reorient)
        props['sitk_stuff']['original_orientation'] = original_orientations[-1]  # like the reference: the last file
        return stacked, props

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        # deliberate: uint8/uint16 rule (the reference always wrote uint8, corrupting labels >= 255)
        check_write_properties(type(self), properties, output_fname)
        itk_img = _seg_to_sitk(seg, output_fname, properties)
        itk_img = sitk.DICOMOrient(itk_img, properties['sitk_stuff']['original_orientation'])
        _write_sitk(itk_img, output_fname)
