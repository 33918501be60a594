"""The commands that run on predictions (nnUNetv2_ensemble --save_npz, nnUNetv2_apply_postprocessing,
nnUNetv2_evaluate_folder), each at its default worker count, killed at random moments: SIGKILL of the main process
(its workers exit by themselves) or Ctrl-C to the process group (status 130, no traceback). Every file left under a
final name loads, nothing of the group stays, and running the command again into the same folder gives what an
uninterrupted run gives."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from _kill9 import command_env, console_script, is_temporary, kill_chains, run_command
from _tiny_plans import write_tiny_model

N_CASES = 12
LABELS = {'background': 0, 'a': 1, 'b': 2}


@pytest.fixture(scope='module')
def predictions(tmp_path_factory):
    """Two tiny models' predictions (probabilities saved) of the same generated volumes, and a postprocessing.pkl."""
    import SimpleITK as sitk
    import torch

    from nnunetv2.file_io import save_pickle
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation
    root = tmp_path_factory.mktemp('kill9_crossval')
    images = root / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_CASES):
        img = sitk.GetImageFromArray(rng.normal(0, 1, (36, 40, 44)).astype(np.float32))
        img.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(img, str(images / f'case_{i:03d}_0000.nii.gz'))
    folders = []
    for seed in (1, 2):
        model = root / f'Dataset079_Kill{seed}' / 'nnUNetTrainer__nnUNetPlans__3d_fullres'
        write_tiny_model(model, f'Dataset079_Kill{seed}', LABELS, seed=seed)
        predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False,
                                    device=torch.device('cpu'), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
        out = root / f'pred_{seed}'
        predictor.predict_from_files(str(images), str(out), save_probabilities=True, overwrite=True,
                                     num_processes_preprocessing=1, num_processes_segmentation_export=1)
        folders.append(out)
    pp_file = root / 'postprocessing.pkl'
    save_pickle(([remove_all_but_largest_component_from_segmentation], [{'labels_or_regions': [1, 2]}]),
                str(pp_file))
    return {'first': folders[0], 'second': folders[1], 'pp': pp_file}


def _env(root: Path) -> dict:
    return command_env(nnUNet_raw=str(root), nnUNet_preprocessed=str(root), nnUNet_results=str(root))


def _contents(folder: Path) -> dict:
    """Every final file decoded: segmentations and probabilities as arrays, pickles by repr, json parsed."""
    import SimpleITK as sitk
    found = {}
    for p in sorted(folder.rglob('*')):
        if not p.is_file() or is_temporary(p, folder):
            continue
        name = str(p.relative_to(folder))
        if name.endswith('.nii.gz'):
            found[name] = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))),)
        elif name.endswith('.npz'):
            with np.load(p) as f:
                found[name] = {k: f[k] for k in f.files}
        elif name.endswith('.pkl'):
            found[name] = repr(pickle.loads(p.read_bytes()))
        elif name.endswith('.json'):
            found[name] = json.loads(p.read_text())
        else:
            found[name] = p.read_bytes()
    return found


def _ensemble(predictions, folder: Path, resume: bool, **kill):
    return run_command([console_script('nnUNetv2_ensemble'), '-i', str(predictions['first']),
                        str(predictions['second']), '-o', str(folder), '--save_npz'], _env(folder.parent), **kill)


def _apply_postprocessing(predictions, folder: Path, resume: bool, **kill):
    return run_command([console_script('nnUNetv2_apply_postprocessing'), '-i', str(predictions['first']), '-o',
                        str(folder), '-pp_pkl_file', str(predictions['pp'])], _env(folder.parent), **kill)


def _evaluate_folder(predictions, folder: Path, resume: bool, **kill):
    folder.mkdir(exist_ok=True)
    first = predictions['first']
    return run_command([console_script('nnUNetv2_evaluate_folder'), str(predictions['second']), str(first),
                        '-djfile', str(first / 'dataset.json'), '-pfile', str(first / 'plans.json'),
                        '-o', str(folder / 'summary.json')], _env(folder.parent), **kill)


COMMANDS = {'ensemble': (_ensemble, '.npz'), 'apply_postprocessing': (_apply_postprocessing, '.nii.gz'),
            'evaluate_folder': (_evaluate_folder, 'summary.json')}


def _kill_and_rerun(predictions, root: Path, command: str, n_chains: int, kills_per_chain: int) -> None:
    run, must_hold = COMMANDS[command]

    def contents(folder: Path) -> dict:
        found = _contents(folder)
        assert sum(name.endswith(must_hold) for name in found) in (1, N_CASES), sorted(found)
        return found

    kill_chains(lambda folder, resume, **kill: run(predictions, folder, resume, **kill), contents, root, n_chains,
                kills_per_chain, command)


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_killed_at_a_moment(predictions, tmp_path, command):
    _kill_and_rerun(predictions, tmp_path, command, n_chains=1, kills_per_chain=1)


@pytest.mark.killtest
@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_killed_at_many_moments(predictions, tmp_path, command):
    _kill_and_rerun(predictions, tmp_path, command, n_chains=3, kills_per_chain=4)
