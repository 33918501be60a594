"""TotalSpineSeg's ways of using nnU-Net (neuropoly/totalspineseg, read from its public source at the main-branch
commits the index holds: ``totalspineseg/inference.py`` 0274d3a, ``utils/predict_nnunet.py`` 02ed7a5,
``utils/install_weights.py`` 0a76c14, ``utils/extract_soft.py`` 2b3bc9e, ``trainer/nnUNetTrainerDAExt.py`` 0650b3b,
``models/nnUNetTrainerDAExt.py`` dcbad56, ``trainer/nnUNetTrainerDA5Custom.py`` 5285242, ``scripts/train.sh``
3cecd2e, ``scripts/train_nnunet.sh`` 01b32a4; no client code here, every call below is written by us in its shape).

Inference (two nnU-Net models in a row, both region-based 3d_fullres, fold 0):

* installs each release zip with ``subprocess.run(['nnUNetv2_install_pretrained_model_from_zip', zip])`` after putting
  ``nnUNet_results=<data>/nnUNet/results/<release>`` into ``os.environ``; the zips are ``nnUNetv2_export_model_to_zip``
  output to which its training script appended ``fold_0/test/summary.json``, ``dataset.txt`` and
  ``splits_final.json``; it only checks that ``<results>/<Dataset>`` is a folder afterwards;
* finds the model folder with ``next((results / dataset).glob('*/fold_*')).parent.name.split('__')`` (trainer, plans,
  configuration) and uses ``checkpoint_final.pth`` if fold_0 has it, else ``checkpoint_best.pth``;
* its trainers turn mirroring off (``inference_allowed_mirroring_axes = None`` in the checkpoint) while inference
  keeps ``use_mirroring=True``: the predictor must then simply not mirror;
* ``nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, perform_everything_on_device=True,
  device=torch.device(...), verbose=False, verbose_preprocessing=False, allow_tqdm=...)``,
  ``initialize_from_trained_model_folder(<pathlib.Path>, [0], checkpoint_name=...)`` (folds from the string ``'0'``),
  ``predict_from_files(str(in_dir), str(out_dir), save_probabilities=True/False, overwrite=True,
  num_processes_preprocessing=n, num_processes_segmentation_export=n, folder_with_segs_from_prev_stage=None,
  num_parts=1, part_id=0)`` with n >= 1; afterwards it deletes ``dataset.json``, ``plans.json``,
  ``predict_from_raw_data_args.json`` and the ``.pkl`` files, and reads ``np.load(npz)['probabilities'][label - 1]``
  transposed (2, 1, 0) onto the nibabel grid of the segmentation (region channels, no background channel, in the
  order of ``regions_class_order``);
* step 2 takes two channels, the image and a label map (``channel_names`` ``{"0": "MRI", "1": "noNorm"}``);
* the environment variables ``nnUNet_raw/preprocessed/results`` are set to relative dummies before the import.

Training (shell scripts): ``nnUNetv2_extract_fingerprint -d D -np N --verify_dataset_integrity``,
``nnUNetv2_plan_experiment -d D -pl nnUNetPlannerResEncL -overwrite_plans_name nnUNetPlans`` (older:
``nnUNetv2_plan_and_preprocess -d D -pl ExperimentPlanner -c 3d_fullres -npfp N -np N --verify_dataset_integrity``
followed by a ``jq`` edit of ``configurations["3d_fullres"].patch_size`` in the plans), ``nnUNetv2_preprocess -d D
-plans_name nnUNetPlans -c 3d_fullres -np N``, always ``nnUNetv2_train D 3d_fullres F -tr T -p P --c`` (also on the
first run and after the training has finished), ``nnUNetv2_evaluate_folder labelsTs pred -djfile model/dataset.json
-pfile model/plans.json -np N`` (summary.json lands in the prediction folder), ``nnUNet_def_n_proc`` /
``nnUNet_n_proc_DA``. Its trainers are copied into ``nnunetv2.__path__[0]/training/nnUNetTrainer`` so that
``nnUNetv2_train -tr`` and the predictor find them by name (that lookup of a dropped-in module is covered by
tests/run/test_custom_trainer.py; here the module sits in an ``nnUNet_extTrainer`` folder, which the reference
searches as well, so the package stays untouched). They keep the 2.6+ constructor and set
``num_epochs``/``save_every``; override ``get_dataloaders`` (``infer_dataset_class``, ``nnUNetDataLoader(...)`` with
keywords, ``get_allowed_n_proc_DA``, ``SingleThreadedAugmenter``/``NonDetMultiThreadedAugmenter``), the static
``get_training_transforms`` (with an extra ``retain_stats`` keyword) and ``get_validation_transforms``,
``configure_rotation_dummyDA_mirroring_and_inital_patch_size`` (mirroring off), ``train_step`` and
``validation_step`` (tp/fp/fn through ``get_tp_fp_fn_tn``); one copies a json into ``self.output_folder`` in its
``__init__``; one subclasses ``nnUNetTrainerDA5`` and imports the pre-2.6 batchgenerators-based helpers
(``custom_transforms.*``, ``DownsampleSegForDSTransform2``, ``get_patch_size``, ``ANISO_THRESHOLD``). Models: the
reference-trained Dataset902 (regions, two channels; skipped without ../shared) and a tiny dataset planned,
preprocessed and trained here (its network and batch shrunk in the plans for speed).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from _inference_golden import compare_case  # tests/inference (put on sys.path by conftest.py)

DS = 'Dataset902_SynthMRRegions'
MODEL = 'nnUNetTrainer_5epochs__nnUNetPlansTiny__3d_fullres'
RELEASE = 'r20250101'
CASE = 'mr_008'


# ----- installing a release zip and finding the model in it ------------------------------------------------------
@pytest.fixture(scope='module')
def release_zip(shared_dir, tmp_path_factory) -> Path:
    """The reference export of Dataset902 with the files TotalSpineSeg's training script appends to its zips."""
    exported = next((shared_dir / 'reference' / 'models' / DS).glob('*.zip'))
    out = tmp_path_factory.mktemp('exports') / f'{DS}_{RELEASE}.zip'
    shutil.copy(exported, out)
    with zipfile.ZipFile(out, 'a') as z:
        z.writestr(f'{DS}/{MODEL}/fold_0/test/summary.json', json.dumps({'foreground_mean': {'Dice': 0.97}}))
        z.writestr(f'{DS}/dataset.txt', 'imagesTr/:\nmr_000_0000.nii.gz\n')
        z.writestr(f'{DS}/splits_final.json', json.dumps([{'train': ['mr_000'], 'val': ['mr_003']}]))
    return out


@pytest.fixture(scope='module')
def installed(release_zip, tmp_path_factory) -> Path:
    """<data>/nnUNet/results/<release>, filled by the console command as TotalSpineSeg runs it."""
    results = tmp_path_factory.mktemp('tss_data') / 'nnUNet' / 'results' / RELEASE
    results.mkdir(parents=True)
    command = shutil.which('nnUNetv2_install_pretrained_model_from_zip')  # TotalSpineSeg runs it by name
    assert command, 'console script nnUNetv2_install_pretrained_model_from_zip is not installed (pip install -e .)'
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('nnUNet_results', str(results))  # os.environ, inherited by the command
        done = subprocess.run([command, str(release_zip)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return results


def _model_folder(results: Path, dataset: str):
    """TotalSpineSeg's discovery: the first <trainer>__<plans>__<configuration> folder that has a fold_* in it."""
    fold_dir = next((results / dataset).glob('*/fold_*'))
    trainer, plans, configuration = fold_dir.parent.name.split('__')
    folder = results / dataset / f'{trainer}__{plans}__{configuration}'
    checkpoint = 'checkpoint_final.pth' if (folder / 'fold_0' / 'checkpoint_final.pth').is_file() \
        else 'checkpoint_best.pth'
    return folder, (trainer, plans, configuration), checkpoint


def test_release_zip_installed_with_the_extra_members(installed):
    assert (installed / DS).is_dir()
    folder, parts, checkpoint = _model_folder(installed, DS)
    assert parts == ('nnUNetTrainer_5epochs', 'nnUNetPlansTiny', '3d_fullres')
    assert checkpoint == 'checkpoint_final.pth'
    for name in ('plans.json', 'dataset.json', 'fold_0/checkpoint_final.pth', 'fold_0/test/summary.json'):
        assert (folder / name).is_file(), name
    assert (installed / DS / 'dataset.txt').read_text().startswith('imagesTr/')
    assert json.loads((installed / DS / 'splits_final.json').read_text())[0]['val'] == ['mr_003']


# ----- step 1: prediction with probabilities from a model trained without mirroring --------------------------------
@pytest.fixture(scope='module')
def tss_model(installed, tmp_path_factory) -> Path:
    """The installed model as TotalSpineSeg's trainers leave it: no mirroring axes stored, and (training stopped
    early) only checkpoint_best.pth."""
    results = tmp_path_factory.mktemp('tss_results')
    shutil.copytree(installed / DS, results / DS)
    fold = results / DS / MODEL / 'fold_0'
    ckpt = torch.load(fold / 'checkpoint_final.pth', map_location='cpu', weights_only=False)
    assert tuple(ckpt['inference_allowed_mirroring_axes']) == (0, 1, 2)
    ckpt['inference_allowed_mirroring_axes'] = None
    torch.save(ckpt, fold / 'checkpoint_best.pth')
    (fold / 'checkpoint_final.pth').unlink()
    return results


@pytest.fixture(scope='module')
def step1(tss_model, golden_raw, tmp_path_factory):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    work = tmp_path_factory.mktemp('tss_run')
    (work / 'input').mkdir()
    for c in ('0000', '0001'):
        shutil.copy(golden_raw(DS) / 'imagesTs' / f'{CASE}_{c}.nii.gz', work / 'input')
    folder, _, checkpoint = _model_folder(tss_model, DS)
    assert checkpoint == 'checkpoint_best.pth'
    folds = [i if i == 'all' else int(i) for i in str(0)]
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=True, device=torch.device('cpu'), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(folder, folds, checkpoint_name=checkpoint)  # a pathlib.Path
    out = work / 'step1_raw'
    out.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files(str(work / 'input'), str(out), save_probabilities=True, overwrite=True,
                                 num_processes_preprocessing=1, num_processes_segmentation_export=1,
                                 folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)
    return predictor, folder, out


def test_no_stored_mirroring_axes_means_no_mirroring(step1, shared_dir):
    predictor, _, out = step1
    assert predictor.use_mirroring is True and predictor.allowed_mirroring_axes is None
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f'{CASE}.nii.gz', f'{CASE}.npz', f'{CASE}.pkl', 'dataset.json', 'plans.json',
         'predict_from_raw_data_args.json'])
    # use_mirroring=True with no axes in the checkpoint = the reference's --disable_tta output
    compare_case(out, shared_dir / 'reference' / 'models' / DS / 'predictions' / 'disable_tta', CASE, '.nii.gz')


def test_soft_segmentation_read_the_totalspineseg_way(step1):
    import nibabel as nib
    predictor, _, out = step1
    seg = np.asanyarray(nib.load(out / f'{CASE}.nii.gz').dataobj).round().astype(np.uint8)
    probabilities = np.load(out / f'{CASE}.npz')['probabilities']
    assert probabilities.shape[0] == len(predictor.label_manager.foreground_regions) == 3  # no background channel
    for label in (1, 2, 3):  # regions_class_order [1, 2, 3]: channel label - 1 is the region that paints `label`
        soft = np.transpose(probabilities[label - 1], axes=(2, 1, 0))
        assert soft.shape == seg.shape and soft.dtype == np.float32
        later = [np.transpose(probabilities[k - 1], axes=(2, 1, 0)) > 0.5 for k in range(label + 1, 4)]
        painted = (soft > 0.5) & ~np.any(later, axis=0) if later else soft > 0.5
        np.testing.assert_array_equal(seg == label, painted)
    assert int((seg == 3).sum()) > 100


def test_evaluate_folder_with_the_model_json_files(step1, golden_raw, shared_dir, tmp_path, monkeypatch):
    from nnunetv2.evaluation.evaluate_predictions import evaluate_folder_entry_point
    _, folder, predicted = step1
    labels, out = tmp_path / 'labelsTs', tmp_path / 'fold_0' / 'test'
    labels.mkdir()
    out.mkdir(parents=True)
    shutil.copy(golden_raw(DS) / 'labelsTs' / f'{CASE}.nii.gz', labels)
    shutil.copy(predicted / f'{CASE}.nii.gz', out)
    monkeypatch.setattr(sys, 'argv', ['nnUNetv2_evaluate_folder', str(labels), str(out), '-djfile',
                                      str(folder / 'dataset.json'), '-pfile', str(folder / 'plans.json'), '-np', '1'])
    evaluate_folder_entry_point()
    summary = json.loads((out / 'summary.json').read_text())  # next to the predictions, where the script zips it
    golden = json.loads((shared_dir / 'reference' / 'models' / DS / 'test_summary_disable_tta.json').read_text())
    expected = next(c['metrics'] for c in golden['metric_per_case'] if c['reference_file'].endswith(f'{CASE}.nii.gz'))
    got = summary['metric_per_case'][0]['metrics']
    assert sorted(got) == sorted(expected) == ['(1, 2, 3)', '(2, 3)', '(3,)']
    for region, metrics in expected.items():
        for key in ('TP', 'FP', 'FN', 'TN', 'n_pred', 'n_ref'):
            assert got[region][key] == metrics[key], (region, key)
        assert abs(got[region]['Dice'] - metrics['Dice']) < 1e-12


def test_get_output_folder_from_a_dataset_number_string(golden_model_dir):
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    model = golden_model_dir(DS)
    assert Path(get_output_folder('902', 'nnUNetTrainer_5epochs', 'nnUNetPlansTiny', '3d_fullres')) == model


def test_relative_dummy_paths_set_before_import(monkeypatch):
    import nnunetv2.paths as paths
    for name in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results'):
        monkeypatch.setenv(name, f'./{name}')
        assert os.fspath(getattr(paths, name)) == f'./{name}'


# ----- what its trainer modules import -----------------------------------------------------------------------------
TRAINER_IMPORTS = {
    'nnunetv2.configuration': ['ANISO_THRESHOLD'],
    'nnunetv2.training.data_augmentation.compute_initial_patch_size': ['get_patch_size'],
    'nnunetv2.training.data_augmentation.custom_transforms.cascade_transforms': [
        'MoveSegAsOneHotToData', 'ApplyRandomBinaryOperatorTransform',
        'RemoveRandomConnectedComponentFromOneHotEncodingTransform'],
    'nnunetv2.training.data_augmentation.custom_transforms.deep_supervision_donwsampling': [
        'DownsampleSegForDSTransform2'],
    'nnunetv2.training.data_augmentation.custom_transforms.masking': ['MaskTransform'],
    'nnunetv2.training.data_augmentation.custom_transforms.region_based_training': [
        'ConvertSegmentationToRegionsTransform'],
    'nnunetv2.training.data_augmentation.custom_transforms.transforms_for_dummy_2d': [
        'Convert3DTo2DTransform', 'Convert2DTo3DTransform'],
    'nnunetv2.training.dataloading.data_loader': ['nnUNetDataLoader'],
    'nnunetv2.training.dataloading.nnunet_dataset': ['infer_dataset_class'],
    'nnunetv2.training.loss.dice': ['get_tp_fp_fn_tn'],
    'nnunetv2.training.nnUNetTrainer.nnUNetTrainer': ['nnUNetTrainer'],
    'nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5': ['nnUNetTrainerDA5'],
    'nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDAOrd0': [
        'nnUNetTrainer_DASegOrd0_NoMirroring'],
    'nnunetv2.utilities.default_n_proc_DA': ['get_allowed_n_proc_DA'],
    'nnunetv2.utilities.helpers': ['dummy_context'],
}


@pytest.mark.parametrize('module_name', sorted(TRAINER_IMPORTS))
def test_names_its_trainer_modules_import(module_name):
    import importlib
    module = importlib.import_module(module_name)
    assert [n for n in TRAINER_IMPORTS[module_name] if not hasattr(module, n)] == []


def test_trainer_bases_and_constants():
    from nnunetv2.configuration import ANISO_THRESHOLD
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDAOrd0 import \
        nnUNetTrainer_DASegOrd0_NoMirroring
    from nnunetv2.utilities.helpers import dummy_context
    assert ANISO_THRESHOLD == 3
    assert issubclass(nnUNetTrainerDA5, nnUNetTrainer)
    assert issubclass(nnUNetTrainer_DASegOrd0_NoMirroring, nnUNetTrainer)
    with dummy_context():  # the CPU branch of its train_step / validation_step
        assert torch.is_grad_enabled()


# ----- labels and --c ----------------------------------------------------------------------------------------------
def test_step1_region_labels():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    labels = {'background': 0, 'disc': [1, 2, 3, 4, 5], 'disc_C2_C3': 2, 'disc_C7_T1': 3, 'disc_T12_L1': 4,
              'disc_L5_S': 5, 'vertebrae': [6, 7], 'vertebrae_C1': 7, 'canal': [8, 9], 'cord': 9}
    lm = LabelManager(labels, regions_class_order=list(range(1, 10)))
    assert lm.has_regions and lm.num_segmentation_heads == 9
    assert [tuple(np.atleast_1d(r).tolist()) for r in lm.foreground_regions] == \
        [(1, 2, 3, 4, 5), (2,), (3,), (4,), (5,), (6, 7), (7,), (8, 9), (9,)]
    # one voxel per label with its region and the enclosing ones on: the segmentation gives back the label
    parents = {1: [1], 2: [1, 2], 3: [1, 3], 4: [1, 4], 5: [1, 5], 6: [6], 7: [6, 7], 8: [8], 9: [8, 9]}
    probabilities = torch.full((9, 1, 1, 10), 0.1)
    for label, channels in parents.items():
        for c in channels:
            probabilities[c - 1, 0, 0, label] = 0.9
    assert lm.convert_probabilities_to_segmentation(probabilities).ravel().tolist() == list(range(10))


def test_continue_flag_picks_the_newest_checkpoint_or_starts_fresh(tmp_path):
    from nnunetv2.run.run_training import maybe_load_checkpoint

    class Trainer:  # what maybe_load_checkpoint reads of a trainer for --c
        output_folder = str(tmp_path)
        loaded = None

        def load_checkpoint(self, filename):
            self.loaded = os.path.basename(filename)

    t, printed = Trainer(), io.StringIO()
    with redirect_stdout(printed):
        maybe_load_checkpoint(t, True, False)
    assert t.loaded is None and 'Starting a new training' in printed.getvalue()
    for name in ('checkpoint_best.pth', 'checkpoint_latest.pth', 'checkpoint_final.pth'):
        (tmp_path / name).write_bytes(b'')
        t = Trainer()
        maybe_load_checkpoint(t, True, False)
        assert t.loaded == name


# ----- training scripts: plan with ResEncL under the default plans name, edit the patch size, train --c ----------
DATASET_ID = 777
DATASET = 'Dataset777_TSSStep2Like'
STEP2_LABELS = {'background': 0, 'disc': [1, 2], 'disc_C2_C3': 2, 'vertebrae': [3, 4], 'vertebrae_C2': 4,
                'canal': [5, 6], 'cord': 6}


def _write_step2_like_dataset(raw: Path) -> None:
    """Five training cases and one test case: an MR-like image and a label map (noNorm) per case, nested regions."""
    import SimpleITK as sitk
    ds = raw / DATASET
    for sub in ('imagesTr', 'labelsTr', 'imagesTs'):
        (ds / sub).mkdir(parents=True)
    rng = np.random.RandomState(7)
    shape = (16, 20, 24)

    def write(arr, path, dtype):
        image = sitk.GetImageFromArray(arr.astype(dtype))
        image.SetSpacing((1.0, 1.0, 1.0))
        sitk.WriteImage(image, str(path))

    for i in range(6):
        seg = np.zeros(shape, np.uint8)
        z = 3 + i % 3
        seg[z:z + 3, 6:14, 8:16] = 1
        seg[z + 1, 8:12, 10:14] = 2
        seg[z + 5:z + 9, 5:15, 7:17] = 3
        seg[z + 6:z + 8, 7:12, 9:14] = 4
        seg[:, 15:19, 10:14] = 5
        seg[:, 16:18, 11:13] = 6
        image = rng.normal(100, 10, shape) + 80 * (seg > 0) + 30 * (seg % 2)
        odd_discs = np.select([seg == 1, seg == 2], [63, 65], 0)
        folder, name = ('imagesTr', f'tss_{i:03d}') if i < 5 else ('imagesTs', f'tss_{i:03d}')
        write(image, ds / folder / f'{name}_0000.nii.gz', np.float32)
        write(odd_discs, ds / folder / f'{name}_0001.nii.gz', np.uint8)
        if i < 5:
            write(seg, ds / 'labelsTr' / f'{name}.nii.gz', np.uint8)
    (ds / 'dataset.json').write_text(json.dumps({
        'channel_names': {'0': 'MRI', '1': 'noNorm'}, 'labels': STEP2_LABELS,
        'regions_class_order': [1, 2, 3, 4, 5, 6], 'numTraining': 5, 'file_ending': '.nii.gz'}))


def _command(monkeypatch, entry, argv):
    monkeypatch.setattr(sys, 'argv', argv)
    entry()


NNUNET_DIRS = ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results')


@pytest.fixture(scope='module')
def step2_dataset(tmp_path_factory) -> dict:
    """Dataset777 planned and preprocessed by the training script's commands (once for the module)."""
    from nnunetv2.experiment_planning import plan_and_preprocess_entrypoints as ep
    base = tmp_path_factory.mktemp('tss_step2')
    dirs = {name: base / name for name in NNUNET_DIRS}
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in dirs.items():
            folder.mkdir()
            mp.setenv(name, str(folder))
        mp.setenv('nnUNet_def_n_proc', '1')
        mp.setenv('nnUNet_n_proc_DA', '1')  # the scripts' value is >= 1 (the reference's planner needs that)
        _write_step2_like_dataset(dirs['nnUNet_raw'])
        d = str(DATASET_ID)
        _command(mp, ep.extract_fingerprint_entry,
                 ['nnUNetv2_extract_fingerprint', '-d', d, '-np', '1', '--verify_dataset_integrity'])
        _command(mp, ep.plan_experiment_entry,
                 ['nnUNetv2_plan_experiment', '-d', d, '-pl', 'nnUNetPlannerResEncL', '-overwrite_plans_name',
                  'nnUNetPlans'])
        plans_file = dirs['nnUNet_preprocessed'] / DATASET / 'nnUNetPlans.json'
        planned = json.loads(plans_file.read_text())
        plans = json.loads(plans_file.read_text())
        fullres = plans['configurations']['3d_fullres']
        fullres['patch_size'] = [16, 16, 16]  # the scripts' jq edit
        # and, for this test's speed only, a lighter network and batch
        fullres['batch_size'] = 2
        fullres['architecture']['arch_kwargs'].update(features_per_stage=[8, 16, 32], n_blocks_per_stage=[1, 1, 1])
        plans_file.write_text(json.dumps(plans, indent=4))
        _command(mp, ep.preprocess_entry,
                 ['nnUNetv2_preprocess', '-d', d, '-plans_name', 'nnUNetPlans', '-c', '3d_fullres', '-np', '1'])
    return {'dirs': dirs, 'planned_plans': planned}


@pytest.fixture
def planned(step2_dataset, monkeypatch) -> dict:
    for name, folder in step2_dataset['dirs'].items():
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv('nnUNet_def_n_proc', '1')
    monkeypatch.setenv('nnUNet_n_proc_DA', '0')  # augmentation in this process: the trainer's SingleThreadedAugmenter
    return step2_dataset['dirs']


def test_step2_like_dataset_planned_and_preprocessed(step2_dataset):
    import blosc2
    plans = step2_dataset['planned_plans']
    fullres = plans['configurations']['3d_fullres']
    assert plans['plans_name'] == 'nnUNetPlans' and plans['experiment_planner_used'] == 'nnUNetPlannerResEncL'
    assert fullres['data_identifier'] == 'nnUNetPlans_3d_fullres'  # the folder name the script checks
    assert fullres['architecture']['network_class_name'].endswith('ResidualEncoderUNet')
    assert fullres['normalization_schemes'] == ['ZScoreNormalization', 'NoNormalization']
    assert fullres['use_mask_for_norm'] == [False, False] and fullres['patch_size'] == [16, 20, 24]
    data_folder = step2_dataset['dirs']['nnUNet_preprocessed'] / DATASET / 'nnUNetPlans_3d_fullres'
    assert len(list(data_folder.glob('*.pkl'))) == 5 and not list(data_folder.glob('*.npz'))
    # the label-map channel (noNorm) keeps its values; the image channel is z-scored
    case = blosc2.open(str(data_folder / 'tss_000.b2nd'))[:]
    assert sorted(np.unique(case[1]).tolist()) == [0.0, 63.0, 65.0]
    assert abs(float(case[0].mean())) < 1e-4 and abs(float(case[0].std()) - 1) < 1e-4


TRAINER = 'TSSLikeTrainer_2it'
TRAINER_MODULE = '''
import json
import os
import shutil

import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.helpers import dummy_context


def record(key, value):
    with open(os.environ['TSS_TEST_RECORD'], 'a') as f:
        f.write(json.dumps([key, value]) + '\\n')


class TSSLikeTrainer_2it(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 10
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
        json_path = os.environ['TSS_TEST_TRANSFORMS_JSON']
        shutil.copy(json_path, os.path.join(self.output_folder, 'transform_params_used_for_training.json'))

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = \\
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None

    def get_dataloaders(self):
        record('get_dataloaders', self.dataset_class is None)
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        ds_scales = self._get_deep_supervision_scales()
        rotation, dummy_2d, initial_patch_size, mirror_axes = \\
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        lm = self.label_manager
        tr_transforms = self.get_training_transforms(
            patch_size, rotation, ds_scales, mirror_axes, dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded,
            foreground_labels=lm.foreground_labels, regions=lm.foreground_regions if lm.has_regions else None,
            ignore_label=lm.ignore_label)
        val_transforms = self.get_validation_transforms(
            ds_scales, is_cascaded=self.is_cascaded, foreground_labels=lm.foreground_labels,
            regions=lm.foreground_regions if lm.has_regions else None, ignore_label=lm.ignore_label)
        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        dl_tr = nnUNetDataLoader(dataset_tr, self.batch_size, initial_patch_size, patch_size, lm,
                                 oversample_foreground_percent=self.oversample_foreground_percent,
                                 sampling_probabilities=None, pad_sides=None, transforms=tr_transforms,
                                 probabilistic_oversampling=self.probabilistic_oversampling)
        dl_val = nnUNetDataLoader(dataset_val, self.batch_size, patch_size, patch_size, lm,
                                  oversample_foreground_percent=self.oversample_foreground_percent,
                                  sampling_probabilities=None, pad_sides=None, transforms=val_transforms,
                                  probabilistic_oversampling=self.probabilistic_oversampling)
        processes = get_allowed_n_proc_DA()
        if processes == 0:
            mt_train, mt_val = SingleThreadedAugmenter(dl_tr, None), SingleThreadedAugmenter(dl_val, None)
        else:
            mt_train = NonDetMultiThreadedAugmenter(data_loader=dl_tr, transform=None, num_processes=processes,
                                                    num_cached=max(6, processes // 2), seeds=None,
                                                    pin_memory=self.device.type == 'cuda', wait_time=0.002)
            mt_val = NonDetMultiThreadedAugmenter(data_loader=dl_val, transform=None,
                                                  num_processes=max(1, processes // 2),
                                                  num_cached=max(3, processes // 4), seeds=None,
                                                  pin_memory=self.device.type == 'cuda', wait_time=0.002)
        batch = next(mt_train)
        record('first_batch', [list(batch['data'].shape), list(batch['target'][0].shape)])
        _ = next(mt_val)
        return mt_train, mt_val

    @staticmethod
    def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None, retain_stats=False):
        record('training_transforms', {'mirror_axes': mirror_axes, 'retain_stats': retain_stats,
                                       'regions': [list(r) if isinstance(r, (tuple, list)) else int(r)
                                                   for r in regions]})
        transforms = [RandomTransform(GaussianBlurTransform(blur_sigma=(0.5, 1.), synchronize_channels=False,
                                                            synchronize_axes=False, p_per_channel=0.5),
                                      apply_probability=0.2),
                      SpatialTransform(patch_size, patch_center_dist_from_border=0, random_crop=False,
                                       p_elastic_deform=0, p_rotation=0.2, rotation=rotation_for_DA, p_scaling=0.2,
                                       scaling=(0.7, 1.4), p_synchronize_scaling_across_axes=1,
                                       bg_style_seg_sampling=False, mode_seg='nearest'),
                      RemoveLabelTansform(-1, 0)]
        if regions is not None:
            transforms.append(ConvertSegmentationToRegionsTransform(
                regions=list(regions) + [ignore_label] if ignore_label is not None else regions, channel_in_seg=0))
        if deep_supervision_scales is not None:
            transforms.append(DownsampleSegForDSTransform(ds_scales=deep_supervision_scales))
        return ComposeTransforms(transforms)

    def train_step(self, batch: dict) -> dict:
        record('train_step', self.grad_scaler is None)
        data = batch['data'].to(self.device, non_blocking=True)
        target = [t.to(self.device, non_blocking=True) for t in batch['target']]
        self.optimizer.zero_grad(set_to_none=True)
        with dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        self.optimizer.step()
        return {'loss': loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target = [t.to(self.device, non_blocking=True) for t in batch['target']]
        with dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)
        output, target = output[0], target[0]
        axes = [0] + list(range(2, output.ndim))
        predicted = (torch.sigmoid(output) > 0.5).long()
        tp, fp, fn, _ = get_tp_fp_fn_tn(predicted, target.bool(), axes=axes, mask=None)
        record('validation_step', [self.label_manager.has_regions, list(tp.shape)])
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp.detach().cpu().numpy(),
                'fp_hard': fp.detach().cpu().numpy(), 'fn_hard': fn.detach().cpu().numpy()}
'''


def _records(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def trainer_env(planned, tmp_path, monkeypatch):
    """The TotalSpineSeg-shaped trainer in its own module, found by name as nnUNetv2_train and the predictor look
    trainers up (TotalSpineSeg copies the module into nnunetv2/training/nnUNetTrainer; nnUNet_extTrainer, which
    the reference also searches, keeps the package untouched here)."""
    folder = tmp_path / 'tss_trainers'
    folder.mkdir()
    (folder / 'tss_like_trainer.py').write_text(TRAINER_MODULE)
    (tmp_path / 'transforms.json').write_text(json.dumps({'p_rotation': 0}))
    monkeypatch.setenv('nnUNet_extTrainer', str(folder))
    monkeypatch.setenv('TSS_TEST_TRANSFORMS_JSON', str(tmp_path / 'transforms.json'))
    monkeypatch.setenv('TSS_TEST_RECORD', str(tmp_path / 'record.jsonl'))
    # the command sets torch's thread count for its own process; keep this process's as it is
    monkeypatch.setattr(torch, 'set_num_threads', lambda n: None)
    monkeypatch.setattr(torch, 'set_num_interop_threads', lambda n: None)
    import nnunetv2.configuration
    monkeypatch.setattr(nnunetv2.configuration, 'default_num_processes', 1)
    return planned, tmp_path / 'record.jsonl'


def test_step2_like_training_with_c_then_inference(trainer_env, monkeypatch):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import run_training_entry
    dirs, record = trainer_env
    train_argv = ['nnUNetv2_train', str(DATASET_ID), '3d_fullres', '0', '-tr', TRAINER, '-p', 'nnUNetPlans', '--c',
                  '-device', 'cpu']
    printed = io.StringIO()
    with redirect_stdout(printed):
        _command(monkeypatch, run_training_entry, train_argv)  # --c on the first run: a new training
    assert 'Starting a new training' in printed.getvalue()
    calls = _records(record)
    names = [k for k, _ in calls]
    assert names.count('get_dataloaders') == 1 and names.count('train_step') == 2
    assert names.count('validation_step') == 1 and names.count('training_transforms') == 1
    values = dict(calls)
    assert values['training_transforms'] == {'mirror_axes': None, 'retain_stats': False,
                                             'regions': [[1, 2], 2, [3, 4], 4, [5, 6], 6]}
    assert values['train_step'] is True  # no grad scaler on the CPU
    assert values['validation_step'] == [True, [6]]  # tp per region
    plans = json.loads((dirs['nnUNet_preprocessed'] / DATASET / 'nnUNetPlans.json').read_text())
    batch_size = plans['configurations']['3d_fullres']['batch_size']
    assert values['first_batch'] == [[batch_size, 2, 16, 16, 16], [batch_size, 6, 16, 16, 16]]  # edited patch size

    model = dirs['nnUNet_results'] / DATASET / f'{TRAINER}__nnUNetPlans__3d_fullres'
    fold = model / 'fold_0'
    assert json.loads((fold / 'transform_params_used_for_training.json').read_text()) == {'p_rotation': 0}
    final = torch.load(fold / 'checkpoint_final.pth', map_location='cpu', weights_only=False)
    assert final['inference_allowed_mirroring_axes'] is None and final['trainer_name'] == TRAINER
    assert final['current_epoch'] == 1
    assert (fold / 'validation' / 'summary.json').is_file()

    # the script runs again with --c after the training has finished: nothing more is trained
    record.unlink()
    _command(monkeypatch, run_training_entry, train_argv)
    assert 'train_step' not in [k for k, _ in _records(record)]
    rerun = torch.load(fold / 'checkpoint_final.pth', map_location='cpu', weights_only=False)
    assert rerun['current_epoch'] == 1
    assert all(torch.equal(v, final['network_weights'][k]) for k, v in rerun['network_weights'].items())

    # step 2 inference on the image + label-map pair: mirroring requested, none stored
    out = dirs['nnUNet_results'] / 'step2_raw'
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=True, device=torch.device('cpu'), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model, [0], checkpoint_name='checkpoint_final.pth')
    assert predictor.allowed_mirroring_axes is None and predictor.trainer_name == TRAINER
    predictor.predict_from_files(str(dirs['nnUNet_raw'] / DATASET / 'imagesTs'), str(out), save_probabilities=False,
                                 overwrite=True, num_processes_preprocessing=1, num_processes_segmentation_export=1,
                                 folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)
    import SimpleITK as sitk
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / 'tss_005.nii.gz')))
    assert seg.shape == (16, 20, 24) and seg.dtype == np.uint8 and set(np.unique(seg).tolist()) <= set(range(7))
    assert not (out / 'tss_005.npz').exists()
