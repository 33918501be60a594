"""Grand-Challenge algorithm containers built on nnU-Net v2: how they drive the predictor, written by us in the shape
they use it (no client code here). Read from public repositories:

* ULS23 baseline containers (``class Uls23(SegmentationAlgorithm)``, DIAGNijmegen's baseline and several participant
  copies): each VOI of a stacked volume is saved as ``np.array([voi])``, its spacing comes from a JSON list
  (``stacked-3d-volumetric-spacings.json``) and it is predicted with ``predict_single_npy_array(voi, {'spacing': s},
  None, None, False)`` - a properties dict the container builds itself, nothing but ``spacing``. The baseline even
  hands over a torch tensor; that fails in the reference too (``'Tensor' object has no attribute 'astype'``) and is
  covered, as one clear error, by tests/inference/test_array_inputs.py.
* an autoPET IV container with LesionLocator's ``autoPETPredictor`` (``{'spacing': spacing[::-1]}`` only, the CT/PET
  stack cast to ``np.half`` before prediction) and its LocalEdit step: ``PreprocessAdapterFromNpy([img],
  [mask[None].astype(np.int16)], [props], [None], plans_manager, dataset_json, configuration_manager,
  num_threads_in_multithreaded=1, verbose=False)``, ``next(adapter)``, extra channels stacked onto ``data``,
  ``predictor.label_manager`` replaced by ``SimpleNamespace(num_segmentation_heads=...)`` before
  ``predict_logits_from_preprocessed_data``, and a mask mapped back to the image with
  ``configuration_manager.resampling_fn_seg``, ``bbox_used_for_cropping`` and ``transpose_backward``.
* Zhack47/autopetiv ``submission_task1/nnunet-baseline/process.py`` and its autoPET III sibling: images read with
  ``SimpleITKIO``, cropped to a PET bounding box, ``properties['sitk_stuff']['origin']`` moved to the crop,
  ``predictor.dataset_json['file_ending'] = '.mha'`` and ``predictor.allowed_mirroring_axes = (1, 2)`` or ``None``
  set after initialisation (by image size), then ``predict_single_npy_array(images, properties, None, trunc, False)``
  writing ``trunc + '.mha'``; ``nnUNet_compile`` set to 'F' first (covered in test_model_export_patterns.py).
* Hasna-hc/CoW-multiclass-segmentation-TopCoW24 ``algo_submission/task-1-seg/{inference,your_algorithm}.py``: one
  ``SimpleITKIO().read_images`` properties dict handed to two predictors in turn (multi-class, then binary with
  mirroring), the second getting the dict the first one filled in.
* MIC-DKFZ-style ``CustomPredictor`` in autoPET III ``process.py`` containers and a CBCT (ToothFairy) variant:
  ``initialize_from_trained_model_folder`` rewritten (``PlansManager``, ``recursive_find_python_class`` over
  ``nnunetv2/training/nnUNetTrainer``, ``build_network_architecture``, checkpoint paths in ``list_of_parameters``),
  ``configuration_manager.preprocessor_class(verbose=...).run_case_npy`` (three results), ``pad_nd_image``,
  ``_internal_get_sliding_window_slicers``, ``compute_gaussian(..., dtype=torch.float16)``,
  ``_internal_maybe_mirror_and_predict`` and their own conversion with ``resampling_fn_probabilities`` and
  ``bounding_box_to_slice``; the CBCT variant adds ``__init__`` keywords, overrides
  ``predict_logits_from_preprocessed_data`` to call ``predict_sliding_window_return_logits``, overrides
  ``_internal_predict_sliding_window_return_logits(data, slicers, do_on_device=True)`` and batches the mirrored
  copies in ``_internal_maybe_mirror_and_predict``, and composes ``predict_from_files`` from
  ``_manage_input_and_output_lists``.
* DIAGNijmegen/ACOUSLIC-AI-baseline ``model.py``, ``inference.py``, ``postprocess_probability_maps.py``: a 2-D model
  over a stack of ultrasound frames read with ``SimpleITKIO``, ``dataset_json['file_ending'] = '.mha'`` set after
  initialisation, ``_, probabilities = predict_single_npy_array(image, properties, None, None, True)``, thresholded
  argmax, then ``remove_all_but_largest_component_from_segmentation(masks, labels_or_regions=dict.values())``.
* common in containers: ``get_data_iterator_from_raw_npy_data([img], None, [props], None, n)`` followed by
  ``predict_from_data_iterator(iterator, True, n)`` (result ``[(segmentation, probabilities)]``), and logits of
  several predictors averaged by hand before ``convert_predicted_logits_to_segmentation_with_correct_shape``.
* DIAGNijmegen/PANORAMA_baseline ``src/process.py`` and ClinicalDataScience/autoPETIII ``nnunet-baseline/process.py``
  only call ``nnUNetv2_predict`` (``-chk``, ``--save_probabilities``, ``--continue_prediction``) and read
  ``np.load(npz)['probabilities']``; that is covered by the CLI and golden-model tests.

* what all the subclasses above take for granted, and some feature extractors that hook the network rely on: the
  reference's window loop makes exactly one network pass per tile (and mirrored copy), in the order of the slicers,
  on the calling thread, one at a time - also when ``_internal_maybe_mirror_and_predict`` is overridden.

Every test here was run unchanged under the reference 2.8.1 (all pass there). Models: the reference-trained golden
models (skipped without ../shared); expected segmentations and probabilities are the reference's own predictions of
the same images.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from _inference_golden import PROB_ATOL  # noqa: E402

from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO  # noqa: E402
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO  # noqa: E402
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: E402

DS3 = 'Dataset902_SynthMRRegions'  # 3d_fullres, 2 channels, regions (sigmoid), mirroring axes (0, 1, 2)
DS2 = 'Dataset903_SynthNatural2D'  # 2d, RGB png, softmax labels, mirroring axes (0, 1)


# ----- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def models(golden_model_dir):
    return {'3d': golden_model_dir(DS3), '2d': golden_model_dir(DS2)}


@pytest.fixture(scope='module')
def golden(shared_dir):
    """Callable golden('3d'|'2d', mode, case, what) with what in seg | probs | props."""
    def get(kind, mode, case, what='seg'):
        folder = shared_dir / 'reference' / 'models' / (DS3 if kind == '3d' else DS2) / 'predictions' / mode
        if what == 'probs':
            return np.load(folder / f'{case}.npz')['probabilities']
        if what == 'props':
            with open(folder / f'{case}.pkl', 'rb') as f:
                return pickle.load(f)
        if kind == '3d':
            return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f'{case}.nii.gz')))
        from PIL import Image
        return np.asarray(Image.open(folder / f'{case}.png'))
    return get


def _predictor(folder, mirroring=False, cls=nnUNetPredictor, **kwargs):
    """As the containers build it (perform_everything_on_device=True is switched off on a CPU)."""
    p = cls(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring, perform_everything_on_device=True,
            device=torch.device('cpu'), verbose=False, verbose_preprocessing=False, allow_tqdm=False, **kwargs)
    p.initialize_from_trained_model_folder(str(folder), use_folds=(0,), checkpoint_name='checkpoint_final.pth')
    return p


@pytest.fixture(scope='module')
def p3(models):
    return _predictor(models['3d'])


@pytest.fixture(scope='module')
def mr008(golden_raw):
    """(image, properties) of mr_008 as SimpleITKIO reads them (2, 50, 54, 52)."""
    folder = golden_raw(DS3) / 'imagesTs'
    return SimpleITKIO().read_images([str(folder / 'mr_008_0000.nii.gz'), str(folder / 'mr_008_0001.nii.gz')])


@pytest.fixture(scope='module')
def frames(golden_raw):
    """The three 2-D test images as NaturalImage2DIO reads them: [(image (3, 1, 96, 128), properties), ...]."""
    folder = golden_raw(DS2) / 'imagesTs'
    return [NaturalImage2DIO().read_images([str(folder / f'nat_01{i}_0000.png')]) for i in (2, 3, 4)]


class _ForwardCounter:
    """Counts the network's forward passes (a hook: the predictor loads state dicts into this very module)."""
    def __init__(self, network):
        self.n = 0
        self.handle = network.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.n += 1

    def take(self):
        n, self.n = self.n, 0
        return n


# ----- ULS23 / autoPET IV: properties built by the container ------------------------------------------------------
def test_voi_with_spacing_from_a_json_list(p3, mr008, golden):
    image, read_props = mr008
    spacing = json.loads(json.dumps([list(map(float, read_props['spacing']))]))[0]  # spacings.json, one VOI
    props = {'spacing': spacing}
    seg = p3.predict_single_npy_array(image, props, None, None, False)
    assert isinstance(seg, np.ndarray) and seg.dtype == np.uint8 and seg.shape == image.shape[1:]
    np.testing.assert_array_equal(seg, golden('3d', 'disable_tta', 'mr_008'))
    # the dict the container passed in is filled in place, as by the reference
    expected = golden('3d', 'disable_tta', 'mr_008', 'props')
    assert set(props) == {'spacing', 'shape_before_cropping', 'bbox_used_for_cropping',
                          'shape_after_cropping_and_before_resampling'}
    assert props['spacing'] == spacing
    assert isinstance(props['shape_before_cropping'], tuple) and isinstance(props['bbox_used_for_cropping'], list)
    for key in ('shape_before_cropping', 'bbox_used_for_cropping', 'shape_after_cropping_and_before_resampling'):
        assert json.loads(json.dumps(props[key])) == json.loads(json.dumps(expected[key]))


def test_half_precision_stack_is_predicted_as_its_float32_values(p3, mr008, golden):
    image, read_props = mr008
    spacing = list(read_props['spacing'])
    half = image.astype(np.half)
    seg = p3.predict_single_npy_array(half, {'spacing': spacing}, None, None, False)
    upcast = p3.predict_single_npy_array(half.astype(np.float32), {'spacing': spacing}, None, None, False)
    np.testing.assert_array_equal(seg, upcast)
    assert half.dtype == np.float16  # the caller's array is left as it was
    # rounding the input to fp16 changes no voxel of this case in the reference; allow a boundary voxel or two
    assert int((seg != golden('3d', 'disable_tta', 'mr_008')).sum()) <= seg.size // 1000


# ----- autoPET III/IV (Zhack47): ROI crop, .mha output, mirroring axes changed after initialisation ---------------
def test_roi_crop_written_as_mha_with_mirroring_removed_after_init(models, mr008, golden, tmp_path):
    image, read_props = mr008
    predictor = _predictor(models['3d'], mirroring=True)
    assert tuple(predictor.allowed_mirroring_axes) == (0, 1, 2)  # from the checkpoint
    predictor.dataset_json['file_ending'] = '.mha'
    predictor.allowed_mirroring_axes = None  # "removing all mirroring" for large images
    bbox = golden('3d', 'disable_tta', 'mr_008', 'props')['bbox_used_for_cropping']
    roi = tuple(slice(lo, hi) for lo, hi in bbox)
    cropped = np.stack([image[0][roi], image[1][roi]])
    props = copy.deepcopy(read_props)
    origin, spacing = props['sitk_stuff']['origin'], props['sitk_stuff']['spacing']
    new_origin = tuple(o + s * bbox[2 - i][0] for i, (o, s) in enumerate(zip(origin, spacing)))  # identity direction
    props['sitk_stuff']['origin'] = new_origin
    trunc = str(tmp_path / 'out' / 'a1b2c3')
    os.makedirs(tmp_path / 'out')
    assert predictor.predict_single_npy_array(cropped, props, None, trunc, False) is None
    assert os.listdir(tmp_path / 'out') == ['a1b2c3.mha']
    written = sitk.ReadImage(trunc + '.mha')
    assert written.GetSize() == cropped.shape[1:][::-1]
    np.testing.assert_allclose(written.GetOrigin(), new_origin, rtol=0, atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), spacing, rtol=0, atol=1e-6)
    # the crop is the box nnU-Net itself crops to, so the prediction is the reference's without mirroring, cut to the
    # box (with the checkpoint's axes it would be the 'default' one, which differs)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), golden('3d', 'disable_tta', 'mr_008')[roi])


def test_mirroring_axes_reduced_after_init(models, frames, golden):
    image, props = frames[0]
    predictor = _predictor(models['2d'], mirroring=True)
    assert tuple(predictor.allowed_mirroring_axes) == (0, 1)
    predictor.predict_single_npy_array(image, copy.deepcopy(props))  # first image (see the thread tests below)
    counter = _ForwardCounter(predictor.network)
    seg = predictor.predict_single_npy_array(image, copy.deepcopy(props))
    assert counter.take() == 6 * 4  # 2 x 3 tiles, 4 mirror combinations
    np.testing.assert_array_equal(seg[0], golden('2d', 'default', 'nat_012'))
    predictor.allowed_mirroring_axes = (1,)
    predictor.predict_single_npy_array(image, copy.deepcopy(props))
    assert counter.take() == 6 * 2
    predictor.allowed_mirroring_axes = None
    seg = predictor.predict_single_npy_array(image, copy.deepcopy(props))
    assert counter.take() == 6
    np.testing.assert_array_equal(seg[0], golden('2d', 'disable_tta', 'nat_012'))
    predictor.allowed_mirroring_axes = (0, 1)
    predictor.use_mirroring = False  # use_mirroring off wins over the axes
    predictor.predict_single_npy_array(image, copy.deepcopy(props))
    assert counter.take() == 6
    counter.handle.remove()


# ----- TopCoW: one reader properties dict through two predictors --------------------------------------------------
def test_one_properties_dict_through_two_predictors(p3, models, mr008, golden):
    image, read_props = mr008
    props = copy.deepcopy(read_props)
    first = p3.predict_single_npy_array(image, props)
    after_first = copy.deepcopy(props)
    assert props['sitk_stuff'] == read_props['sitk_stuff']
    second = _predictor(models['3d'], mirroring=True).predict_single_npy_array(image, props)  # dict already filled
    np.testing.assert_array_equal(first, golden('3d', 'disable_tta', 'mr_008'))
    np.testing.assert_array_equal(second, golden('3d', 'default', 'mr_008'))
    assert repr(props) == repr(after_first)  # the second run wrote the same values again


# ----- autoPET IV LocalEdit: previous mask through PreprocessAdapterFromNpy, duck-typed label manager -------------
def test_previous_mask_through_the_adapter_and_a_duck_typed_label_manager(models, mr008, golden):
    from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    image, read_props = mr008
    predictor = _predictor(models['3d'])
    pm, cm, dj = predictor.plans_manager, predictor.configuration_manager, predictor.dataset_json
    reference_seg = golden('3d', 'disable_tta', 'mr_008')
    previous = reference_seg[None].astype(np.int16)  # int16: room for nnU-Net's -1 outside the nonzero mask
    adapter = PreprocessAdapterFromNpy([image], [previous], [copy.deepcopy(read_props)], [None], pm, dj, cm,
                                       num_threads_in_multithreaded=1, verbose=False)
    item = next(adapter)
    with pytest.raises(StopIteration):
        next(adapter)
    assert set(item) == {'data', 'data_properties', 'ofile'} and item['ofile'] is None
    data, properties = item['data'], item['data_properties']
    assert isinstance(data, torch.Tensor) and data.dtype == torch.float32 and tuple(data.shape) == (5, 37, 43, 39)
    assert 'class_locations' in properties  # a segmentation went through the preprocessor
    # image channels as without the mask, then the mask one-hot over the foreground labels
    pre = cm.preprocessor_class(verbose=False)
    plain, nonzero, _ = pre.run_case_npy(image, None, copy.deepcopy(read_props), pm, cm, dj)
    assert nonzero.dtype == np.int8 and nonzero.shape == (1, 37, 43, 39)  # the nonzero mask, as in the reference
    np.testing.assert_array_equal(data[:2].numpy(), plain)
    _, seg, _ = pre.run_case_npy(image, previous, copy.deepcopy(read_props), pm, cm, dj)
    labels = predictor.label_manager.foreground_labels
    assert [int(x) for x in labels] == [1, 2, 3]
    for k, label in enumerate(labels):
        np.testing.assert_array_equal(data[2 + k].numpy(), (seg[0] == label).astype(np.float32))
    assert [int(data[c].sum()) for c in (2, 3, 4)] == [3240, 171, 610]  # as in the reference

    logits = predictor.predict_logits_from_preprocessed_data(data[:2])
    real = predictor.label_manager
    predictor.label_manager = SimpleNamespace(num_segmentation_heads=3)
    duck = predictor.predict_logits_from_preprocessed_data(data[:2])
    predictor.label_manager = real
    assert duck.dtype == torch.float16 and duck.device.type == 'cpu' and tuple(duck.shape) == (3, 37, 43, 39)
    assert torch.equal(duck, logits)
    np.testing.assert_array_equal(
        convert_predicted_logits_to_segmentation_with_correct_shape(logits, pm, cm, real, properties), reference_seg)

    # a mask in preprocessed space mapped back to the image the container's way
    spacing = [properties['spacing'][i] for i in pm.transpose_forward]
    shape = properties['shape_after_cropping_and_before_resampling']
    current = cm.spacing if len(cm.spacing) == len(shape) else [spacing[0], *cm.spacing]
    mask = (logits[0] > 0).numpy().astype(np.uint8)
    back = cm.resampling_fn_seg(mask[None], shape, current, spacing)[0]
    restored = np.zeros(properties['shape_before_cropping'], dtype=np.uint8)
    restored[tuple(slice(int(lo), int(hi)) for lo, hi in properties['bbox_used_for_cropping'])] = back
    restored = restored.transpose(pm.transpose_backward)
    assert restored.shape == reference_seg.shape
    whole = reference_seg > 0
    dice = 2 * np.sum(whole & (restored > 0)) / (whole.sum() + (restored > 0).sum())
    assert dice > 0.95  # 136 of 4185 whole-tumour voxels differ in the reference (mask vs. logit resampling)


# ----- MIC-DKFZ CustomPredictor: own initialisation, own window loop ----------------------------------------------
def test_custom_predictor_with_its_own_initialisation_and_window_loop(models, frames, golden):
    import nnunetv2
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    seen = {}

    class CustomPredictor(nnUNetPredictor):
        def initialize_from_trained_model_folder(self, folder, use_folds, checkpoint_name='checkpoint_final.pth'):
            if use_folds is None:
                use_folds = nnUNetPredictor.auto_detect_available_folds(folder, checkpoint_name)
            dataset_json = load_json(os.path.join(folder, 'dataset.json'))
            plans_manager = PlansManager(load_json(os.path.join(folder, 'plans.json')))
            paths = [os.path.join(folder, f'fold_{f}', checkpoint_name) for f in use_folds]
            checkpoint = torch.load(paths[0], map_location='cpu', weights_only=False)
            configuration_manager = plans_manager.get_configuration(checkpoint['init_args']['configuration'])
            trainer = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'),
                                                  checkpoint['trainer_name'], 'nnunetv2.training.nnUNetTrainer')
            seen['trainer'] = trainer
            label_manager = plans_manager.get_label_manager(dataset_json)
            self.network = trainer.build_network_architecture(
                plans_manager, configuration_manager,
                determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
                label_manager.num_segmentation_heads, enable_deep_supervision=False)
            self.plans_manager, self.configuration_manager, self.dataset_json = \
                plans_manager, configuration_manager, dataset_json
            self.list_of_parameters = paths  # loaded on demand in the window loop
            self.trainer_name = checkpoint['trainer_name']
            self.allowed_mirroring_axes = checkpoint.get('inference_allowed_mirroring_axes')
            self.label_manager = label_manager

        def predict_single_npy_array(self, input_image, image_properties, segmentation_previous_stage=None):
            preprocessor = self.configuration_manager.preprocessor_class(verbose=self.verbose)
            data, _, image_properties = preprocessor.run_case_npy(input_image, None, image_properties,
                                                                  self.plans_manager, self.configuration_manager,
                                                                  self.dataset_json)
            logits = self.predict_preprocessed_image(torch.from_numpy(data))
            return self.to_segmentation(logits, image_properties), logits

        @torch.inference_mode()
        def predict_preprocessed_image(self, image):
            patch = self.configuration_manager.patch_size
            data, revert = pad_nd_image(image, patch, 'constant', {'value': 0}, True, None)
            slicers = self._internal_get_sliding_window_slicers(data.shape[1:])
            seen['slicers'] = slicers
            summed = torch.zeros((self.label_manager.num_segmentation_heads, *data.shape[1:]), dtype=torch.half)
            weights = torch.zeros(data.shape[1:], dtype=torch.half)
            gaussian = compute_gaussian(tuple(patch), sigma_scale=1. / 8, value_scaling_factor=10,
                                        device=torch.device('cpu'), dtype=torch.float16)
            seen['gaussian'] = gaussian
            for path in self.list_of_parameters:
                state = torch.load(path, map_location='cpu', weights_only=False)['network_weights']
                self.network.load_state_dict(state)
                self.network.eval()
                for sl in slicers:
                    summed[sl] += self._internal_maybe_mirror_and_predict(data[sl][None])[0] * gaussian
                    weights[sl[1:]] += gaussian
            summed /= weights
            return summed[(slice(None), *revert[1:])]

        def to_segmentation(self, logits, props):
            pm, cm = self.plans_manager, self.configuration_manager
            spacing = [props['spacing'][i] for i in pm.transpose_forward]
            shape = props['shape_after_cropping_and_before_resampling']
            current = cm.spacing if len(cm.spacing) == len(shape) else [spacing[0], *cm.spacing]
            resampled = cm.resampling_fn_probabilities(logits, shape, current, spacing)
            seg = torch.as_tensor(resampled).argmax(0).numpy()
            full = np.zeros(props['shape_before_cropping'], dtype=np.uint8)
            full[bounding_box_to_slice(props['bbox_used_for_cropping'])] = seg
            return full.transpose(pm.transpose_backward)

    image, props = frames[0]
    predictor = CustomPredictor(tile_step_size=0.5, use_mirroring=False, use_gaussian=True,
                                perform_everything_on_device=False, device=torch.device('cpu'), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(models['2d']), use_folds=None)
    assert seen['trainer'].__name__ == 'nnUNetTrainer_5epochs'  # the checkpoint's trainer, found by name
    seg, logits = predictor.predict_single_npy_array(image, copy.deepcopy(props))
    assert len(seen['slicers']) == 6
    assert seen['slicers'][0] == (slice(None), 0, slice(0, 64), slice(0, 64))
    assert seen['slicers'][1] == (slice(None), 0, slice(0, 64), slice(32, 96))
    g = seen['gaussian']
    assert g.dtype == torch.float16 and tuple(g.shape) == (64, 64) and float(g.max()) == 10.0
    np.testing.assert_array_equal(seg[0], golden('2d', 'disable_tta', 'nat_012'))
    # the hand-written loop gives exactly the predictor's own logits
    standard = _predictor(models['2d'])
    data, _, _ = standard.configuration_manager.preprocessor_class(verbose=False).run_case_npy(
        image, None, copy.deepcopy(props), standard.plans_manager, standard.configuration_manager,
        standard.dataset_json)
    assert torch.equal(standard.predict_logits_from_preprocessed_data(torch.from_numpy(data)), logits)
    with pytest.raises(ValueError):  # the pre-2.5 two-value unpacking some containers still have fails, as in 2.8.1
        data, seg = predictor.configuration_manager.preprocessor_class(verbose=False).run_case_npy(
            image, None, copy.deepcopy(props), standard.plans_manager, standard.configuration_manager,
            standard.dataset_json)


# ----- MIC-DKFZ CBCT variant: overridden window hooks, batched mirroring ------------------------------------------
def test_overridden_window_hooks_and_batched_mirroring(models, frames, golden, golden_raw, tmp_path):
    calls = []

    class BatchedTTAPredictor(nnUNetPredictor):
        def __init__(self, *args, compile=True, tta_batch_size=1, **kwargs):
            super().__init__(*args, **kwargs)
            self.compile = compile
            self.tta_batch_size = tta_batch_size

        @torch.inference_mode()
        def predict_logits_from_preprocessed_data(self, data):  # one set of weights, loaded at initialisation
            calls.append(('logits', tuple(data.shape)))
            return self.predict_sliding_window_return_logits(data).to('cpu')

        def _internal_get_sliding_window_slicers(self, image_size):
            calls.append(('slicers', tuple(image_size)))
            return super()._internal_get_sliding_window_slicers(image_size)

        @torch.inference_mode()
        def _internal_predict_sliding_window_return_logits(self, data, slicers, do_on_device=True):
            calls.append(('window', tuple(data.shape), len(slicers), do_on_device))
            return super()._internal_predict_sliding_window_return_logits(data, slicers, do_on_device)

        @torch.inference_mode()
        def _internal_maybe_mirror_and_predict(self, x):
            axes = self.allowed_mirroring_axes if self.use_mirroring else None
            if axes is None:
                return self.network(x)
            flips = [c for n in range(1, len(axes) + 1) for c in itertools.combinations([a + 2 for a in axes], n)]
            out = self.network(torch.cat([x] + [torch.flip(x, f) for f in flips]))
            total = out[:1].clone()
            for j, f in enumerate(flips):
                total += torch.flip(out[j + 1:j + 2], f)
            calls.append(('mirror', tuple(x.shape), len(flips)))
            return total / (len(flips) + 1)

    predictor = _predictor(models['2d'], mirroring=True, cls=BatchedTTAPredictor, compile=False)
    assert (predictor.compile, predictor.tta_batch_size, predictor.perform_everything_on_device) == (False, 1, False)
    image, props = frames[0]
    seg, probs = predictor.predict_single_npy_array(image, copy.deepcopy(props), None, None, True)
    assert calls[:4] == [('logits', (3, 1, 96, 128)), ('slicers', (1, 96, 128)), ('window', (3, 1, 96, 128), 6, False),
                         ('mirror', (1, 3, 64, 64), 3)]
    assert len(calls) == 3 + 6
    assert int((seg[0] != golden('2d', 'default', 'nat_012')).sum()) <= 2  # 0 in the reference; batched convs
    assert float(np.abs(probs - golden('2d', 'default', 'nat_012', 'probs')).max()) <= PROB_ATOL
    # predict_from_files written out of the predictor's helpers
    folder = tmp_path / 'in'
    folder.mkdir()
    (folder / 'nat_012_0000.png').write_bytes((golden_raw(DS2) / 'imagesTs' / 'nat_012_0000.png').read_bytes())
    lists, outputs, previous = predictor._manage_input_and_output_lists(str(folder), str(tmp_path / 'out'), None,
                                                                        True, 0, 1, False)
    assert lists == [[str(folder / 'nat_012_0000.png')]]
    assert outputs == [str(tmp_path / 'out' / 'nat_012')] and previous == [None]


# ----- ACOUSLIC-AI: 2-D model over a stack of frames, probabilities, largest component ---------------------------
def test_two_dimensional_model_over_a_stack_of_frames(models, frames, golden):
    from scipy import ndimage
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation
    predictor = _predictor(models['2d'])
    predictor.dataset_json['file_ending'] = '.mha'
    stack = np.concatenate([image for image, _ in frames], axis=1)  # (3 channels, 3 frames, 96, 128)
    seg, probabilities = predictor.predict_single_npy_array(stack, {'spacing': [999.0, 1.0, 1.0]}, None, None, True)
    assert seg.shape == (3, 96, 128) and seg.dtype == np.uint8
    assert probabilities.shape == (3, 3, 96, 128) and probabilities.dtype == np.float32
    for i, case in enumerate(('nat_012', 'nat_013', 'nat_014')):  # every frame as if predicted on its own
        np.testing.assert_array_equal(seg[i], golden('2d', 'disable_tta', case))
        assert float(np.abs(probabilities[:, i] - golden('2d', 'disable_tta', case, 'probs')[:, 0]).max()) <= PROB_ATOL
    thresholded = probabilities.copy()
    thresholded[thresholded < 0.5] = 0
    masks = np.argmax(thresholded, axis=0).astype(np.uint8)
    labels = dict(disc=1, band=2)
    kept = remove_all_but_largest_component_from_segmentation(masks, labels_or_regions=labels.values())
    np.testing.assert_array_equal(kept, remove_all_but_largest_component_from_segmentation(masks, [1, 2]))
    # the labels together form one mask, of which the largest fully connected component (frames included) stays
    components, n = ndimage.label(np.isin(masks, [1, 2]), ndimage.generate_binary_structure(3, 3))
    sizes = np.bincount(components.ravel())[1:]
    expected = masks.copy()
    expected[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    np.testing.assert_array_equal(kept, expected)
    assert n > 1 and int((kept != masks).sum()) > 0  # this stack has small extra components to remove


# ----- generic: array iterator with probabilities, hand-made logit ensembles --------------------------------------
def test_array_iterator_returning_probabilities(models, frames, golden):
    predictor = _predictor(models['2d'])
    image, props = frames[0]
    iterator = predictor.get_data_iterator_from_raw_npy_data([image], None, [copy.deepcopy(props)], None, 1)
    result = predictor.predict_from_data_iterator(iterator, True, 1)
    assert isinstance(result, list) and len(result) == 1 and len(result[0]) == 2
    seg, probs = result[0]
    assert seg.shape == (1, 96, 128) and seg.dtype == np.uint8 and probs.shape == (3, 1, 96, 128)
    np.testing.assert_array_equal(seg[0], golden('2d', 'disable_tta', 'nat_012'))
    assert float(np.abs(probs - golden('2d', 'disable_tta', 'nat_012', 'probs')).max()) <= PROB_ATOL


def test_logits_of_two_predictors_averaged_by_hand(models, frames, golden):
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    plain, mirrored = _predictor(models['2d']), _predictor(models['2d'], mirroring=True)
    image, props = frames[0]
    data, _, properties = plain.configuration_manager.preprocessor_class(verbose=False).run_case_npy(
        image, None, copy.deepcopy(props), plain.plans_manager, plain.configuration_manager, plain.dataset_json)
    data = torch.from_numpy(data)
    first = plain.predict_logits_from_preprocessed_data(data)
    second = mirrored.predict_logits_from_preprocessed_data(data)
    args = (plain.plans_manager, plain.configuration_manager, plain.label_manager, properties)
    for logits, mode in ((first, 'disable_tta'), (second, 'default')):
        seg = convert_predicted_logits_to_segmentation_with_correct_shape(logits, *args)
        np.testing.assert_array_equal(seg[0], golden('2d', mode, 'nat_012'))
    mean = (first.float() + second.float()) / 2
    seg, probs = convert_predicted_logits_to_segmentation_with_correct_shape(mean, *args, return_probabilities=True)
    assert probs.dtype == np.float32 and probs.shape == (3, 1, 96, 128)
    expected = torch.softmax(mean, 0).numpy()  # same size: no resampling, the nonlinearity of the mean
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(seg, expected.argmax(0))


# ----- the window loop as the reference runs it: pass after pass, on the calling thread ---------------------------
def _tile_sums(predictor, image, props):
    """(preprocessed data, the input sum of each tile in the order of the predictor's slicers)."""
    data, _, _ = predictor.configuration_manager.preprocessor_class(verbose=False).run_case_npy(
        image, None, copy.deepcopy(props), predictor.plans_manager, predictor.configuration_manager,
        predictor.dataset_json)
    data = torch.from_numpy(data)
    assert all(s >= p for s, p in zip(data.shape[2:], predictor.configuration_manager.patch_size))  # no padding
    slicers = predictor._internal_get_sliding_window_slicers(data.shape[1:])
    return data, [float(data[sl].double().sum()) for sl in slicers]


def test_overridden_tile_prediction_runs_tile_after_tile_on_the_calling_thread(models, frames):
    """Subclasses that replace ``_internal_maybe_mirror_and_predict`` alone (TensorRT or ONNX runners, networks with
    extra outputs, feature extractors that hook the network around each call) rely on the reference's loop: one call
    per tile, in the order of the slicers, on the thread that called the predictor, never two at a time."""
    import threading
    import time
    caller = threading.get_ident()
    calls = []

    class OwnTilePrediction(nnUNetPredictor):
        def _internal_maybe_mirror_and_predict(self, x):
            start = time.perf_counter()
            out = super()._internal_maybe_mirror_and_predict(x)
            calls.append((threading.get_ident(), start, time.perf_counter(), float(x.double().sum())))
            return out

    predictor = _predictor(models['2d'], cls=OwnTilePrediction)
    image, props = frames[0]
    data, order = _tile_sums(predictor, image, props)
    assert len(order) == 6
    for attempt in range(2):
        calls.clear()
        predictor.predict_logits_from_preprocessed_data(data)
        assert len(calls) == 6
        assert [c[0] == caller for c in calls] == [True] * 6, f'call {attempt}: tiles predicted in other threads'
        spans = sorted(c[1:3] for c in calls)
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), \
            f'call {attempt}: overlapping calls of the override'
        assert [c[3] for c in calls] == order


def test_network_hooks_see_one_pass_per_tile_in_order(models, frames):
    """A forward hook on ``predictor.network`` (feature extraction, activation statistics) sees exactly the passes
    the reference makes: one per tile and mirrored copy, in tile order, on the calling thread - no extra pass."""
    import threading
    caller = threading.get_ident()
    seen = []
    predictor = _predictor(models['2d'])
    predictor.network.register_forward_hook(
        lambda module, args, output: seen.append((threading.get_ident() == caller, float(args[0].double().sum()))))
    image, props = frames[0]
    data, order = _tile_sums(predictor, image, props)
    for attempt in range(2):
        seen.clear()
        predictor.predict_logits_from_preprocessed_data(data)
        assert [s[1] for s in seen] == order, f'call {attempt}: passes seen by the hook'
        assert all(s[0] for s in seen), f'call {attempt}: passes run in other threads'
