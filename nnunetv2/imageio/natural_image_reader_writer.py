"""2-D natural images (.png, .bmp, .tif) read with scikit-image.

Grey images become one channel, RGB(A) images three (four) channels; every image gets the 2-D layout
``(c, 1, X, Y)`` and the fixed spacing ``(999, 1, 1)`` (no physical spacing is known for such files).
"""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path
from nnunetv2.imageio._helpers import seg_output_dtype, stack_channels_float32, unreadable_file_error
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter


def _imread(fname: str) -> np.ndarray:
    from skimage import io  # imported lazily: scikit-image is slow to import and only needed for these files
    try:
        return io.imread(fname)
    except Exception as e:  # the plugins raise many different types for unreadable files
        raise unreadable_file_error(fname, e) from None


def _refuse_jpeg_label(fname: str) -> None:
    """A label map must be stored losslessly. A JPEG file named .png/.bmp is read without complaint (the readers go
    by the file's content), but its compression has already changed label values along every edge."""
    try:
        with open(fname, 'rb') as f:
            start = f.read(3)
    except OSError:
        return  # missing or unreadable: the reader reports it
    if start == b'\xff\xd8\xff':  # JPEG's start-of-image marker, whatever the file's name
        raise UserError(f"{fname} is a JPEG file (its content, whatever its name says): JPEG's lossy compression "
                        f"changes label values along the edges of structures, so it cannot hold a label map.",
                        "Save the labels losslessly (a real .png) from the original label data; converting the JPEG "
                        "does not undo the damage.")


def _to_channels_first(img: np.ndarray, fname: str) -> np.ndarray:
    if img.ndim == 2:
        return img[None, None]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        # RGB(A): colour channels become nnU-Net channels
        return img.transpose((2, 0, 1))[:, None]
    raise UserError(f"{fname} has shape {img.shape}, which NaturalImage2DIO cannot use: it reads only 2-D grey "
                    f"images (H, W) and RGB/RGBA images (H, W, 3|4).",
                    "For 3-D volumes use .tiff/.nii.gz (or set overwrite_image_reader_writer in dataset.json).")


class NaturalImage2DIO(BaseReaderWriter):
    # JPEG is deliberately unsupported: its lossy compression would corrupt segmentations
    supported_file_endings = ['.png', '.bmp', '.tif']

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        arrays = [_to_channels_first(_imread(str(f)), str(f)) for f in image_fnames]
        if len(arrays) > 1:
            # the colour layout counts too: a grey file beside an RGB one would change how many channels the case
            # has depending on how each file happened to be saved
            shapes = [a.shape for a in arrays]
            if any(s != shapes[0] for s in shapes[1:]):
                raise UserError(f"The channel files of one case differ in size or colour layout (channels, 1, "
                                f"height, width: {shapes}): {', '.join(map(str, image_fnames))}.",
                                "Save all channel files of a case with the same height and width, and all grey or "
                                "all in the same colour mode.")
        return stack_channels_float32(arrays, [str(f) for f in image_fnames]), {'spacing': (999, 1, 1)}

    def read_seg(self, seg_fname: str) -> Tuple[np.ndarray, dict]:
        _refuse_jpeg_label(str(seg_fname))
        seg, props = self.read_images((seg_fname,))
        # A grey label map saved as RGB(A) (every channel holds the same values) is still one label map: keep one
        # channel. A real colour label (channels differ) stays several channels and is refused by the label checks.
        if seg.shape[0] > 1 and all(np.array_equal(seg[0], seg[c]) for c in range(1, seg.shape[0])):
            seg = seg[:1].copy()
        return seg, props

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        from skimage import io
        if seg.ndim != 3 or seg.shape[0] != 1:
            raise ValueError(f"NaturalImage2DIO.write_seg expects shape (1, X, Y), got {seg.shape} for {output_fname}")
        dtype = seg_output_dtype(seg)
        if dtype != np.uint8 and str(output_fname).lower().endswith('.bmp'):
            # BMP has no 16-bit grey mode; the imaging library's complaint would not say which file or why
            raise UserError(f"Cannot write {output_fname}: it holds label values up to {int(np.max(seg))}, but a "
                            f".bmp file stores only 8-bit values (labels up to 254 are written as uint8).",
                            "Use .png or .tif, which store 16-bit labels.")
        with atomic_path(str(output_fname)) as tmp:
            io.imsave(tmp, seg[0].astype(dtype, copy=False), check_contrast=False)
