"""Connected-component postprocessing: the building block, determination, application and safe pkl loading."""
from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import measure

from _pp_reference_outputs import REFERENCE_PKL_B64, REFERENCE_POSTPROCESSING_JSON
from nnunetv2.errors import UserError
from nnunetv2.postprocessing._safe_pickle import load_postprocessing_pickle
from nnunetv2.postprocessing.remove_connected_components import (
    apply_postprocessing_to_folder, determine_postprocessing, entry_point_apply_postprocessing,
    remove_all_but_largest_component_from_segmentation)

PLANS = {  # just enough plans for the reader/writer and the label manager
    "dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
    "label_manager": "LabelManager", "configurations": {}, "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
}


def make_case_folders(root, regions=False):
    """gt/ and pred/ with two cases: a spurious label-1 blob far away and a label-2 blob touching label 1."""
    for d in ('gt', 'pred'):
        (root / d).mkdir()
    for c in range(2):
        ref = np.zeros((20, 20, 20), np.uint8)
        ref[2:8, 2:8, 2:8] = 1
        ref[8:12, 2:8, 2:8] = 2
        pred = ref.copy()
        pred[7, 7, 7] = 0
        pred[15:17, 15:17, 2 + c:4 + c] = 1
        pred[2:4, 8:10, 2:4] = 2
        for arr, d in ((ref, 'gt'), (pred, 'pred')):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(root / d / f'case_{c}.nii.gz'))
    labels = {'background': 0, 'whole': [1, 2], 'b': 2} if regions else {'background': 0, 'a': 1, 'b': 2}
    dataset_json = {'channel_names': {'0': 'CT'}, 'labels': labels, 'numTraining': 2, 'file_ending': '.nii.gz'}
    if regions:
        dataset_json['regions_class_order'] = [1, 2]
    (root / 'pred' / 'dataset.json').write_text(json.dumps(dataset_json))
    (root / 'pred' / 'plans.json').write_text(json.dumps(PLANS))


def _read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_spurious_component_removed_and_ties_kept():
    seg = np.zeros((1, 10, 10), np.uint8)
    seg[0, 1:4, 1:4] = 1  # 9 voxels
    seg[0, 7:9, 7:9] = 1  # 4 voxels: removed
    seg[0, 6, 1] = 2  # other label untouched
    out = remove_all_but_largest_component_from_segmentation(seg, 1)
    assert out[0, 7:9, 7:9].sum() == 0 and out[0, 1:4, 1:4].min() == 1 and out[0, 6, 1] == 2
    assert seg[0, 7, 7] == 1  # works on a copy
    seg[0, 7:10, 7:10] = 1  # now 9 voxels too: a tie keeps both
    out = remove_all_but_largest_component_from_segmentation(seg, [1])
    assert (out == seg).all()
    assert (remove_all_but_largest_component_from_segmentation(seg, 5) == seg).all()  # empty mask
    # diagonal neighbours are connected (full connectivity), so nothing is removed here
    diag = np.zeros((1, 4, 4), np.uint8)
    diag[0, 0, 0] = diag[0, 1, 1] = diag[0, 3, 3] = 1
    out = remove_all_but_largest_component_from_segmentation(diag, 1, background_label=7)
    assert out[0, 0, 0] == 1 and out[0, 1, 1] == 1 and out[0, 3, 3] == 7


def test_same_as_skimage_full_connectivity():
    rs = np.random.RandomState(3)
    for _ in range(5):
        seg = (rs.rand(12, 13, 14) > 0.7).astype(np.uint8) * rs.randint(1, 3, (12, 13, 14)).astype(np.uint8)
        for lor in ([1, 2], 1, (1, 2)):
            labels = lor if isinstance(lor, (list, tuple)) else [lor]
            mask = np.isin(seg, labels)
            comp = measure.label(mask, connectivity=3)
            sizes = np.bincount(comp.ravel())[1:]
            keep = np.isin(comp, np.flatnonzero(sizes == sizes.max()) + 1)
            expected = seg.copy()
            expected[mask & ~keep] = 0
            assert (remove_all_but_largest_component_from_segmentation(seg, lor) == expected).all()


def test_determine_postprocessing_matches_reference(tmp_path):
    make_case_folders(tmp_path)
    pred = tmp_path / 'pred'
    fns, kwargs = determine_postprocessing(str(pred), str(tmp_path / 'gt'), None, None, num_processes=1)
    assert [f.__name__ for f in fns] == ['remove_all_but_largest_component_from_segmentation'] * 2
    assert kwargs == [{'labels_or_regions': [1, 2]}, {'labels_or_regions': 2}]
    assert (pred / 'postprocessing.json').read_text() == REFERENCE_POSTPROCESSING_JSON
    assert sorted(os.listdir(pred / 'postprocessed')) == ['case_0.nii.gz', 'case_1.nii.gz', 'summary.json']
    # as the reference's: the chosen candidate's summary names its files in the scratch folder postprocessed/temp
    cases = json.loads((pred / 'postprocessed' / 'summary.json').read_text())['metric_per_case']
    assert [os.path.relpath(c['prediction_file'], pred) for c in cases] == [
        os.path.join('postprocessed', 'temp', 'keep_largest_perClassOrRegion', f'case_{i}.nii.gz') for i in range(2)]
    for c in range(2):  # postprocessed predictions equal the reference segmentation here
        assert (_read(pred / 'postprocessed' / f'case_{c}.nii.gz') == _read(tmp_path / 'gt' / f'case_{c}.nii.gz')
                ).sum() == 20 ** 3 - 1
    ours = load_postprocessing_pickle(str(pred / 'postprocessing.pkl'))
    assert ours[1] == kwargs and ours[0][0] is remove_all_but_largest_component_from_segmentation
    # the same pickle as the reference's, NumPy integer labels included
    assert (pred / 'postprocessing.pkl').read_bytes() == base64.b64decode(''.join(REFERENCE_PKL_B64))

    # the reference's pkl for the same input loads (safely) and applying it gives the same files
    ref_pkl = tmp_path / 'ref_postprocessing.pkl'
    ref_pkl.write_bytes(base64.b64decode(''.join(REFERENCE_PKL_B64)))
    ref_fns, ref_kwargs = load_postprocessing_pickle(str(ref_pkl))
    assert ref_fns == [remove_all_but_largest_component_from_segmentation] * 2 and ref_kwargs == kwargs
    apply_postprocessing_to_folder(str(pred), str(tmp_path / 'applied'), ref_fns, ref_kwargs, num_processes=1)
    assert sorted(os.listdir(tmp_path / 'applied')) == ['.nnUNetv2_apply_postprocessing.json', 'case_0.nii.gz',
                                                        'case_1.nii.gz']
    for c in range(2):
        assert (_read(tmp_path / 'applied' / f'case_{c}.nii.gz') ==
                _read(pred / 'postprocessed' / f'case_{c}.nii.gz')).all()


def test_region_dataset_and_remove_postprocessed(tmp_path):
    make_case_folders(tmp_path, regions=True)
    pred = tmp_path / 'pred'
    # an existing summary.json is trusted as the baseline
    fns, kwargs = determine_postprocessing(str(pred), str(tmp_path / 'gt'), str(pred / 'plans.json'),
                                           str(pred / 'dataset.json'), 1, keep_postprocessed_files=False)
    assert kwargs == [{'labels_or_regions': [1, 2]}, {'labels_or_regions': 2}]
    assert not (pred / 'postprocessed').exists()
    pp = json.loads((pred / 'postprocessing.json').read_text())
    assert sorted(pp['input_folder']['mean']) == ['(1, 2)', '2']
    assert pp['postprocessed']['foreground_mean']['Dice'] > pp['input_folder']['foreground_mean']['Dice']


def test_nothing_helps_copies_everything(tmp_path):
    make_case_folders(tmp_path)
    pred = tmp_path / 'pred'
    for c in range(2):  # perfect predictions: no step can improve them
        shutil.copy(tmp_path / 'gt' / f'case_{c}.nii.gz', pred / f'case_{c}.nii.gz')
    # ... except the temporary a killed prediction writer left behind: not copied into 'postprocessed'
    from nnunetv2.file_io import TMP_PREFIX
    shutil.copy(pred / 'case_0.nii.gz', pred / f'{TMP_PREFIX}0123456789ab_case_0.nii.gz')
    fns, kwargs = determine_postprocessing(str(pred), str(tmp_path / 'gt'), None, None, 1)
    assert fns == [] and kwargs == []
    assert sorted(os.listdir(pred / 'postprocessed')) == ['case_0.nii.gz', 'case_1.nii.gz', 'dataset.json',
                                                          'plans.json', 'summary.json']
    with open(pred / 'postprocessing.pkl', 'rb') as f:
        assert pickle.load(f) == ([], [])


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_unsafe_or_foreign_pickles_refused(tmp_path):
    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(pickle.dumps(([_Evil()], [{}])))
    with pytest.raises(UserError, match=r'(posix|os)\.system.*refusing'):
        load_postprocessing_pickle(str(evil))
    other = tmp_path / 'other.pkl'
    other.write_bytes(pickle.dumps({'a': 1}))
    with pytest.raises(UserError, match='not a postprocessing file'):
        load_postprocessing_pickle(str(other))
    garbage = tmp_path / 'garbage.pkl'
    garbage.write_bytes(b'not a pickle')
    with pytest.raises(UserError, match='not a postprocessing file'):
        load_postprocessing_pickle(str(garbage))
    with pytest.raises(UserError, match='does not exist'):
        load_postprocessing_pickle(str(tmp_path / 'missing.pkl'))


def test_apply_cli(tmp_path, monkeypatch, capsys):
    make_case_folders(tmp_path)
    pred = tmp_path / 'pred'
    pkl = tmp_path / 'pp.pkl'
    pkl.write_bytes(base64.b64decode(''.join(REFERENCE_PKL_B64)))
    monkeypatch.setattr(sys, 'argv', ['x', '-i', str(pred), '-o', str(tmp_path / 'out'), '-pp_pkl_file', str(pkl),
                                      '-np', '1'])
    entry_point_apply_postprocessing()
    assert sorted(os.listdir(tmp_path / 'out')) == ['.nnUNetv2_apply_postprocessing.json', 'case_0.nii.gz',
                                                    'case_1.nii.gz']
    os.remove(pred / 'plans.json')  # like an nnUNetv2_ensemble output: -plans_json is needed
    with pytest.raises(SystemExit) as e:
        entry_point_apply_postprocessing()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith('nnU-Net error:') and 'plans.json' in err and '-plans_json' in err
    monkeypatch.setattr(sys, 'argv', ['x', '-h'])
    with pytest.raises(SystemExit):
        entry_point_apply_postprocessing()
    out = capsys.readouterr().out
    assert out.startswith('usage: x ') and 'nnUNetv2_determine_postprocessing' in out


@pytest.mark.parametrize("ndim", [2, 3])
def test_component_labels_match_scipy_on_small_and_flat_masks(ndim):
    """cc3d 4.1.1 mislabels some 2-D masks with connectivity 8 and fails on 3-D masks with two axes of length 1: the
    components must be scipy's full-connectivity ones for every shape."""
    from scipy import ndimage
    from nnunetv2.postprocessing._components import label_components
    rs = np.random.RandomState(0)
    masks = [np.array([[0, 0, 0, 1]], dtype=bool)]
    masks += [rs.rand(*rs.randint(1, 6, ndim)) < 0.5 for _ in range(1500)]
    for mask in masks:
        ours = label_components(mask)
        expected = ndimage.label(mask, np.ones((3,) * mask.ndim, bool))[0]
        assert ours.shape == mask.shape and ((ours > 0) == mask).all(), mask
        pairs = set(zip(ours[mask].tolist(), expected[mask].tolist()))  # same partition, numbering aside
        assert len(pairs) == len(np.unique(expected[mask])) == len(np.unique(ours[mask])), mask


def test_largest_components_with_many_ties_and_one_component():
    """Several equally large components are all kept, also past the point where a lookup table is used."""
    from nnunetv2.postprocessing._components import largest_components
    for n_blobs in (2, 5, 12):
        mask = np.zeros((3, 8, 4 * n_blobs), bool)
        for b in range(n_blobs):
            mask[1, 2:4, 4 * b:4 * b + 2] = True  # 4 voxels each, separated by two empty columns
        mask[0, 7, 0] = True  # a smaller one: removed
        kept = largest_components(mask)
        assert kept.sum() == 4 * n_blobs and not kept[0, 7, 0] and (kept <= mask).all()
    one = np.zeros((5, 5), bool)
    one[1:3, 1:4] = True
    kept = largest_components(one)
    assert np.array_equal(kept, one) and kept is not one


def test_postprocessing_of_8bit_file_equals_float_reading(tmp_path):
    """Component removal reads 8-bit files in their own type: the file it writes equals what reading as float32
    (read_seg of a subclass) gives."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.postprocessing.remove_connected_components import load_postprocess_save

    class FloatReader(SimpleITKIO):
        pass

    seg = np.zeros((12, 14, 16), np.uint8)
    seg[1:5, 1:5, 1:5] = 1
    seg[8:10, 8:10, 8:10] = 1
    seg[6, 6, 10:14] = 2
    seg[0, 13, 15] = 2
    im = sitk.GetImageFromArray(seg)
    im.SetSpacing((0.7, 0.8, 2.5))
    sitk.WriteImage(im, str(tmp_path / 'in.nii.gz'))
    fns = [remove_all_but_largest_component_from_segmentation] * 2
    kwargs = [{'labels_or_regions': 1}, {'labels_or_regions': [2], 'background_label': 0}]
    for rw, name in ((SimpleITKIO(), 'own.nii.gz'), (FloatReader(), 'float.nii.gz')):
        load_postprocess_save(str(tmp_path / 'in.nii.gz'), str(tmp_path / name), rw, fns, kwargs)
    own, flt = sitk.ReadImage(str(tmp_path / 'own.nii.gz')), sitk.ReadImage(str(tmp_path / 'float.nii.gz'))
    assert own.GetPixelID() == flt.GetPixelID() == sitk.sitkUInt8 and own.GetSpacing() == flt.GetSpacing()
    out = sitk.GetArrayFromImage(own)
    assert np.array_equal(out, sitk.GetArrayFromImage(flt))
    assert out[9, 9, 9] == 0 and out[2, 2, 2] == 1 and out[6, 6, 12] == 2 and out[0, 13, 15] == 0
