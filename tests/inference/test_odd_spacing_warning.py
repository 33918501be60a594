"""An image to predict whose spacing is far from that of every training image of the model (its header in cm
instead of mm, or no spacing stored and 1 assumed) is resampled to the model's spacing all the same, and the
reference predicts nonsense or nothing without a word. A warning now names the case and the axes; the prediction is
made as before. The training spacings come from the model folder's dataset_fingerprint.json."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import SimpleITK as sitk
import torch

from nnunetv2.inference.input_handling import spacing_far_from_training

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _tiny_plans import write_tiny_model  # noqa: E402

TRAINING = np.array([[3.0, 0.8, 0.8], [5.0, 0.7, 0.7], [2.5, 0.9, 0.9]])


def test_spacings_near_the_training_images_pass():
    assert spacing_far_from_training([4.0, 0.8, 0.8], TRAINING) is None
    assert spacing_far_from_training([0.7, 0.2, 0.2], TRAINING) is None  # finer, but less than 4x the finest
    assert spacing_far_from_training([19.9, 3.5, 3.5], TRAINING) is None
    assert spacing_far_from_training([999.0, 1.0, 1.0], np.array([[999.0, 1.0, 1.0]])) is None  # 2-D images
    assert spacing_far_from_training([1.0, 1.0], TRAINING) is None  # other dimensionality: not judged
    assert spacing_far_from_training([0.01, 0.01, 0.01], None) is None  # a model without fingerprint


def test_spacings_far_from_the_training_images_are_named():
    problem = spacing_far_from_training([0.4, 0.08, 0.08], TRAINING)  # cm instead of mm
    assert problem.startswith("its spacing (0.4, 0.08, 0.08) is far from that of the model's training images "
                              "(axis 0: 0.4 vs 2.5-5; axis 1: 0.08 vs 0.7-0.9; axis 2: 0.08 vs 0.7-0.9)")
    assert "cm or m" in problem
    assert "axis 0: 25 vs 2.5-5" in spacing_far_from_training([25.0, 0.8, 0.8], TRAINING)


def test_predictor_warns_for_the_odd_case_only(tmp_path, capsys):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    model = tmp_path / 'model'
    write_tiny_model(model, 'Dataset977_Spacing', {'background': 0, 'a': 1}, seed=0)
    (model / 'dataset_fingerprint.json').write_text(json.dumps({'spacings': [[2.0, 2.0, 2.0], [2.4, 2.0, 2.0]]}))
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for case, spacing in (('fine_mm', (2.0, 2.0, 2.0)), ('in_cm', (0.2, 0.2, 0.2))):
        img = sitk.GetImageFromArray(np.random.RandomState(0).rand(12, 16, 16).astype(np.float32))
        img.SetSpacing(spacing)
        sitk.WriteImage(img, str(inputs / f'{case}_0000.nii.gz'))
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    capsys.readouterr()
    predictor.predict_from_files_sequential(str(inputs), str(tmp_path / 'out'))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('WARNING')]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: in_cm: its spacing (0.2, 0.2, 0.2) is far from")
    assert sorted(os.listdir(tmp_path / 'out'))[:2] == ['dataset.json', 'fine_mm.nii.gz']
    assert (tmp_path / 'out' / 'in_cm.nii.gz').is_file()


def test_the_slice_axis_of_a_2d_configuration_is_not_judged():
    """A 2d model of 3-D training volumes predicting a .png (slice spacing 999): that axis is never resampled."""
    assert spacing_far_from_training([999.0, 0.8, 0.8], TRAINING, ignored_axes=(0,)) is None
    assert "axis 1" in spacing_far_from_training([999.0, 0.08, 0.8], TRAINING, ignored_axes=(0,))
