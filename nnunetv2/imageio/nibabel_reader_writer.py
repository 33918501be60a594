"""3-D NIfTI (.nii, .nii.gz) through nibabel, optionally reoriented to the closest RAS+ orientation.

nibabel arrays are (x, y, z); they are transposed to (z, y, x) so that arrays (and spacings) are in the same
axis order as SimpleITK's. The affine is kept in ``properties['nibabel_stuff']`` to be restored on writing.
"""
from __future__ import annotations

import logging
from typing import List, Tuple, Union

import nibabel
import numpy as np
from nibabel.orientations import io_orientation, ornt_transform

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path
from nnunetv2.imageio._helpers import files_str, seg_output_dtype, stack_channels_float32, unreadable_file_error
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter, check_write_properties

logger = logging.getLogger(__name__)


def _load(fname: str):
    try:
        return nibabel.load(fname)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError, ... for bad files
        raise unreadable_file_error(fname, e) from None


def _data_zyx(img, fname: str) -> np.ndarray:
    """The voxel data as (1, z, y, x), without a float64 round trip when the file stores unscaled values."""
    if len(img.shape) != 3:
        raise UserError(f"{fname} has shape {img.shape}: NibabelIO reads only 3-D images.",
                        "Use SimpleITKIO (.nii.gz) for 2-D or 4-D files, or split channels into CASE_XXXX files.")
    proxy = img.dataobj
    try:
        unscaled = nibabel.is_proxy(proxy) and float(proxy.slope) == 1.0 and float(proxy.inter) == 0.0
        data = np.asarray(proxy) if unscaled else img.get_fdata()
    except Exception as e:  # truncated/corrupt payloads only fail when the data is read
        raise unreadable_file_error(fname, e) from None
    return data.transpose((2, 1, 0))[None]


def _spacing_zyx(img) -> List[float]:
    return [float(z) for z in img.header.get_zooms()[::-1]]


def _check_case(fnames: List[str], arrays, spacings, affines) -> None:
    if len(fnames) == 1:
        return
    shapes = [a.shape for a in arrays]
    if any(s != shapes[0] for s in shapes[1:]):
        raise UserError(f"The channel files of one case have different shapes ({shapes}): {files_str(fnames)}.",
                        "All channels of a case must be co-registered and have the same size; resample them.")
    if not BaseReaderWriter._check_all_same_array(affines):
        logger.warning("WARNING! Not all input images have the same affine! Affines: %s. Files: %s. It is up to you "
                       "to decide whether that's a problem. You should run nnUNetv2_plot_overlay_pngs to verify that "
                       "segmentations and data overlap.", affines, files_str(fnames))
    if not BaseReaderWriter._check_all_same(spacings):
        raise UserError(f"The channel files of one case have different spacings ({spacings}): {files_str(fnames)}.",
                        "All channels of a case must share the same voxel spacing.")


class NibabelIO(BaseReaderWriter):
    """Reads 3-D NIfTI without any reorientation (array axes = stored axes, reversed)."""
    supported_file_endings = ['.nii', '.nii.gz']
    geometry_keys = ('nibabel_stuff',)

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        image_fnames = [str(f) for f in image_fnames]
        arrays, spacings, affines = [], [], []
        for f in image_fnames:
            img = _load(f)
            arrays.append(_data_zyx(img, f))
            spacings.append(_spacing_zyx(img))
            affines.append(img.affine)
        _check_case(image_fnames, arrays, spacings, affines)
        props = {'nibabel_stuff': {'original_affine': affines[0]}, 'spacing': spacings[0]}
        return stack_channels_float32(arrays, image_fnames), props

    def read_seg(self, seg_fname: str) -> Tuple[np.ndarray, dict]:
        return self.read_images((seg_fname,))

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        check_write_properties(type(self), properties, output_fname)
        data = seg.transpose((2, 1, 0)).astype(seg_output_dtype(seg), copy=False)
        img = nibabel.Nifti1Image(data, affine=properties['nibabel_stuff']['original_affine'])
        _save(img, output_fname)


def _save(img, output_fname: str) -> None:
    # the temporary name ends in the full file name, so nibabel still gzips .nii.gz output
    with atomic_path(str(output_fname)) as tmp:
        nibabel.save(img, tmp)


class NibabelIOWithReorient(BaseReaderWriter):
    """Like NibabelIO, but every image is first reoriented to the closest RAS+ orientation.

    Writing reorients back, so output files have the orientation of the input.
    """
    supported_file_endings = ['.nii', '.nii.gz']
    geometry_keys = ('nibabel_stuff', 'reoriented_affine')

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        image_fnames = [str(f) for f in image_fnames]
        arrays, spacings, original_affines, reoriented_affines = [], [], [], []
        for f in image_fnames:
            img = _load(f)
            if len(img.shape) != 3:
                _data_zyx(img, f)  # raises the one-line "only 3-D" error
            original_affines.append(img.affine)
            img = img.as_reoriented(io_orientation(img.affine))
            reoriented_affines.append(img.affine)
            arrays.append(_data_zyx(img, f))
            spacings.append(_spacing_zyx(img))
        _check_case(image_fnames, arrays, spacings, reoriented_affines)
        props = {'nibabel_stuff': {'original_affine': original_affines[0],
                                   'reoriented_affine': reoriented_affines[0]},
                 'spacing': spacings[0]}
        return stack_channels_float32(arrays, image_fnames), props

    def read_seg(self, seg_fname: str) -> Tuple[np.ndarray, dict]:
        return self.read_images((seg_fname,))

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        check_write_properties(type(self), properties, output_fname)
        stuff = properties['nibabel_stuff']
        data = seg.transpose((2, 1, 0)).astype(seg_output_dtype(seg), copy=False)
        img = nibabel.Nifti1Image(data, affine=stuff['reoriented_affine'])
        # RAS+ -> original: the transform between the two orientations (not the original->RAS one reapplied)
        back = ornt_transform(io_orientation(stuff['reoriented_affine']), io_orientation(stuff['original_affine']))
        img = img.as_reoriented(back)
        if not np.allclose(stuff['original_affine'], img.affine):
            logger.warning("WARNING: restored affine of %s does not match the original affine. Original: %s, "
                           "restored: %s", output_fname, stuff['original_affine'], img.affine)
        _save(img, output_fname)
