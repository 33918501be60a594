"""Ensembling: probability averaging, merged segmentations, errors, and the reference's golden predictions."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.ensembling.ensemble import average_probabilities, ensemble_folders, entry_point_ensemble_folders

PLANS = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "configurations": {}, "transpose_forward": [0, 1, 2],
         "transpose_backward": [0, 1, 2]}
DATASET_JSON = {'channel_names': {'0': 'CT'}, 'labels': {'background': 0, 'a': 1, 'b': 2}, 'numTraining': 1,
                'file_ending': '.nii.gz'}
PROPS = {'sitk_stuff': {'spacing': (1.0, 1.0, 2.0), 'origin': (0.0, 0.0, 0.0),
                        'direction': (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, 'spacing': [2.0, 1.0, 1.0]}


def _prediction_folder(folder, seed, cases=('c0', 'c1'), dtype=np.float32):
    os.makedirs(folder)
    rs = np.random.RandomState(seed)
    for c in cases:
        p = rs.rand(3, 4, 5, 6).astype(dtype)
        p /= p.sum(0, keepdims=True)
        np.savez_compressed(os.path.join(folder, f'{c}.npz'), probabilities=p)
        with open(os.path.join(folder, f'{c}.pkl'), 'wb') as f:
            pickle.dump(PROPS, f)
    with open(os.path.join(folder, 'plans.json'), 'w') as f:
        json.dump(PLANS, f)
    with open(os.path.join(folder, 'dataset.json'), 'w') as f:
        json.dump(DATASET_JSON, f)


def test_average_and_merge(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    _prediction_folder(a, 0)
    _prediction_folder(b, 1, dtype=np.float16)
    pa = np.load(os.path.join(a, 'c0.npz'))['probabilities']
    pb = np.load(os.path.join(b, 'c0.npz'))['probabilities']
    avg = average_probabilities([os.path.join(a, 'c0.npz'), os.path.join(b, 'c0.npz')])
    assert avg.dtype == np.float32
    expected = pa.copy()
    expected += pb
    expected /= 2
    assert np.array_equal(avg, expected)
    out = tmp_path / 'out'
    ensemble_folders([a, b], str(out), save_merged_probabilities=True, num_processes=1)
    assert sorted(os.listdir(out)) == ['.nnUNetv2_ensemble.json', 'c0.nii.gz', 'c0.npz', 'c0.pkl', 'c1.nii.gz',
                                       'c1.npz', 'c1.pkl', 'dataset.json']  # no plans.json, like the reference;
    # the hidden marker lets a later run replace these files (and only these)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / 'c0.nii.gz')))
    assert np.array_equal(seg, expected.argmax(0)) and seg.dtype == np.uint8
    assert np.array_equal(np.load(out / 'c0.npz')['probabilities'], expected)
    assert json.loads((out / 'dataset.json').read_text()) == DATASET_JSON


def test_errors(tmp_path, monkeypatch, capsys):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    _prediction_folder(a, 0)
    _prediction_folder(b, 1, cases=('c0', 'c2'))
    with pytest.raises(UserError, match=r'do not contain the same cases.*lacks c2.npz'):
        ensemble_folders([a, b], str(tmp_path / 'out'), num_processes=1)
    with pytest.raises(UserError, match='does not exist'):
        ensemble_folders([a, str(tmp_path / 'nope')], str(tmp_path / 'out'), num_processes=1)
    os.remove(os.path.join(b, 'c2.npz'))
    os.rename(os.path.join(b, 'c0.npz'), os.path.join(b, 'c1.npz'))
    np.savez_compressed(os.path.join(b, 'c0.npz'), probabilities=np.zeros((3, 2, 2, 2), np.float32))
    with pytest.raises(UserError, match='shape'):
        ensemble_folders([a, b], str(tmp_path / 'out'), num_processes=1)
    monkeypatch.setattr(sys, 'argv', ['x', '-i', a, str(tmp_path / 'empty'), '-o', str(tmp_path / 'o'), '-np', '1'])
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(SystemExit) as e:
        entry_point_ensemble_folders()
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith('nnU-Net error:') and len(err.strip().splitlines()) == 1


# sha256 of the decoded arrays the reference wrote for ensemble_folders([default, disable_tta], save npz)
GOLDEN = {
    'Dataset902_SynthMRRegions/mr_008.npz': 'ee53aef15a60e7460d4765866e2f9b07cef2a695af9b34ee5dd6425edc302967',
    'Dataset902_SynthMRRegions/mr_009.npz': '941f71285b91ef548699a24f9c9553d4a8607a1eca8251a4246c806deb424cec',
    'Dataset903_SynthNatural2D/nat_012.npz': '9262bf790958dfe6b4072cb20e09bd464c4b92e31ff260ee60196d303a600adc',
    'Dataset903_SynthNatural2D/nat_013.npz': '5940aec36f9d653063bc015df7ce0d7fa8e81b199dcd5d54adb0bafde8bd3dc8',
    'Dataset903_SynthNatural2D/nat_014.npz': 'da2e4cdafe0417ef02f62ce009a65958b4319b3caf718f7054d85718999661ba',
    'Dataset902_SynthMRRegions/mr_008.nii.gz': 'e13a35933dd74164faec046ddf9b7258f57d2cd187e3ea42bc625124cf9c352d',
    'Dataset902_SynthMRRegions/mr_009.nii.gz': '74f7b60d6dad39f10891cad5e2a119a1c1bc1ee47d963276f83521ec2ff42488',
    'Dataset903_SynthNatural2D/nat_012.png': '2a6ca1869a1af4b2e5410f383e3ecce632a0c0feb95266e528a841a5a535c436',
    'Dataset903_SynthNatural2D/nat_013.png': '5b7d2c787d597fa1ca6706a10173dbfb5209e7d3f93027dc79e54cf17f36b22c',
    'Dataset903_SynthNatural2D/nat_014.png': '1b7990b1a9057b365b9373ddb636ccabd8bcb8e782b2e7edb0e71f49280012a1',
}


@pytest.mark.parametrize('dataset', ['Dataset902_SynthMRRegions', 'Dataset903_SynthNatural2D'])
def test_golden_predictions_ensemble_like_reference(tmp_path, shared_dir, golden_raw, dataset):
    models = shared_dir / 'reference' / 'models' / dataset
    out = tmp_path / dataset
    ensemble_folders([str(models / 'predictions' / 'default'), str(models / 'predictions' / 'disable_tta')], str(out),
                     True, 1, str(golden_raw(dataset) / 'dataset.json'), str(models / 'nnUNetPlansTiny.json'))
    for key, digest in GOLDEN.items():
        if not key.startswith(dataset):
            continue
        f = tmp_path / key
        if key.endswith('.npz'):
            arr = np.load(f)['probabilities']
        else:
            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        assert hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest() == digest, key


def test_folder_without_dataset_json_hint_names_a_fix_the_command_line_allows(tmp_path, monkeypatch, capsys):
    # fold_X/validation folders of a trained model hold .npz files (--npz) but no dataset.json / plans.json; the
    # command line cannot name them, so the hint must say what to copy where (not "pass it explicitly")
    a, b = str(tmp_path / 'fold_0' / 'validation'), str(tmp_path / 'other')
    _prediction_folder(a, 0)
    _prediction_folder(b, 1)
    os.remove(os.path.join(a, 'dataset.json'))
    os.remove(os.path.join(a, 'plans.json'))
    monkeypatch.setattr(sys, 'argv', ['x', '-i', a, b, '-o', str(tmp_path / 'o'), '-np', '1'])
    with pytest.raises(SystemExit) as e:
        entry_point_ensemble_folders()
    err = capsys.readouterr().err
    assert e.value.code == 1 and len(err.strip().splitlines()) == 1
    assert os.path.join(a, 'dataset.json') in err
    assert 'copy dataset.json and plans.json from the model folder into the first input folder' in err
    assert 'explicitly' not in err
    # a path given explicitly (Python API) that does not exist gets a plain 'check the path'
    with pytest.raises(UserError, match='does not exist. Check the path'):
        ensemble_folders([b, a], str(tmp_path / 'o2'), num_processes=1,
                         dataset_json_file_or_dict=str(tmp_path / 'nope.json'))


def test_rerun_into_a_folder_the_reference_ensemble_wrote_is_allowed_and_other_folders_are_not(tmp_path):
    # A user who switched implementations repeats nnUNetv2_ensemble into the reference's output folder: it leaves
    # no marker, only dataset.json and the outputs. Anything else there (plans.json of a prediction folder, a
    # different dataset.json, a foreign file) still stops the run before it writes.
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    _prediction_folder(a, 0)
    _prediction_folder(b, 1)
    out = tmp_path / 'out'
    ensemble_folders([a, b], str(out), save_merged_probabilities=True, num_processes=1)
    os.remove(out / '.nnUNetv2_ensemble.json')  # now as the reference leaves it
    (out / 'c0.nii.gz').write_bytes(b'stale')
    ensemble_folders([a, b], str(out), num_processes=1)
    assert sitk.ReadImage(str(out / 'c0.nii.gz')).GetSize() == (6, 5, 4)
    for intruder, content in (('plans.json', '{}'), ('dataset.json', json.dumps({**DATASET_JSON, 'name': 'x'})),
                              ('notes.txt', 'mine')):
        folder = tmp_path / f'foreign_{intruder}'
        shutil.copytree(out, folder)
        os.remove(folder / '.nnUNetv2_ensemble.json')
        (folder / intruder).write_text(content)
        (folder / 'c0.nii.gz').write_bytes(b'keep me')
        with pytest.raises(UserError, match='which it did not write'):
            ensemble_folders([a, b], str(folder), num_processes=1)
        assert (folder / 'c0.nii.gz').read_bytes() == b'keep me'


def test_folders_of_other_labels_are_named(tmp_path, capsys):
    """Two models whose channel 1 and 2 are other structures (their dataset.json labels differ): the reference averaged
    their probabilities without a word. The ensemble is made as before, with one warning naming the folder."""
    a, b, c = str(tmp_path / 'a'), str(tmp_path / 'b'), str(tmp_path / 'c')
    for folder, seed in ((a, 0), (b, 1), (c, 2)):
        _prediction_folder(folder, seed)
    other = dict(DATASET_JSON, labels={'background': 0, 'liver': 1, 'spleen': 2})
    with open(os.path.join(b, 'dataset.json'), 'w') as f:
        json.dump(other, f)
    ensemble_folders([a, b, c], str(tmp_path / 'out'), num_processes=1)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('WARNING')]
    assert len(warnings) == 1 and warnings[0].startswith(f"WARNING: {os.path.join(b, 'dataset.json')} declares other "
                                                         f"labels than the dataset.json this ensemble uses")
    assert os.path.isfile(tmp_path / 'out' / 'c1.nii.gz')
