"""Metrics on hand-made arrays, folder evaluation errors, the CLIs, and the golden test summaries."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.evaluation._counting import confusion_matrix, counts_from_confusion
from nnunetv2.evaluation.evaluate_predictions import (_metrics_of_arrays, compute_metrics_on_folder,
                                                      compute_metrics_on_folder2, compute_tp_fp_fn_tn,
                                                      evaluate_folder_entry_point, evaluate_simple_entry_point,
                                                      key_to_label_or_region, label_or_region_to_key,
                                                      labels_to_list_of_regions, region_or_label_to_mask)
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


def test_tp_fp_fn_tn_by_hand():
    ref = np.array([1, 1, 1, 0, 0, 0, 0, 1], dtype=bool)
    pred = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    assert compute_tp_fp_fn_tn(ref, pred) == (3, 2, 1, 2)
    ignore = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    assert compute_tp_fp_fn_tn(ref, pred, ignore) == (2, 1, 1, 2)


def test_dice_iou_and_counts():
    ref = np.array([[0, 1, 1, 2, 2, 0]])
    pred = np.array([[0, 1, 0, 2, 1, 1]])
    m = _metrics_of_arrays(ref, pred, [1, 2, (1, 2), 3])
    assert m[1] == {'Dice': 2 * 1 / (2 + 1 + 2), 'IoU': 1 / 4, 'FP': 2, 'TP': 1, 'FN': 1, 'TN': 2, 'n_pred': 3,
                    'n_ref': 2}
    assert m[2]['TP'] == 1 and m[2]['FN'] == 1 and m[2]['FP'] == 0 and m[2]['Dice'] == 2 / 3
    # region (1, 2): ref {1,2,3,4}, pred {1,3,4,5}
    assert (m[(1, 2)]['TP'], m[(1, 2)]['FP'], m[(1, 2)]['FN'], m[(1, 2)]['TN']) == (3, 1, 1, 1)
    # label absent from both: NaN Dice/IoU with zero counts
    assert np.isnan(m[3]['Dice']) and np.isnan(m[3]['IoU']) and m[3]['TN'] == 6 and m[3]['n_ref'] == 0
    assert list(m[1].keys()) == ['Dice', 'IoU', 'FP', 'TP', 'FN', 'TN', 'n_pred', 'n_ref']


def test_reference_empty_prediction_not_gives_zero():
    m = _metrics_of_arrays(np.zeros((1, 4)), np.array([[0, 1, 0, 0]]), [1])
    assert m[1]['Dice'] == 0 and m[1]['IoU'] == 0 and m[1]['FP'] == 1


def test_ignore_label_excluded():
    ref = np.array([[1, 1, 3, 3, 0]], dtype=np.float32)
    pred = np.array([[1, 0, 1, 1, 1]], dtype=np.float32)
    m = _metrics_of_arrays(ref, pred, [1], ignore_label=3)
    assert (m[1]['TP'], m[1]['FP'], m[1]['FN'], m[1]['TN']) == (1, 1, 1, 0)


@pytest.mark.parametrize('ignore', [None, 2])
def test_fast_counting_equals_masks(ignore):
    rs = np.random.RandomState(1)
    ref = rs.randint(0, 4, (7, 9, 11)).astype(np.float32)
    pred = rs.randint(0, 5, (7, 9, 11)).astype(np.float32)
    conf = confusion_matrix(ref, pred, ignore)
    ignore_mask = None if ignore is None else ref == ignore
    for r in [0, 1, 3, 4, 7, (1, 2), (1, 3, 4)]:
        expected = compute_tp_fp_fn_tn(region_or_label_to_mask(ref, r), region_or_label_to_mask(pred, r), ignore_mask)
        assert counts_from_confusion(conf, r) == expected


def test_non_integer_maps_fall_back_to_masks():
    ref = np.array([[0.5, 1, -1, 1]])
    pred = np.array([[0.5, 1, 1, 0]])
    assert confusion_matrix(ref, pred, None) is None
    m = _metrics_of_arrays(ref, pred, [1, 0.5, -1])
    assert (m[1]['TP'], m[1]['FP'], m[1]['FN']) == (1, 1, 1)
    assert m[0.5]['Dice'] == 1.0 and m[-1]['FN'] == 1


def test_keys():
    assert label_or_region_to_key(1) == '1' and label_or_region_to_key((1, 2)) == '(1, 2)'
    assert key_to_label_or_region('1') == 1 and key_to_label_or_region('(1, 2)') == (1, 2)
    assert key_to_label_or_region('(3,)') == (3,)
    assert labels_to_list_of_regions([1, 2]) == [(1,), (2,)]


def _write(folder, name, arr):
    folder.mkdir(exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(folder / name))


def test_folder_errors(tmp_path):
    ref, pred = tmp_path / 'ref', tmp_path / 'pred'
    for i in range(3):
        _write(ref, f'c{i}.nii.gz', np.ones((2, 3, 4)))
    _write(pred, 'c0.nii.gz', np.ones((2, 3, 4)))
    rw = SimpleITKIO()
    with pytest.raises(UserError, match=r'c1.nii.gz, c2.nii.gz'):
        compute_metrics_on_folder(str(ref), str(pred), None, rw, '.nii.gz', [1], chill=False, num_processes=1)
    res = compute_metrics_on_folder(str(ref), str(pred), None, rw, '.nii.gz', [1], chill=True, num_processes=1)
    assert len(res['metric_per_case']) == 1 and res['mean'][1]['Dice'] == 1.0
    with pytest.raises(UserError, match='does not exist'):
        compute_metrics_on_folder(str(ref), str(tmp_path / 'nope'), None, rw, '.nii.gz', [1], num_processes=1)
    with pytest.raises(UserError, match='must end with .json'):
        compute_metrics_on_folder(str(ref), str(pred), 'x.txt', rw, '.nii.gz', [1], num_processes=1)
    _write(pred, 'c1.nii.gz', np.ones((2, 3, 5)))
    with pytest.raises(UserError, match=r'c1.nii.gz.*shape.*c1.nii.gz'):
        compute_metrics_on_folder(str(ref), str(pred), None, rw, '.nii.gz', [1], num_processes=1)
    _write(pred, 'extra.nii.gz', np.ones((2, 3, 4)))
    with pytest.raises(UserError, match='extra.nii.gz'):
        compute_metrics_on_folder(str(ref), str(pred), None, rw, '.nii.gz', [1], num_processes=1)


def _cli(monkeypatch, capsys, which, *args):
    """Run an entry point in-process; returns (exit code, stderr)."""
    entry = {'folder': evaluate_folder_entry_point, 'simple': evaluate_simple_entry_point}[which]
    monkeypatch.setattr(sys, 'argv', [which, *args])
    try:
        entry()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_evaluate_simple_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ref, pred = tmp_path / 'ref', tmp_path / 'pred'
    _write(ref, 'a.nii.gz', np.array([[[0, 1, 1, 2]]]))
    _write(pred, 'a.nii.gz', np.array([[[0, 1, 2, 2]]]))
    code, err = _cli(monkeypatch, capsys, 'simple', 'ref', 'pred', '-l', '1', '2', '-np', '1')
    assert code == 0, err
    summary = json.loads((pred / 'summary.json').read_text())
    assert summary['mean']['1']['Dice'] == 2 / 3 and summary['mean']['2']['Dice'] == 2 / 3
    _write(ref, 'b.nii.gz', np.array([[[0, 1, 1, 2]]]))
    code, err = _cli(monkeypatch, capsys, 'simple', 'ref', 'pred', '-l', '1', '-np', '1')
    assert code == 1 and err.strip().startswith('nnU-Net error:') and 'b.nii.gz' in err
    assert len(err.strip().splitlines()) == 1
    code, err = _cli(monkeypatch, capsys, 'simple', 'ref', 'pred', '-l', '1', '-np', '1', '--chill', '-o', 'out.json')
    assert code == 0 and (tmp_path / 'out.json').is_file()
    code, err = _cli(monkeypatch, capsys, 'folder', 'ref', 'pred')
    assert code == 2 and '-djfile' in err


def test_evaluate_simple_on_tif_labels_with_spacing_side_cars(tmp_path, monkeypatch, capsys):
    """A raw .tif labelsTr folder holds CASE.json spacing files beside CASE.tif; they sort first, and taking the
    ending from them stopped evaluate_simple with 'no reader for .json' (the reference stops the same way)."""
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO
    monkeypatch.chdir(tmp_path)
    ref, pred = tmp_path / 'ref', tmp_path / 'pred'
    ref.mkdir()
    pred.mkdir()
    props = {'spacing': (2.0, 1.0, 1.0)}
    Tiff3DIO().write_seg(np.array([[[0, 1, 1, 2]]], dtype=np.uint8), str(ref / 'a.tif'), props)
    Tiff3DIO().write_seg(np.array([[[0, 1, 2, 2]]], dtype=np.uint8), str(pred / 'a.tif'), props)
    assert sorted(p.name for p in ref.iterdir()) == ['a.json', 'a.tif']
    code, err = _cli(monkeypatch, capsys, 'simple', 'ref', 'pred', '-l', '1', '2', '-np', '1')
    assert code == 0, err
    summary = json.loads((pred / 'summary.json').read_text())
    assert [c['reference_file'].split('/')[-1] for c in summary['metric_per_case']] == ['a.tif']
    assert summary['mean']['1']['Dice'] == 2 / 3 and summary['mean']['2']['Dice'] == 2 / 3


@pytest.mark.parametrize('dataset,configuration', [('Dataset902_SynthMRRegions', '3d_fullres'),
                                                   ('Dataset903_SynthNatural2D', '2d')])
def test_golden_test_summary(tmp_path, shared_dir, golden_raw, dataset, configuration):
    """The reference's test_summary_default.json recomputed from its predictions gives the same numbers."""
    models = shared_dir / 'reference' / 'models' / dataset
    raw = golden_raw(dataset)
    expected = json.loads((models / 'test_summary_default.json').read_text())
    out = tmp_path / 'summary.json'
    compute_metrics_on_folder2(str(raw / 'labelsTs'), str(models / 'predictions' / 'default'),
                               str(raw / 'dataset.json'), str(models / 'nnUNetPlansTiny.json'), str(out),
                               num_processes=1, chill=False)
    ours = json.loads(out.read_text())
    assert ours['mean'] == expected['mean']
    assert ours['foreground_mean'] == expected['foreground_mean']
    for a, b in zip(ours['metric_per_case'], expected['metric_per_case']):
        assert a['metrics'] == b['metrics']
        assert a['prediction_file'].split('/')[-1] == b['prediction_file'].split('/')[-1]


def test_leftover_temporary_files_are_not_cases(tmp_path):
    """A writer killed mid-write leaves its hidden temporary file (``.nnunet_tmp_*``) next to the final ones;
    evaluation, like every folder listing of ours, does not take it for a case."""
    from nnunetv2.file_io import TMP_PREFIX
    ref, pred = tmp_path / 'ref', tmp_path / 'pred'
    for i in range(3):
        _write(ref, f'c{i}.nii.gz', np.ones((2, 3, 4)))
        _write(pred, f'c{i}.nii.gz', np.ones((2, 3, 4)))
    for folder in (ref, pred):
        (folder / f'{TMP_PREFIX}0123456789ab_c1.nii.gz').write_bytes(b'half a file')
    res = compute_metrics_on_folder(str(ref), str(pred), None, SimpleITKIO(), '.nii.gz', [1], num_processes=1)
    assert [c['prediction_file'][-9:] for c in res['metric_per_case']] == ['c0.nii.gz', 'c1.nii.gz', 'c2.nii.gz']
    assert res['mean'][1]['Dice'] == 1.0


@pytest.mark.parametrize('n_labels', [3, 16, 17, 300])
def test_confusion_counts_in_small_types_equal_plain_counting(n_labels):
    """Label maps of 8/16-bit types (also mixed) are counted in codes of the smallest type holding n*n codes
    (1 byte up to 16 labels, 2 bytes up to 256, then 4): the counts equal a plain int64 bincount."""
    rs = np.random.RandomState(n_labels)
    shape = (6, 7, 8)
    ref = rs.randint(0, n_labels, shape)
    pred = rs.randint(0, n_labels, shape)
    ref[rs.rand(*shape) < 0.6] = 0  # mostly background, as in real maps
    small = np.uint8 if n_labels <= 256 else np.uint16
    expected = np.zeros((n_labels, n_labels), np.int64)
    np.add.at(expected, (ref.ravel(), pred.ravel()), 1)
    for ref_t, pred_t in ((small, small), (small, np.uint16), (np.uint16, small), (np.int16, np.float32)):
        conf = confusion_matrix(ref.astype(ref_t), pred.astype(pred_t), None)
        assert conf.shape == expected.shape and (conf == expected).all(), (ref_t, pred_t)
    conf = confusion_matrix(ref.astype(small), pred.astype(small), 2)
    assert (conf[2] == 0).all() and (conf[1] == expected[1]).all()


def test_confusion_of_negative_integer_labels_falls_back():
    ref = np.array([[0, -1, 1]], dtype=np.int16)
    assert confusion_matrix(ref, np.zeros_like(ref), None) is None
    m = _metrics_of_arrays(ref, np.array([[0, -1, 0]], dtype=np.int16), [1, -1])
    assert m[-1]['TP'] == 1 and m[1]['FN'] == 1


def test_folder_metrics_same_for_8bit_and_float_files(tmp_path):
    """Evaluation reads 8-bit label files in their own type: the summary equals that of the same labels stored
    as float32."""
    for kind, dtype in (('u8', np.uint8), ('f32', np.float32)):
        for d in ('ref', 'pred'):
            (tmp_path / kind / d).mkdir(parents=True)
        for c in range(2):
            rs_c = np.random.RandomState(c)
            for d in ('ref', 'pred'):
                arr = rs_c.randint(0, 4, (5, 9, 10)).astype(dtype)
                sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / kind / d / f'c{c}.nii.gz'))
    out = {}
    for kind in ('u8', 'f32'):
        out[kind] = compute_metrics_on_folder(str(tmp_path / kind / 'ref'), str(tmp_path / kind / 'pred'),
                                              str(tmp_path / kind / 'summary.json'), SimpleITKIO(), '.nii.gz',
                                              [1, 2, 3, (1, 2)], None, 1)
    for s in out.values():
        for case in s['metric_per_case']:
            case['reference_file'] = case['prediction_file'] = None
    assert out['u8'] == out['f32']
    assert out['u8']['foreground_mean']['Dice'] > 0
