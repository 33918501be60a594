"""Predicting never replaces a file the user gave as input, nor a file in a folder no earlier prediction wrote;
predicting into the input folder itself (as TotalSegmentator does) is allowed."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from nnunetv2.errors import UserError
from nnunetv2.inference.input_handling import PREDICT_MARKER, manage_input_and_output_lists

DATASET_JSON = {'file_ending': '.png', 'channel_names': {'0': 'R', '1': 'G', '2': 'B'}}


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(f'content of {n}'.encode())


def _snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _lists(inp, out, **kw):
    return manage_input_and_output_lists(str(inp), str(out), DATASET_JSON, 1, **kw)


def test_output_folder_may_be_the_input_folder(tmp_path):
    _touch(tmp_path, 'a_0000.png', 'b_0000.png')
    cases, outs, _ = _lists(tmp_path, tmp_path)
    assert outs == [str(tmp_path / 'a'), str(tmp_path / 'b')] and len(cases) == 2
    # a later run: the folder now holds our outputs and marker; the outputs are not taken for inputs
    _touch(tmp_path, 'a.png', 'b.png', PREDICT_MARKER)
    cases, outs, _ = _lists(tmp_path, tmp_path)
    assert [os.path.basename(c[0]) for c in cases] == ['a_0000.png', 'b_0000.png'] and len(outs) == 2


def test_refuses_to_overwrite_files_in_a_folder_it_did_not_write(tmp_path):
    images, labels = tmp_path / 'imagesTs', tmp_path / 'labelsTs'
    _touch(images, 'a_0000.png', 'b_0000.png')
    _touch(labels, 'b.png')  # ground truth
    before = _snapshot(labels)
    with pytest.raises(UserError) as e:
        _lists(images, labels)
    line = e.value.one_line()
    assert str(labels / 'b.png') in line and PREDICT_MARKER in line and '-o' in line
    # also when only unfinished cases would be predicted: existing ground truth is not a finished prediction
    with pytest.raises(UserError, match=r'would overwrite .*b\.png'):
        _lists(images, labels, overwrite=False)
    assert _snapshot(labels) == before
    _touch(labels, PREDICT_MARKER)  # an earlier prediction's folder: rerunning replaces its files
    assert len(_lists(images, labels)[1]) == 2


def test_output_path_that_is_a_file(tmp_path):
    images = tmp_path / 'in'
    _touch(images, 'a_0000.png')
    _touch(tmp_path, 'not_a_folder')
    with pytest.raises(UserError, match=r'not_a_folder exists and is not a folder'):
        _lists(images, tmp_path / 'not_a_folder')


def test_probability_files_count_only_when_saved(tmp_path):
    images, out = tmp_path / 'in', tmp_path / 'out'
    _touch(images, 'a_0000.png')
    _touch(out, 'a.npz')
    assert len(_lists(images, out)[1]) == 1
    with pytest.raises(UserError, match=r'would overwrite .*a\.npz'):
        _lists(images, out, save_probabilities=True)


def test_refuses_an_output_that_is_an_input(tmp_path):
    # case 'a_0000' predicts to a_0000.png, which is the input of case 'a'
    _touch(tmp_path, 'a_0000.png', 'a_0000_0000.png', PREDICT_MARKER)
    with pytest.raises(UserError, match=r'a_0000\.png would overwrite an input file'):
        _lists(tmp_path, tmp_path)
    # previous-stage predictions are inputs too, even in a folder an earlier prediction wrote
    images, prev = tmp_path / 'images', tmp_path / 'prev'
    _touch(images, 'c_0000.png')
    _touch(prev, 'c.png', PREDICT_MARKER)
    before = _snapshot(prev)
    with pytest.raises(UserError, match=r'c\.png would overwrite an input file'):
        _lists(images, prev, folder_with_segs_from_prev_stage=str(prev))
    assert _snapshot(prev) == before


# ----- end to end with the reference-trained 2-D model --------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(shared_dir, tmp_path_factory):
    from _inference_golden import model_folder, safe_extract
    root = tmp_path_factory.mktemp("protect_models")
    mp = pytest.MonkeyPatch()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        mp.setenv(name, str(root / name))
    ds = 'Dataset903_SynthNatural2D'
    safe_extract(next((shared_dir / "reference" / "models" / ds).glob("*.zip")), root / "nnUNet_results")
    yield model_folder(root / "nnUNet_results", ds)
    mp.undo()


def _cli(args):
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point
    predict_entry_point(args + ['-d', '903', '-c', '2d', '-f', '0', '-tr', 'nnUNetTrainer_5epochs',
                                '-p', 'nnUNetPlansTiny', '-device', 'cpu', '-npp', '0', '-nps', '0',
                                '--disable_tta', '--disable_progress_bar'])


def test_cli_predicts_into_the_input_folder_and_refuses_ground_truth(model_dir, golden_raw, tmp_path, capsys):
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(golden_raw('Dataset903_SynthNatural2D') / 'imagesTs' / 'nat_012_0000.png', work)
    inputs = _snapshot(work)
    _cli(['-i', str(work), '-o', str(work)])
    assert sorted(os.listdir(work)) == ['dataset.json', 'nat_012.png', 'nat_012_0000.png', 'plans.json',
                                        PREDICT_MARKER]
    assert _snapshot(work)['nat_012_0000.png'] == inputs['nat_012_0000.png']
    _cli(['-i', str(work), '-o', str(work)])  # again: our own outputs are neither inputs nor protected
    assert len(os.listdir(work)) == 5

    labels = tmp_path / 'labelsTs'
    labels.mkdir()
    shutil.copy(work / 'nat_012.png', labels / 'nat_012.png')
    before = _snapshot(labels)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        _cli(['-i', str(work), '-o', str(labels)])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(labels / 'nat_012.png') in err[0] and '-o' in err[0]
    assert _snapshot(labels) == before  # nothing written, not even the bookkeeping files


def test_bookkeeping_files_of_a_dataset_folder_are_not_replaced(model_dir, golden_raw, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    images = golden_raw('Dataset903_SynthNatural2D') / 'imagesTs'
    out = tmp_path / 'Dataset903_copy'
    _touch(out, 'dataset.json')
    p = nnUNetPredictor(use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_dir), (0,))
    with pytest.raises(UserError, match=r'would overwrite .*dataset\.json'):
        p.predict_from_files_sequential([[str(images / 'nat_012_0000.png')]], str(out))
    assert os.listdir(out) == ['dataset.json']
