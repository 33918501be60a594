"""How public inference scripts name their inputs and outputs when they drive nnUNetPredictor from Python (patterns
read from public code, no client code here).

* Images read with another reader than the model's (SimpleITKIO for a model whose plans name NibabelIO, the case of
  a public nnU-Net issue), or properties made by hand ({'spacing': ...}), handed in together with an output file
  name. The reference predicts and then fails with a bare ``KeyError: 'nibabel_stuff'`` / ``'sitk_stuff'``. Ours
  names the missing geometry and the reader to use, before any prediction.
* Output file names in a folder that does not exist yet (one output folder per case, or ``out/new/case``), and
  pathlib paths for input and output folders or files. The reference fails after predicting (FileNotFoundError,
  "unsupported operand type(s) for +: 'PosixPath' and 'str'") or, for a ``Path`` output folder of
  ``predict_from_files``, silently writes nothing and returns arrays; ours writes the files asked for.
* A flat list of file names where a list of cases (each a list of channel files) is expected: the reference's
  workers die ("Background workers died") or it fails on its bookkeeping file; ours said "Input file not found: /."
  (it took each character of a name for a file); now one line says which form is needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2.errors import UserError
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from _tiny_plans import write_tiny_model


@pytest.fixture(scope='module')
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp('Dataset079_Outputs') / 'nnUNetTrainer__nnUNetPlans__3d_fullres'
    write_tiny_model(folder, 'Dataset079_Outputs', {'background': 0, 'a': 1, 'b': 2}, seed=79)
    p = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device('cpu'),
                        allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    return p


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Two one-channel cases as files (a_0000.nii.gz, b_0000.nii.gz)."""
    folder = tmp_path_factory.mktemp('inputs')
    rng = np.random.default_rng(4)
    for name, shape in (('a', (14, 20, 18)), ('b', (12, 18, 20))):
        im = sitk.GetImageFromArray(rng.normal(0, 1, shape).astype(np.float32))
        im.SetSpacing((2.0, 2.0, 2.0))
        im.SetOrigin((3.0, -1.0, 7.0))
        sitk.WriteImage(im, str(folder / f'{name}_0000.nii.gz'))
    return folder


def _seg(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _no_prediction(predictor, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError('predicted although the output cannot be written')
    monkeypatch.setattr(predictor, 'predict_logits_from_preprocessed_data', fail)


def test_properties_of_another_reader_are_named_before_predicting(predictor, images, tmp_path, monkeypatch):
    img, props = NibabelIO().read_images([str(images / 'a_0000.nii.gz')])
    _no_prediction(predictor, monkeypatch)
    with pytest.raises(UserError) as e:  # was: KeyError 'sitk_stuff' after the prediction
        predictor.predict_single_npy_array(img, props, None, str(tmp_path / 'case'), False)
    assert "with SimpleITKIO: it needs the image properties ['sitk_stuff']" in str(e.value)
    assert "these properties come from NibabelIO" in str(e.value)
    assert "SimpleITKIO().read_images([...])" in e.value.hint
    with pytest.raises(UserError, match=r"properties have none \(keys: spacing\)"):
        predictor.predict_from_list_of_npy_arrays([img, img], None, [{'spacing': [2.0, 2.0, 2.0]}] * 2,
                                                  [str(tmp_path / 'x'), str(tmp_path / 'y')], 1,
                                                  num_processes_segmentation_export=1)
    assert list(tmp_path.iterdir()) == []


def test_returned_predictions_need_only_the_spacing(predictor, images):
    img, props = SimpleITKIO().read_images([str(images / 'a_0000.nii.gz')])
    expected = predictor.predict_single_npy_array(img, props)
    np.testing.assert_array_equal(predictor.predict_single_npy_array(img, {'spacing': props['spacing']}), expected)


def test_writers_name_missing_geometry(tmp_path):
    seg = np.zeros((4, 5, 6), dtype=np.uint8)
    sitk_props = {'sitk_stuff': {'spacing': (1., 1., 1.), 'origin': (0., 0., 0.), 'direction': (1., 0., 0., 0., 1.,
                                                                                                0., 0., 0., 1.)},
                  'spacing': [1., 1., 1.]}
    with pytest.raises(UserError, match=r"with NibabelIOWithReorient: it needs the image properties "
                                        r"\['nibabel_stuff'\] .* come from SimpleITKIO"):
        NibabelIOWithReorient().write_seg(seg, str(tmp_path / 'x.nii.gz'), sitk_props)
    nib_props = {'nibabel_stuff': {'original_affine': np.eye(4)}, 'spacing': [1., 1., 1.]}
    with pytest.raises(UserError, match=r"\['nibabel_stuff'\]\['reoriented_affine'\]"):
        NibabelIOWithReorient().write_seg(seg, str(tmp_path / 'x.nii.gz'), nib_props)
    with pytest.raises(UserError, match=r"with SimpleITKIO: .* come from NibabelIO"):
        SimpleITKIO().write_seg(seg, str(tmp_path / 'x.nii.gz'), nib_props)
    assert list(tmp_path.iterdir()) == []
    SimpleITKIO().write_seg(seg, str(tmp_path / 'x.nii.gz'), sitk_props)
    NibabelIO().write_seg(seg, str(tmp_path / 'y.nii.gz'), nib_props)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.nii.gz', 'y.nii.gz']


def test_output_files_in_new_folders_and_as_paths(predictor, images, tmp_path):
    img, props = SimpleITKIO().read_images([str(images / 'a_0000.nii.gz')])
    img_b, props_b = SimpleITKIO().read_images([str(images / 'b_0000.nii.gz')])
    expected = predictor.predict_single_npy_array(img, dict(props))
    expected_b = predictor.predict_single_npy_array(img_b, dict(props_b))

    # was: FileNotFoundError for new/case.npz after the prediction
    assert predictor.predict_single_npy_array(img, dict(props), None, str(tmp_path / 'new' / 'case'), True) is None
    np.testing.assert_array_equal(_seg(tmp_path / 'new' / 'case.nii.gz'), expected)
    assert (tmp_path / 'new' / 'case.npz').is_file() and (tmp_path / 'new' / 'case.pkl').is_file()
    # was: TypeError PosixPath + str
    predictor.predict_single_npy_array(img, dict(props), None, tmp_path / 'path' / 'case', False)
    np.testing.assert_array_equal(_seg(tmp_path / 'path' / 'case.nii.gz'), expected)

    # one folder per case
    ret = predictor.predict_from_list_of_npy_arrays([img, img_b], None, [dict(props), dict(props_b)],
                                                    [tmp_path / 'x' / 'a', str(tmp_path / 'y' / 'b')], 1,
                                                    save_probabilities=True, num_processes_segmentation_export=1)
    assert ret == [None, None]
    np.testing.assert_array_equal(_seg(tmp_path / 'x' / 'a.nii.gz'), expected)
    np.testing.assert_array_equal(_seg(tmp_path / 'y' / 'b.nii.gz'), expected_b)
    assert (tmp_path / 'y' / 'b.npz').is_file()

    out = tmp_path / 'files'
    ret = predictor.predict_from_files_sequential([[images / 'a_0000.nii.gz'], [str(images / 'b_0000.nii.gz')]],
                                                  [out / 'one' / 'a', out / 'two' / 'b'])
    assert ret == []
    np.testing.assert_array_equal(_seg(out / 'one' / 'a.nii.gz'), expected)
    np.testing.assert_array_equal(_seg(out / 'two' / 'b.nii.gz'), expected_b)


def test_pathlib_folders_for_predict_from_files(predictor, images, tmp_path):
    expected = predictor.predict_from_files_sequential(str(images), None)
    # the reference: a Path input folder is a TypeError; a Path output folder means "return arrays", nothing written
    ret = predictor.predict_from_files(images, tmp_path / 'pred', num_processes_preprocessing=1,
                                       num_processes_segmentation_export=1)
    assert ret == [None, None]
    for case, exp in zip(('a', 'b'), expected):
        np.testing.assert_array_equal(_seg(tmp_path / 'pred' / f'{case}.nii.gz'), exp)
    predictor.predict_from_files_sequential(Path(images), Path(tmp_path / 'seq'))
    for case, exp in zip(('a', 'b'), expected):
        np.testing.assert_array_equal(_seg(tmp_path / 'seq' / f'{case}.nii.gz'), exp)


@pytest.mark.parametrize('as_path', [False, True])
def test_a_flat_list_of_file_names_is_refused(predictor, images, tmp_path, as_path):
    files = [images / 'a_0000.nii.gz', images / 'b_0000.nii.gz']
    files = files if as_path else [str(f) for f in files]
    for call in (lambda: predictor.predict_from_files_sequential(files, str(tmp_path / 'out')),
                 lambda: predictor.predict_from_files(files, str(tmp_path / 'out'), num_processes_preprocessing=1,
                                                      num_processes_segmentation_export=1)):
        with pytest.raises(UserError) as e:  # was: "Input file not found: /."
            call()
        assert "The input is a list of file names" in str(e.value) and "a_0000.nii.gz" in str(e.value)
        assert "[['a_0000.nii.gz', 'a_0001.nii.gz']]" in e.value.hint
    assert not (tmp_path / 'out').exists()


def test_a_fold_folder_given_as_model_folder_points_to_its_parent(predictor, tmp_path_factory):
    folder = tmp_path_factory.mktemp('Dataset080_Fold') / 'nnUNetTrainer__nnUNetPlans__3d_fullres'
    write_tiny_model(folder, 'Dataset080_Fold', {'background': 0, 'a': 1}, seed=80)
    p = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device('cpu'))
    with pytest.raises(UserError) as e:
        p.initialize_from_trained_model_folder(str(folder / 'fold_0'), use_folds=(0,))
    assert f"{folder / 'fold_0'} has no dataset.json" in e.value.message
    assert e.value.hint == (f"{folder / 'fold_0'} is one fold of the model: pass the folder above it, {folder}, and "
                            f"choose the fold with use_folds=(0,) (-f 0).")


def test_writer_subclass_with_its_own_write_seg_is_not_checked():
    """A project's reader/writer derived from SimpleITKIO that stores its geometry its own way (and writes with it)
    must not be held to SimpleITKIO's 'sitk_stuff'."""
    import numpy as np
    from nnunetv2.imageio.base_reader_writer import write_properties_problem
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    class OwnGeometryIO(SimpleITKIO):
        def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
            pass

    class SameWriterIO(SimpleITKIO):
        pass

    assert write_properties_problem(OwnGeometryIO, {'spacing': [1, 1, 1], 'own': {}}, 'x.nii.gz') is None
    assert "['sitk_stuff']" in write_properties_problem(SameWriterIO, {'spacing': [1, 1, 1]}, 'x.nii.gz')
