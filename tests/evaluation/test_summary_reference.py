"""summary.json of compute_metrics_on_folder must be byte-identical to the one the reference wrote for the same input.

The expected text below was produced once with the reference nnU-Net 2.8.1 (compute_metrics_on_folder with labels
1, 2, region (1, 2) and the absent label 4, ignore label 3, relative folder names 'ref' and 'pred'); only its output
is kept here.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder, load_summary_json
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


def make_cases(root):
    """Three small label maps with an ignore region, random flips and one missing label (deterministic)."""
    rs = np.random.RandomState(0)
    (root / 'ref').mkdir()
    (root / 'pred').mkdir()
    for c in range(3):
        ref = np.zeros((6, 10, 12), np.uint8)
        ref[1:4, 2:7, 3:9] = 1
        ref[2:3, 3:5, 4:6] = 2
        if c == 1:
            ref[ref == 2] = 1
        ref[0, :2, :2] = 3  # ignore label
        pred = ref.copy()
        pred[ref == 3] = rs.randint(0, 3, size=(ref == 3).sum())
        flip = rs.rand(*ref.shape) < 0.1
        pred[flip] = rs.randint(0, 3, size=flip.sum())
        if c == 2:
            pred[pred == 2] = 0
        for arr, d in ((ref, 'ref'), (pred, 'pred')):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((0.8, 0.9, 2.5))
            sitk.WriteImage(im, str(root / d / f'case_{c:03d}.nii.gz'))


EXPECTED = r'''{
    "foreground_mean": {
        "Dice": NaN,
        "FN": 2.3333333333333335,
        "FP": 15.333333333333332,
        "IoU": NaN,
        "TN": 655.6666666666666,
        "TP": 42.66666666666667,
        "n_pred": 58.0,
        "n_ref": 45.0
    },
    "mean": {
        "(1, 2)": {
            "Dice": 0.8452427567015133,
            "FN": 3.3333333333333335,
            "FP": 29.333333333333332,
            "IoU": 0.7353784461152881,
            "TN": 596.6666666666666,
            "TP": 86.66666666666667,
            "n_pred": 116.0,
            "n_ref": 90.0
        },
        "1": {
            "Dice": 0.8833491750140139,
            "FN": 4.666666666666667,
            "FP": 17.333333333333332,
            "IoU": 0.7931957186544342,
            "TN": 611.3333333333334,
            "TP": 82.66666666666667,
            "n_pred": 100.0,
            "n_ref": 87.33333333333333
        },
        "2": {
            "Dice": 0.08333333333333333,
            "FN": 1.3333333333333333,
            "FP": 14.666666666666666,
            "IoU": 0.047619047619047616,
            "TN": 698.6666666666666,
            "TP": 1.3333333333333333,
            "n_pred": 16.0,
            "n_ref": 2.6666666666666665
        },
        "4": {
            "Dice": NaN,
            "FN": 0.0,
            "FP": 0.0,
            "IoU": NaN,
            "TN": 716.0,
            "TP": 0.0,
            "n_pred": 0.0,
            "n_ref": 0.0
        }
    },
    "metric_per_case": [
        {
            "metrics": {
                "(1, 2)": {
                    "Dice": 0.7909090909090909,
                    "FN": 3,
                    "FP": 43,
                    "IoU": 0.6541353383458647,
                    "TN": 583,
                    "TP": 87,
                    "n_pred": 130,
                    "n_ref": 90
                },
                "1": {
                    "Dice": 0.8404255319148937,
                    "FN": 7,
                    "FP": 23,
                    "IoU": 0.7247706422018348,
                    "TN": 607,
                    "TP": 79,
                    "n_pred": 102,
                    "n_ref": 86
                },
                "2": {
                    "Dice": 0.25,
                    "FN": 0,
                    "FP": 24,
                    "IoU": 0.14285714285714285,
                    "TN": 688,
                    "TP": 4,
                    "n_pred": 28,
                    "n_ref": 4
                },
                "4": {
                    "Dice": NaN,
                    "FN": 0,
                    "FP": 0,
                    "IoU": NaN,
                    "TN": 716,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 0
                }
            },
            "prediction_file": "pred/case_000.nii.gz",
            "reference_file": "ref/case_000.nii.gz"
        },
        {
            "metrics": {
                "(1, 2)": {
                    "Dice": 0.8317757009345794,
                    "FN": 1,
                    "FP": 35,
                    "IoU": 0.712,
                    "TN": 591,
                    "TP": 89,
                    "n_pred": 124,
                    "n_ref": 90
                },
                "1": {
                    "Dice": 0.8762886597938144,
                    "FN": 5,
                    "FP": 19,
                    "IoU": 0.7798165137614679,
                    "TN": 607,
                    "TP": 85,
                    "n_pred": 104,
                    "n_ref": 90
                },
                "2": {
                    "Dice": 0.0,
                    "FN": 0,
                    "FP": 20,
                    "IoU": 0.0,
                    "TN": 696,
                    "TP": 0,
                    "n_pred": 20,
                    "n_ref": 0
                },
                "4": {
                    "Dice": NaN,
                    "FN": 0,
                    "FP": 0,
                    "IoU": NaN,
                    "TN": 716,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 0
                }
            },
            "prediction_file": "pred/case_001.nii.gz",
            "reference_file": "ref/case_001.nii.gz"
        },
        {
            "metrics": {
                "(1, 2)": {
                    "Dice": 0.9130434782608695,
                    "FN": 6,
                    "FP": 10,
                    "IoU": 0.84,
                    "TN": 616,
                    "TP": 84,
                    "n_pred": 94,
                    "n_ref": 90
                },
                "1": {
                    "Dice": 0.9333333333333333,
                    "FN": 2,
                    "FP": 10,
                    "IoU": 0.875,
                    "TN": 620,
                    "TP": 84,
                    "n_pred": 94,
                    "n_ref": 86
                },
                "2": {
                    "Dice": 0.0,
                    "FN": 4,
                    "FP": 0,
                    "IoU": 0.0,
                    "TN": 712,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 4
                },
                "4": {
                    "Dice": NaN,
                    "FN": 0,
                    "FP": 0,
                    "IoU": NaN,
                    "TN": 716,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 0
                }
            },
            "prediction_file": "pred/case_002.nii.gz",
            "reference_file": "ref/case_002.nii.gz"
        }
    ]
}'''


def test_summary_json_byte_identical_to_reference(tmp_path, monkeypatch):
    make_cases(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = compute_metrics_on_folder('ref', 'pred', 'summary.json', SimpleITKIO(), '.nii.gz', [1, 2, (1, 2), 4],
                                       ignore_label=3, num_processes=1)
    assert (tmp_path / 'summary.json').read_text() == EXPECTED
    # the returned dict keeps the raw label/region keys and Python types
    assert list(result['mean'].keys()) == [1, 2, (1, 2), 4]
    assert type(result['metric_per_case'][0]['metrics'][1]['TP']) is int
    assert np.isnan(result['foreground_mean']['Dice'])
    loaded = load_summary_json('summary.json')
    assert list(loaded['mean'].keys()) == [(1, 2), 1, 2, 4]
    assert loaded['mean'][1]['Dice'] == result['mean'][1]['Dice']


def test_parallel_pool_gives_same_file(tmp_path, monkeypatch):
    make_cases(tmp_path)
    monkeypatch.chdir(tmp_path)
    compute_metrics_on_folder('ref', 'pred', 'summary.json', SimpleITKIO(), '.nii.gz', [1, 2, (1, 2), 4],
                              ignore_label=3, num_processes=2)
    assert (tmp_path / 'summary.json').read_text() == EXPECTED
