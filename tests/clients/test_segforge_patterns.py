"""SegForge's regression stack (PyPI ``segforge``) trains nnU-Net on continuous maps (distance maps in [0, 1]) stored
as label files. It runs the stock fingerprint extractor on them and reads cases through
``DefaultPreprocessor.run_case`` with its own ``run_case_npy`` that keeps the labels as float32; the reference
accepts both. The default preprocessor, which stores labels as integers, still refuses such maps."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from _tiny_plans import tiny_plans

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "neuron": 1}, "numTraining": 1,
                "file_ending": ".nii.gz"}


@pytest.fixture
def continuous_case(tmp_path):
    """An image and a 'label' file holding a continuous map (float32, values in [0, 1))."""
    rng = np.random.default_rng(0)
    image = (rng.random((8, 16, 16)) * 100 + 1).astype(np.float32)  # all nonzero: no cropping
    z, y, x = np.meshgrid(*[np.arange(s) for s in (8, 16, 16)], indexing="ij")
    dist = np.clip(1 - np.sqrt((z - 4) ** 2 + (y - 8) ** 2 + (x - 8) ** 2) / 6, 0, 1).astype(np.float32)
    files = []
    for arr, name in ((image, "case_0000.nii.gz"), (dist, "case.nii.gz")):
        itk = sitk.GetImageFromArray(arr)
        itk.SetSpacing((0.8, 0.8, 3.0))
        sitk.WriteImage(itk, str(tmp_path / name))
        files.append(str(tmp_path / name))
    return files[0], files[1], image, dist


def test_fingerprint_accepts_a_continuous_label_map_with_a_warning(continuous_case, caplog):
    image_file, label_file, image, dist = continuous_case
    with caplog.at_level(logging.WARNING):
        shape, spacing, samples, stats, rel = DatasetFingerprintExtractor.analyze_case([image_file], label_file,
                                                                                       SimpleITKIO, num_samples=10000)
    assert tuple(shape) == (8, 16, 16) and rel == 1
    # foreground = label > 0, as the reference computes it: the samples are drawn from those voxels only, and the
    # statistics are those of all of them
    foreground = image[dist > 0]
    assert len(samples[0]) == 10000 and np.isin(samples[0], foreground).all()
    assert stats[0]["mean"] == pytest.approx(float(foreground.mean()), rel=1e-5)
    assert any(label_file in r.getMessage() and "not whole numbers" in r.getMessage() for r in caplog.records)


class _KeepsContinuousLabels(DefaultPreprocessor):
    """What segforge's RegressionPreprocessor does, reduced: its own run_case_npy keeps the labels as they are."""

    def run_case_npy(self, data, seg, properties, plans_manager, configuration_manager, dataset_json):
        return data, seg.astype(np.float32), properties


def _managers():
    pm = PlansManager(tiny_plans("Dataset990_Seg", (3.0, 0.8, 0.8)))
    return pm, pm.get_configuration("3d_fullres")


def test_preprocessor_with_its_own_run_case_npy_reads_continuous_labels(continuous_case):
    image_file, label_file, _, dist = continuous_case
    pm, cm = _managers()
    _, seg, _ = _KeepsContinuousLabels(verbose=False).run_case([image_file], label_file, pm, cm, DATASET_JSON)
    assert seg.dtype == np.float32
    assert np.array_equal(seg[0], dist)


def test_default_preprocessor_still_refuses_non_integer_labels(continuous_case):
    image_file, label_file, _, _ = continuous_case
    pm, cm = _managers()
    with pytest.raises(UserError, match="not whole numbers"):
        DefaultPreprocessor(verbose=False).run_case([image_file], label_file, pm, cm, DATASET_JSON)


class _ExtendsRunCaseNpy(DefaultPreprocessor):
    """A subclass whose run_case_npy adds a step and calls ours, which stores the labels as integers."""

    def run_case_npy(self, data, seg, properties, plans_manager, configuration_manager, dataset_json):
        data, seg, properties = super().run_case_npy(data, seg, properties, plans_manager, configuration_manager,
                                                     dataset_json)
        properties['extended'] = True
        return data, seg, properties


def test_subclass_calling_our_run_case_npy_still_refuses_non_integer_labels(continuous_case):
    # its labels come out as integers: 0.9999 would have become 0 without a word
    image_file, label_file, _, _ = continuous_case
    pm, cm = _managers()
    with pytest.raises(UserError, match="not whole numbers") as e:
        _ExtendsRunCaseNpy(verbose=False).run_case([image_file], label_file, pm, cm, DATASET_JSON)
    assert label_file in e.value.one_line()


def test_subclass_calling_our_run_case_npy_reads_integer_labels(continuous_case, tmp_path):
    image_file, _, _, dist = continuous_case
    itk = sitk.GetImageFromArray((dist > 0.5).astype(np.float32))  # whole numbers in a float file: fine
    itk.SetSpacing((0.8, 0.8, 3.0))
    label_file = str(tmp_path / "whole.nii.gz")
    sitk.WriteImage(itk, label_file)
    pm, cm = _managers()
    _, seg, properties = _ExtendsRunCaseNpy(verbose=False).run_case([image_file], label_file, pm, cm, DATASET_JSON)
    assert properties['extended'] and seg.dtype.kind == 'i' and set(np.unique(seg)) == {0, 1}


def test_classes_registered_the_way_segforge_does_resolve_by_name(monkeypatch):
    """segforge's ``ensure_registered()`` replaces ``recursive_find_python_class`` in
    ``nnunetv2.utilities.find_class_by_name`` and in five other modules where the reference binds it (only where the
    attribute exists); the plans then name its label manager and preprocessor, and its planner is looked up by name.
    Ours looks the function up in find_class_by_name at each call, so that replacement is what must be honoured."""
    import importlib

    import nnunetv2.utilities.find_class_by_name as fcn
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.plan_and_preprocess_api import _planner_class
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    class RegressionLabelManager(LabelManager):
        pass

    class RegressionExperimentPlanner(ExperimentPlanner):
        pass

    registry = {"RegressionLabelManager": RegressionLabelManager, "RegressionPreprocessor": _KeepsContinuousLabels,
                "RegressionExperimentPlanner": RegressionExperimentPlanner}
    original = fcn.recursive_find_python_class

    def patched(folder, class_name, current_module, *args, **kwargs):
        return registry.get(class_name) or original(folder, class_name, current_module, *args, **kwargs)

    for name in ("nnunetv2.utilities.find_class_by_name", "nnunetv2.utilities.plans_handling.plans_handler",
                 "nnunetv2.experiment_planning.plan_and_preprocess_api",
                 "nnunetv2.utilities.label_handling.label_handling", "nnunetv2.preprocessing.resampling.utils",
                 "nnunetv2.preprocessing.preprocessors.default_preprocessor"):
        module = importlib.import_module(name)
        if hasattr(module, "recursive_find_python_class"):
            monkeypatch.setattr(module, "recursive_find_python_class", patched)
    plans = tiny_plans("Dataset990_Seg", (3.0, 0.8, 0.8))
    plans["label_manager"] = "RegressionLabelManager"
    plans["configurations"]["3d_fullres"]["preprocessor_name"] = "RegressionPreprocessor"
    pm = PlansManager(plans)
    assert pm.label_manager_class is RegressionLabelManager
    assert type(pm.get_label_manager(DATASET_JSON)) is RegressionLabelManager
    assert pm.get_configuration("3d_fullres").preprocessor_class is _KeepsContinuousLabels
    assert _planner_class("RegressionExperimentPlanner") is RegressionExperimentPlanner
