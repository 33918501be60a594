"""accumulate_cv_results, ensemble_crossvalidations and find_best_configuration on a tiny fake results tree."""
from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

import _find_best_reference_outputs as ref_out
from _fake_results_tree import DATASET, make_fake_results_tree
from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError
from nnunetv2.evaluation.accumulate_cv_results import accumulate_cv_results
from nnunetv2.evaluation.find_best_configuration import (accumulate_crossval_results_entry_point,
                                                         dumb_trainer_config_plans_to_trained_models_dict,
                                                         find_best_configuration, generate_inference_command)

MODELS = [{'plans': 'nnUNetPlans', 'configuration': c, 'trainer': 'nnUNetTrainer'}
          for c in ('2d', '3d_fullres', '3d_lowres')]


def _model(root, c):
    return os.path.join(root, 'nnUNet_results', DATASET, f'nnUNetTrainer__nnUNetPlans__{c}')


def test_find_best_configuration_matches_reference(tree, capsys):
    result = find_best_configuration(DATASET, MODELS, True, 1, True, (0, 1))
    results_dir = tree / 'nnUNet_results' / DATASET
    expected_info = ref_out.ENSEMBLE_INFORMATION_JSON.replace('<ROOT>', str(tree))
    assert (results_dir / 'inference_information.json').read_text() == expected_info
    expected_txt = ref_out.ENSEMBLE_INSTRUCTIONS_TXT.replace('<ROOT>', str(tree)).replace('<NP>',
                                                                                         str(default_num_processes))
    assert (results_dir / 'inference_instructions.txt').read_text() == expected_txt
    assert result['best_model_or_ensemble']['selected_model_or_models'][1]['configuration'] == '3d_fullres'
    out = capsys.readouterr().out
    assert 'Configuration 3d_lowres not found in plans nnUNetPlans' in out and '*Best*: ensemble___' in out
    ens = results_dir / 'ensembles' / 'ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1'
    assert {'plans.json', 'dataset.json', 'summary.json', 'postprocessing.pkl', 'postprocessing.json',
            'case_0.nii.gz', 'case_3.nii.gz'} <= set(os.listdir(ens))
    assert sorted(os.listdir(ens / 'postprocessed'))[0] == 'case_0.nii.gz'

    # --no_overwrite reuses everything and gives the same answer
    again = find_best_configuration(DATASET, MODELS, True, 1, False, (0, 1))
    assert again['all_results'] == result['all_results']


def test_single_model_instructions(tree):
    result = find_best_configuration(DATASET, MODELS, False, 1, True, (0, 1))
    assert list(result['all_results']) == ['nnUNetTrainer__nnUNetPlans__2d', 'nnUNetTrainer__nnUNetPlans__3d_fullres']
    best = result['best_model_or_ensemble']
    assert best['selected_model_or_models'] == [{'configuration': '3d_fullres', 'trainer': 'nnUNetTrainer',
                                                 'plans_identifier': 'nnUNetPlans'}]
    src = _model(tree, '3d_fullres') + '/crossval_results_folds_0_1'
    lines = (tree / 'nnUNet_results' / DATASET / 'inference_instructions.txt').read_text().split('\n')
    assert lines == [
        '***Run inference like this:***', '',
        f'nnUNetv2_predict -d {DATASET} -i INPUT_FOLDER -o OUTPUT_FOLDER -f  0 1 -tr nnUNetTrainer -c 3d_fullres '
        f'-p nnUNetPlans', '',
        '***Once inference is completed, run postprocessing like this:***', '',
        f'nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file {src}/postprocessing.pkl '
        f'-np {default_num_processes} -plans_json {src}/plans.json', '']


def test_accumulate_errors_and_cli(tree, monkeypatch, capsys):
    model = _model(tree, '2d')
    merged = os.path.join(model, 'merged')
    accumulate_cv_results(model, merged, (0, 1), 1)
    summary = json.loads(open(os.path.join(merged, 'summary.json')).read())
    assert len(summary['metric_per_case']) == 4 and summary['metric_per_case'][0]['reference_file'].startswith(
        str(tree / 'nnUNet_raw'))  # raw labelsTr preferred
    with pytest.raises(UserError, match='fold 2 of model'):
        accumulate_cv_results(model, merged, (0, 1, 2), 1)
    shutil.copy(os.path.join(model, 'fold_0', 'validation', 'case_0.nii.gz'),
                os.path.join(model, 'fold_1', 'validation', 'case_0.nii.gz'))
    with pytest.raises(UserError, match='More than one of your folds has a prediction for case case_0.nii.gz'):
        accumulate_cv_results(model, merged, (0, 1), 1)

    os.remove(os.path.join(model, 'fold_1', 'validation', 'case_0.nii.gz'))
    out = tree / 'cli_out'
    monkeypatch.setattr(sys, 'argv', ['x', DATASET, '-c', '2d', '-f', '0', '1', '-o', str(out)])
    accumulate_crossval_results_entry_point()
    assert (out / 'summary.json').is_file()
    accumulate_crossval_results_entry_point()  # a folder it wrote itself: a rerun replaces it
    assert (out / 'summary.json').is_file()
    foreign = tree / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    monkeypatch.setattr(sys, 'argv', ['x', DATASET, '-c', '2d', '-f', '0', '1', '-o', str(foreign)])
    with pytest.raises(SystemExit) as e:  # -o exists and is not empty, and this command did not write it
        accumulate_crossval_results_entry_point()
    assert e.value.code == 1 and 'not empty' in capsys.readouterr().err
    assert (foreign / 'notes.txt').read_text() == 'mine'
    monkeypatch.setattr(sys, 'argv', ['x', DATASET])
    with pytest.raises(SystemExit) as e:
        accumulate_crossval_results_entry_point()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('usage: x ') and '-c' in err


def test_accumulate_skips_temporaries_of_a_killed_writer(tree):
    """A validation export killed mid-write leaves a '.nnunet_tmp_*' file; it is no case and is not merged."""
    from nnunetv2.file_io import TMP_PREFIX
    model = _model(tree, '2d')
    validation = os.path.join(model, 'fold_0', 'validation')
    leftover = f'{TMP_PREFIX}0123456789ab_case_0.nii.gz'
    shutil.copyfile(os.path.join(validation, 'case_0.nii.gz'), os.path.join(validation, leftover))
    merged = os.path.join(model, 'merged')
    accumulate_cv_results(model, merged, (0, 1), 1)
    assert leftover not in os.listdir(merged)
    assert sorted(f for f in os.listdir(merged) if f.endswith('.nii.gz')) == [f'case_{i}.nii.gz' for i in range(4)]


def test_missing_trained_model_and_case_sets(tree):
    shutil.rmtree(_model(tree, '3d_fullres'))
    with pytest.raises(UserError, match='has no output folder'):
        find_best_configuration(DATASET, MODELS, True, 1, True, (0, 1))
    from nnunetv2.ensembling.ensemble import ensemble_crossvalidations
    make_fake_results_tree(str(tree / 'other'))
    m2 = _model(tree / 'other', '3d_fullres')
    os.remove(os.path.join(m2, 'fold_1', 'validation', 'case_1.npz'))
    with pytest.raises(UserError, match='case_1'):
        ensemble_crossvalidations([_model(tree, '2d'), m2], str(tree / 'ens'), (0, 1), 1)
    with pytest.raises(UserError, match='--npz'):
        for f in os.listdir(os.path.join(m2, 'fold_1', 'validation')):
            if f.endswith('.npz'):
                os.remove(os.path.join(m2, 'fold_1', 'validation', f))
        ensemble_crossvalidations([_model(tree, '2d'), m2], str(tree / 'ens'), (0, 1), 1)


def test_helpers():
    # a tuple, as the reference returns (callers may concatenate it with their own tuples)
    assert dumb_trainer_config_plans_to_trained_models_dict(['A', 'B'], ['2d'], ['p', 'q']) == (
        {'plans': 'p', 'configuration': '2d', 'trainer': 'A'}, {'plans': 'q', 'configuration': '2d', 'trainer': 'A'},
        {'plans': 'p', 'configuration': '2d', 'trainer': 'B'}, {'plans': 'q', 'configuration': '2d', 'trainer': 'B'})
    assert generate_inference_command('Dataset1_X', '3d_cascade_fullres', folds=(0,), save_npz=True) == (
        'nnUNetv2_predict -d Dataset1_X -i INPUT_FOLDER -o OUTPUT_FOLDER -f  0 -tr nnUNetTrainer '
        '-c 3d_cascade_fullres -p nnUNetPlans --save_probabilities')
