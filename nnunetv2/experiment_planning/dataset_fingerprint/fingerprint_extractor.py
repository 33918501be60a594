"""Dataset fingerprint: cropped shapes, spacings and foreground intensity statistics.

Results equal the reference's. Faster because: cropping fills holes only inside the bounding box with a single
labelling pass; the discarded per-case statistics are not computed in ``run``; the fingerprint percentiles use a
windowed exact selection instead of partitioning ~1e8 values (see ``intensity_statistics``).
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Type, Union

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.dataset_fingerprint import sample_summaries as summaries
from nnunetv2.utilities.case_pool import CaseRunner, run_cases
from nnunetv2.utilities.worker_processes import requested_processes
from nnunetv2.experiment_planning.dataset_fingerprint.intensity_statistics import (
    aggregate_channel, per_case_statistics, sample_foreground_intensities)
from nnunetv2.file_io import load_json, maybe_mkdir_p, save_json
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
from nnunetv2.utilities.input_checks import (check_channel_count, check_single_channel_label, warn_non_integer_labels,
                                             is_nifti, nonfinite_counts, nonfinite_voxels_in_nifti)

logger = logging.getLogger(__name__)


def _fingerprint_dict(results: list, intensity_properties: dict, relative_sizes: List[float]) -> dict:
    """dataset_fingerprint.json's content from per-case results that start with (shape after cropping, spacing)."""
    return {
        'spacings': [[_python_scalar(s) for s in r[1]] for r in results],
        'shapes_after_crop': [[int(s) for s in r[0]] for r in results],
        'foreground_intensity_properties_per_channel': intensity_properties,
        'median_relative_size_after_cropping': float(np.median(relative_sizes)),
    }


def _python_scalar(x):
    return x.item() if isinstance(x, np.generic) else x


def _warn_hidden_nonfinite(image_files: List[str], rw: BaseReaderWriter) -> None:
    """SimpleITK reads NaN/inf of NIfTI files as 0 without a word (the reference trains on those zeros): say so."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    if not isinstance(rw, SimpleITKIO):
        return
    for f in image_files:
        n = nonfinite_voxels_in_nifti(f) if is_nifti(f) else 0
        if n:
            logger.warning("WARNING: %s holds %d NaN/inf voxel(s); SimpleITK reads them as 0, so nnU-Net sees 0 there "
                           "(in training and prediction). Replace them in the file if 0 is not what you mean.", f, n)


def _read_and_crop(image_files: List[str], segmentation_file: str, reader_writer_class: Type[BaseReaderWriter],
                   expected_num_channels: Optional[int] = None):
    """Read one case, check it, crop it to the nonzero region: (images, seg, shape_before_crop, spacing)."""
    rw = reader_writer_class()
    try:
        images, properties = rw.read_images(image_files)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"Could not read image file(s) {', '.join(map(str, image_files))} with "
                        f"{reader_writer_class.__name__}: {type(e).__name__}: {e}",
                        "Check that the files exist and are valid images of the dataset's file_ending.") from e
    try:
        segmentation, _ = rw.read_seg(segmentation_file)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"Could not read segmentation {segmentation_file} with {reader_writer_class.__name__}: "
                        f"{type(e).__name__}: {e}", "Check that labelsTr holds a valid file for every case.") from e
    if expected_num_channels is not None:
        check_channel_count(images.shape[0], image_files, expected_num_channels)
    check_single_channel_label(segmentation, segmentation_file)
    if images.shape[1:] != segmentation.shape[1:]:
        raise UserError(f"Image {image_files[0]} has spatial shape {tuple(images.shape[1:])} but its segmentation "
                        f"{segmentation_file} has {tuple(segmentation.shape[1:])}.",
                        "Images and labels of a case must have the same geometry.")
    nan, inf = nonfinite_counts(images)
    if nan or inf:
        raise UserError(f"Image file(s) {', '.join(map(str, image_files))} contain {nan} NaN and {inf} inf values.",
                        "Replace them (e.g. with 0) before running nnU-Net.")
    _warn_hidden_nonfinite(image_files, rw)
    # NaN included; cheap next to reading the file. A warning, not an error: a custom preprocessor may keep such
    # maps (the default one refuses them when it reads the case)
    warn_non_integer_labels(segmentation, segmentation_file, logger)
    shape_before_crop = images.shape[1:]
    images, segmentation, _ = crop_to_nonzero(images, segmentation)
    if images.shape[1:] == shape_before_crop and images.size and not np.any(images):
        # (only where cropping removed nothing: anything cropped away was zero, so something else was not)
        logger.warning("WARNING: every voxel of %s is 0: an empty image (a failed conversion or export?). Training "
                       "learns its labels from nothing; replace or remove the case.", ', '.join(map(str, image_files)))
    return images, segmentation, shape_before_crop, properties['spacing']


def _analyze_case_for_run(image_files: List[str], segmentation_file: str,
                          reader_writer_class: Type[BaseReaderWriter], num_samples: int,
                          expected_num_channels: Optional[int] = None):
    """``analyze_case`` without the per-case statistics the fingerprint discards (4-tuple)."""
    images, seg, shape_before, spacing = _read_and_crop(image_files, segmentation_file, reader_writer_class,
                                                        expected_num_channels)
    shape_after = images.shape[1:]
    samples = sample_foreground_intensities(seg, images, seed=1234, num_samples=num_samples)
    return shape_after, spacing, samples, np.prod(shape_after) / np.prod(shape_before)


def _describe_case_for_run(image_files: List[str], segmentation_file: str,
                           reader_writer_class: Type[BaseReaderWriter], num_samples: int,
                           expected_num_channels: int, case_index: int, num_cases: int):
    """Like ``_analyze_case_for_run``, but the samples described and summarised instead of returned
    (``sample_summaries``): (shape_after, spacing, draws per channel, partial sums per channel, relative size)."""
    images, seg, shape_before, spacing = _read_and_crop(image_files, segmentation_file, reader_writer_class,
                                                        expected_num_channels)
    draws, parts = summaries.draw_and_sum(seg, images, 1234, num_samples, case_index, num_cases)
    return images.shape[1:], spacing, draws, parts, np.prod(images.shape[1:]) / np.prod(shape_before)


def _analyze_case_via(analyze_case, image_files, segmentation_file, reader_writer_class, num_samples):
    """Adapter for subclasses that override ``analyze_case``: drop its per-case statistics."""
    shape_after, spacing, samples, _, relative_size = analyze_case(image_files, segmentation_file,
                                                                   reader_writer_class, num_samples)
    return shape_after, spacing, samples, relative_size


def _warn_single_slice_cases(fingerprint: dict, first_image_files: List[str], max_shown: int = 3) -> None:
    """One warning for images of a single slice (a 2-D file, which readers give as one slice with a huge slice
    spacing, or a one-slice volume) in a dataset whose other images are 3-D. Both are accepted, but a 3-D
    configuration trains on them as volumes: a 2-D image is resampled to many copies of its slice, a one-slice
    volume padded with zeros, and such images pull the planned median spacing and shape."""
    shapes = fingerprint['shapes_after_crop']
    if not shapes or any(len(s) != 3 for s in shapes) or np.median([s[0] for s in shapes]) <= 1:
        return  # a 2-D dataset (or one mostly of single slices): nothing stands out
    flat = [i for i, s in enumerate(shapes) if s[0] == 1]
    if not flat:
        return
    volumes = [s for s in shapes if s[0] > 1]
    median = [int(v) for v in np.median(np.array(volumes), axis=0)]
    shown = '; '.join(f"{first_image_files[i]} has shape {shapes[i]} (spacing "
                      f"{[round(float(v), 4) for v in fingerprint['spacings'][i]]})" for i in flat[:max_shown])
    logger.warning("%d image(s) are a single slice (2-D) while the others are 3-D (median shape %s): %s%s. A 3-D "
                   "configuration resamples a 2-D image to copies of its slice (or pads a one-slice volume) and they "
                   "skew the plans; remove them or give them as 3-D volumes.", len(flat), median, shown,
                   f"; and {len(flat) - max_shown} more" if len(flat) > max_shown else "")


class DatasetFingerprintExtractor(object):
    def __init__(self, dataset_name_or_id: Union[str, int], num_processes: int = 8, verbose: bool = False):
        from nnunetv2.utilities.dataset_json import check_raw_dataset_json, load_dataset_json
        from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

        self.dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
        self.verbose = verbose
        self.input_folder = os.path.join(nnUNet_raw, self.dataset_name)
        self.num_processes = requested_processes(num_processes)  # None: one per CPU
        self.dataset_json = check_raw_dataset_json(load_dataset_json(self.input_folder),
                                                   os.path.join(self.input_folder, 'dataset.json'),
                                                   need_num_training=False)
        self.dataset = get_filenames_of_train_images_and_targets(self.input_folder, self.dataset_json)
        # 10e7 == 1e8 foreground intensity samples per channel in total (reference value)
        self.num_foreground_voxels_for_intensitystats = 10e7
        self.show_progress_bar = True

    @staticmethod
    def collect_foreground_intensities(segmentation: np.ndarray, images: np.ndarray, seed: int = 1234,
                                       num_samples: int = 10000):
        """(sampled intensities per channel, per-case statistics per channel) of one cropped case (4-D arrays)."""
        assert images.ndim == 4 and segmentation.ndim == 4, "images and segmentation must be 4-D (c, x, y, z)"
        assert not np.any(np.isnan(segmentation)), "Segmentation contains NaN values."
        assert not np.any(np.isnan(images)), "Images contains NaN values."
        return (sample_foreground_intensities(segmentation, images, seed, num_samples),
                per_case_statistics(segmentation, images))

    @staticmethod
    def analyze_case(image_files: List[str], segmentation_file: str, reader_writer_class: Type[BaseReaderWriter],
                     num_samples: int = 10000):
        images, seg, shape_before, spacing = _read_and_crop(image_files, segmentation_file, reader_writer_class)
        shape_after = images.shape[1:]
        samples, stats = DatasetFingerprintExtractor.collect_foreground_intensities(seg, images,
                                                                                    num_samples=num_samples)
        return shape_after, spacing, samples, stats, np.prod(shape_after) / np.prod(shape_before)

    def _num_channels(self) -> int:
        key = 'channel_names' if 'channel_names' in self.dataset_json else 'modality'
        return len(self.dataset_json[key].keys())

    def run(self, overwrite_existing: bool = False) -> dict:
        from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

        output_folder = os.path.join(nnUNet_preprocessed, self.dataset_name)
        maybe_mkdir_p(output_folder)
        properties_file = os.path.join(output_folder, 'dataset_fingerprint.json')
        if os.path.isfile(properties_file) and not overwrite_existing:
            return load_json(properties_file)
        if len(self.dataset) == 0:
            raise UserError(f"No training cases found for {self.dataset_name} in {self.input_folder}.",
                            "Put images in imagesTr (and labels in labelsTr) or list them in dataset.json.")
        from nnunetv2.utilities.utils import check_every_case_has_images
        check_every_case_has_images(self.input_folder, self.dataset_json, self.dataset)
        identifiers = list(self.dataset.keys())
        num_channels = self._num_channels()
        for k in identifiers:  # a stray channel file (e.g. _0001 of a 1-channel dataset) shows without reading
            if len(self.dataset[k]['images']) > num_channels:
                check_channel_count(len(self.dataset[k]['images']), self.dataset[k]['images'], num_channels)
        reader_writer_class = determine_reader_writer_from_dataset_json(
            self.dataset_json, self.dataset[identifiers[0]]['images'][0])
        num_samples = int(self.num_foreground_voxels_for_intensitystats // len(self.dataset))

        in_workers = self.num_processes > 1 and len(identifiers) > 1
        if type(self).analyze_case is DatasetFingerprintExtractor.analyze_case and in_workers:
            # samples summarised where they are drawn instead of sent (in one process they need not travel)
            fingerprint = self._run_summarised(identifiers, reader_writer_class, num_samples, num_channels)
        else:
            if type(self).analyze_case is DatasetFingerprintExtractor.analyze_case:
                tasks = [(self.dataset[k]['images'], self.dataset[k]['label'], reader_writer_class, num_samples,
                          num_channels) for k in identifiers]
                func = _analyze_case_for_run
            else:  # a subclass customised analyze_case: call it (in the workers) and drop its per-case stats
                tasks = [(type(self).analyze_case, self.dataset[k]['images'], self.dataset[k]['label'],
                          reader_writer_class, num_samples) for k in identifiers]
                func = _analyze_case_via
            results = run_cases(func, tasks, identifiers, self.num_processes, desc="Extracting dataset fingerprint",
                                show_progress_bar=self.show_progress_bar)
            fingerprint = self._aggregate(results, identifiers)
        _warn_single_slice_cases(fingerprint, [self.dataset[k]['images'][0] for k in identifiers])
        save_json(fingerprint, properties_file)  # atomic: a failed write leaves no partial file
        # a freshly computed fingerprint names its channels by int, as the reference's does (callers index it with
        # 0, 1, ...); the file (and a fingerprint read back from it) has json's string keys
        channels = fingerprint['foreground_intensity_properties_per_channel']
        return dict(fingerprint, foreground_intensity_properties_per_channel={int(c): v for c, v in channels.items()})

    def _run_summarised(self, identifiers: List[str], reader_writer_class, num_samples: int,
                        num_channels: int) -> dict:
        """The fingerprint with the intensity samples summarised in the workers (see ``sample_summaries``): one
        round reads the cases, a second sums the squared deviations once the means are known."""
        n = len(identifiers)
        tasks = [(self.dataset[k]['images'], self.dataset[k]['label'], reader_writer_class, num_samples,
                  num_channels, i, n) for i, k in enumerate(identifiers)]
        with CaseRunner(identifiers, self.num_processes) as runner:
            results = runner.map(_describe_case_for_run, tasks, "Extracting dataset fingerprint",
                                 self.show_progress_bar)
            draws = [r[2] for r in results]
            parts = [r[3] for r in results]
            try:
                intensity_properties = summaries.summarised_statistics(
                    draws, parts, num_samples, num_channels,
                    lambda arguments: runner.map(summaries.later_round, arguments))
            except summaries.NoForeground as e:
                raise self._no_foreground(e.channel) from None
        return _fingerprint_dict(results, intensity_properties, [r[4] for r in results])

    def _no_foreground(self, channel: int) -> UserError:
        return UserError(f"No foreground voxels (label > 0) in any training case of {self.dataset_name} (channel "
                         f"{channel}), so no intensity statistics can be computed.",
                         "Check the segmentations in labelsTr.")

    def _aggregate(self, results: list, identifiers: List[str]) -> dict:
        samples = [list(r[2]) for r in results]  # per case, per channel; references only, no copies
        intensity_properties = {}
        for c in range(self._num_channels()):
            per_case = [s[c] for s in samples]
            if all(len(s) == 0 for s in per_case):
                raise self._no_foreground(c)
            intensity_properties[str(c)] = aggregate_channel(per_case)
            del per_case
            for s in samples:  # free this channel's samples early (up to 400 MB per channel)
                s[c] = None
        return _fingerprint_dict(results, intensity_properties, [r[3] for r in results])
