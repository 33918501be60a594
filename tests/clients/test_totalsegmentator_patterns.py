"""TotalSegmentator's ways of driving the predictor, written by us from its public behaviour (no client code).

On import TotalSegmentator 2.x replaces predictor methods with its own functions, which reach the reference's
module-level names through ``nnunetv2.inference.predict_from_raw_data``; it replaces the two export functions in
that module and in ``export_prediction``, and the trainer lookup in that module and in ``find_objects``; it predicts
from a temporary folder into the same folder; it passes ``perform_everything_on_gpu`` where the constructor has that
keyword; its trainers keep the pre-2.6 constructor. Model: the reference-trained 2-D model (skipped without
../shared). The real package, side by side with the reference: ``benchmarks/totalsegmentator_trial.py`` (needs PyPI).
"""
from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import nnunetv2.inference.export_prediction as ep
import nnunetv2.inference.predict_from_raw_data as prd
import nnunetv2.utilities.find_objects as find_objects
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

DS = 'Dataset903_SynthNatural2D'
CASES = ('nat_012',)  # one image keeps the module fast; ordering is covered in tests/inference


@pytest.fixture(scope="module")
def model_dir(golden_model_dir):
    return golden_model_dir(DS)


@pytest.fixture
def work(golden_raw, tmp_path) -> Path:
    """A temporary folder holding the images, as TotalSegmentator prepares one per run."""
    folder = tmp_path / 'tmp_ts'
    folder.mkdir()
    for case in CASES:
        shutil.copy(golden_raw(DS) / 'imagesTs' / f'{case}_0000.png', folder)
    return folder


def _predictor(model_dir, **kwargs) -> nnUNetPredictor:
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device('cpu'),
                        verbose=False, verbose_preprocessing=False, allow_tqdm=False, **kwargs)
    p.initialize_from_trained_model_folder(str(model_dir), use_folds=(0,), checkpoint_name='checkpoint_final.pth')
    return p


def _seg(path: Path) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(path))


def _hashes(folder: Path, names) -> dict:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def expected(model_dir, golden_raw, tmp_path_factory) -> dict:
    """Segmentations of the unpatched predictor."""
    out = tmp_path_factory.mktemp('ts_expected')
    _predictor(model_dir).predict_from_files(
        [[str(golden_raw(DS) / 'imagesTs' / f'{c}_0000.png')] for c in CASES], [str(out / c) for c in CASES],
        num_processes_preprocessing=0, num_processes_segmentation_export=0)
    return {c: _seg(out / f'{c}.png') for c in CASES}


# ----- replacement methods in the style of TotalSegmentator's runtime patches ------------------------------------
def _patched_predict_from_files(self, list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                                save_probabilities=False, overwrite=True, num_processes_preprocessing=3,
                                num_processes_segmentation_export=3, folder_with_segs_from_prev_stage=None,
                                num_parts=1, part_id=0):
    out = output_folder_or_list_of_truncated_output_files
    folder = out if isinstance(out, str) else None
    if folder is not None:
        arguments = {k: v for k, v in locals().items() if k in inspect.signature(self.predict_from_files).parameters}
        arguments = prd.deepcopy(arguments)
        prd.recursive_fix_for_json_export(arguments)
        prd.maybe_mkdir_p(folder)
        prd.save_json(arguments, prd.join(folder, 'predict_from_raw_data_args.json'))
        prd.save_json(self.dataset_json, prd.join(folder, 'dataset.json'), sort_keys=False)
        prd.save_json(self.plans_manager.plans, prd.join(folder, 'plans.json'), sort_keys=False)
    cases, outputs, prev = self._manage_input_and_output_lists(
        list_of_lists_or_source_folder, out, folder_with_segs_from_prev_stage, overwrite, part_id, num_parts,
        save_probabilities)
    if len(cases) == 0:
        return
    iterator = self._internal_get_data_iterator_from_lists_of_filenames(cases, prev, outputs,
                                                                         num_processes_preprocessing)
    return self.predict_from_data_iterator(iterator, save_probabilities, num_processes_segmentation_export)


def _patched_predict_from_data_iterator(self, data_iterator, save_probabilities=False,
                                        num_processes_segmentation_export=3):
    with prd.multiprocessing.get_context('spawn').Pool(num_processes_segmentation_export) as pool:
        workers = list(pool._pool)
        pending = []
        for item in data_iterator:
            while prd.check_workers_alive_and_busy(pool, workers, pending, allowed_num_queued=2):
                prd.sleep(0.1)
            logits = self.predict_logits_from_preprocessed_data(item['data']).cpu().detach().numpy()
            pending.append(pool.apply_async(prd.export_prediction_from_logits, (
                logits, item['data_properties'], self.configuration_manager, self.plans_manager, self.dataset_json,
                item['ofile'], save_probabilities)))
        results = [r.get() for r in prd.tqdm(pending, disable=True)]
    if isinstance(data_iterator, prd.MultiThreadedAugmenter):
        data_iterator._finish()
    prd.compute_gaussian.cache_clear()
    prd.empty_cache(self.device)
    return results


def _patched_predict_single_npy_array(self, input_image, image_properties, segmentation_previous_stage=None,
                                      output_file_truncated=None, save_or_return_probabilities=False):
    adapter = prd.PreprocessAdapterFromNpy([input_image], [segmentation_previous_stage], [image_properties],
                                           [output_file_truncated], self.plans_manager, self.dataset_json,
                                           self.configuration_manager, num_threads_in_multithreaded=1,
                                           verbose=self.verbose)
    item = next(adapter)
    logits = self.predict_logits_from_preprocessed_data(item['data']).cpu()
    return prd.convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, self.plans_manager, self.configuration_manager, self.label_manager, item['data_properties'],
        return_probabilities=save_or_return_probabilities)


def test_replacement_methods_predicting_into_the_input_folder(model_dir, work, expected, monkeypatch):
    monkeypatch.setattr(nnUNetPredictor, 'predict_from_files', _patched_predict_from_files)
    monkeypatch.setattr(nnUNetPredictor, 'predict_from_data_iterator', _patched_predict_from_data_iterator)
    monkeypatch.setattr(nnUNetPredictor, 'predict_single_npy_array', _patched_predict_single_npy_array)
    inputs = _hashes(work, [f'{c}_0000.png' for c in CASES])
    p = _predictor(model_dir)
    p.predict_from_files(str(work), str(work), save_probabilities=False, overwrite=True,
                         num_processes_preprocessing=1, num_processes_segmentation_export=1)
    for c in CASES:
        assert np.array_equal(_seg(work / f'{c}.png'), expected[c])
    assert _hashes(work, inputs) == inputs
    assert prd.load_json(prd.join(str(work), 'dataset.json')) == p.dataset_json

    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    image, properties = NaturalImage2DIO().read_images([str(work / f'{CASES[0]}_0000.png')])
    seg = p.predict_single_npy_array(image, properties)
    assert np.array_equal(seg[0], expected[CASES[0]])


# ----- replaced export functions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ['predict_from_raw_data', 'export_prediction', 'both'])
def test_replaced_export_functions_are_used(model_dir, work, expected, monkeypatch, where):
    calls = []
    original_export, original_convert = ep.export_prediction_from_logits, \
        ep.convert_predicted_logits_to_segmentation_with_correct_shape

    def export(*args, **kwargs):
        calls.append(('export', os.path.basename(args[5])))
        return original_export(*args, **kwargs)

    def convert(*args, **kwargs):
        calls.append(('convert',))
        return original_convert(*args, **kwargs)

    for module in ([prd, ep] if where == 'both' else [prd if where == 'predict_from_raw_data' else ep]):
        monkeypatch.setattr(module, 'export_prediction_from_logits', export)
        monkeypatch.setattr(module, 'convert_predicted_logits_to_segmentation_with_correct_shape', convert)
    p = _predictor(model_dir)
    p.predict_from_files(str(work), str(work), num_processes_preprocessing=0, num_processes_segmentation_export=0)
    # export_prediction_from_logits itself converts through export_prediction's (possibly replaced) function
    inner = [('convert',)] if where != 'predict_from_raw_data' else []
    assert calls == [c for case in CASES for c in [('export', case)] + inner]
    for c in CASES:
        assert np.array_equal(_seg(work / f'{c}.png'), expected[c])
    calls.clear()
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    image, properties = NaturalImage2DIO().read_images([str(work / f'{CASES[0]}_0000.png')])
    assert np.array_equal(p.predict_single_npy_array(image, properties)[0], expected[CASES[0]])
    assert calls == [('convert',)]


def test_a_replacement_in_the_predictor_module_wins(model_dir, work, monkeypatch):
    """Both replaced with different functions: the predictor calls the one in its own namespace (the reference
    calls its module global); setting the original back restores the home module's lookup."""
    used = []
    monkeypatch.setattr(prd, 'export_prediction_from_logits', lambda *a, **k: used.append('predictor module'))
    monkeypatch.setattr(ep, 'export_prediction_from_logits', lambda *a, **k: used.append('export module'))
    p = _predictor(model_dir)
    p.predict_from_files(str(work), str(work), num_processes_preprocessing=0, num_processes_segmentation_export=0)
    assert used == ['predictor module'] * len(CASES)
    used.clear()
    monkeypatch.undo()  # puts the original back into both modules' namespaces
    monkeypatch.setattr(ep, 'export_prediction_from_logits', lambda *a, **k: used.append('export module'))
    p.predict_from_files(str(work), str(work), num_processes_preprocessing=0, num_processes_segmentation_export=0)
    assert used == ['export module'] * len(CASES)


# ----- trainer lookup and pre-2.6 trainers --------------------------------------------------------------------------
def _old_style_trainer():
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \
        nnUNetTrainerNoMirroring

    class TSStyleTrainer_2000epochs(nnUNetTrainerNoMirroring):
        built = 0

        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     unpack_dataset: bool = True, device: torch.device = torch.device('cuda')):
            super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
            self.num_epochs = 2000

        @staticmethod
        def build_network_architecture(*args, **kwargs):
            TSStyleTrainer_2000epochs.built += 1
            return nnUNetTrainerNoMirroring.build_network_architecture(*args, **kwargs)

    return TSStyleTrainer_2000epochs


def _model_with_trainer_name(model_dir: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / 'model'
    shutil.copytree(model_dir, copy)
    checkpoint = torch.load(copy / 'fold_0' / 'checkpoint_final.pth', weights_only=False)
    checkpoint['trainer_name'] = name
    torch.save(checkpoint, copy / 'fold_0' / 'checkpoint_final.pth')
    return copy


@pytest.mark.parametrize("where", ['predict_from_raw_data', 'find_objects'])
def test_replaced_trainer_lookup_finds_a_custom_trainer(model_dir, work, expected, tmp_path, monkeypatch, where):
    trainer = _old_style_trainer()
    asked = []
    original = find_objects.recursive_find_trainer_class_by_name

    def lookup(trainer_name: str):
        asked.append(trainer_name)
        return trainer if trainer_name == trainer.__name__ else original(trainer_name)

    monkeypatch.setattr(prd if where == 'predict_from_raw_data' else find_objects,
                        'recursive_find_trainer_class_by_name', lookup)
    p = _predictor(_model_with_trainer_name(model_dir, tmp_path, trainer.__name__))
    # built twice: a *args wrapper gets the old (2.3-2.6) arguments first, as from the reference; this one hands them
    # on to a builder of the current form, which rejects them, so it is called again with the current ones
    assert asked == [trainer.__name__] and trainer.built == 2
    p.predict_from_files(str(work), str(work), num_processes_preprocessing=0, num_processes_segmentation_export=0)
    assert np.array_equal(_seg(work / f'{CASES[0]}.png'), expected[CASES[0]])
    # a lookup a client put in place is asked for the base trainer too (ours skips it: nothing to look up)
    _predictor(_model_with_trainer_name(model_dir, tmp_path / 'base', 'nnUNetTrainer'))
    assert asked[-1] == 'nnUNetTrainer'


def test_pre_26_trainer_constructor(model_dir):
    from nnunetv2.file_io import load_json
    trainer = _old_style_trainer()
    plans, dataset_json = load_json(str(model_dir / 'plans.json')), load_json(str(model_dir / 'dataset.json'))
    t = trainer(plans, '2d', 0, dataset_json, True, torch.device('cpu'))  # unpack_dataset passed positionally
    assert t.device == torch.device('cpu') and t.num_epochs == 2000 and t.fold == 0
    assert t.configuration_manager.patch_size == plans['configurations']['2d']['patch_size']


# ----- the pre-2.2 constructor keyword ------------------------------------------------------------------------------
def test_perform_everything_on_gpu_keyword(model_dir, work, expected):
    # TotalSegmentator passes perform_everything_on_gpu wherever the constructor has that parameter
    assert 'perform_everything_on_gpu' in inspect.signature(nnUNetPredictor).parameters
    p = _predictor(model_dir, perform_everything_on_gpu=True)
    assert p.perform_everything_on_device is False  # CPU: nothing to keep on a device
    p.predict_from_files(str(work), str(work), num_processes_preprocessing=0, num_processes_segmentation_export=0)
    assert np.array_equal(_seg(work / f'{CASES[0]}.png'), expected[CASES[0]])
