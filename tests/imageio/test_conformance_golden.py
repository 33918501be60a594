"""Conformance with the reference on its five golden raw datasets (skips without ../shared).

Every raw file read with the automatically chosen reader must decode to the arrays the reference's
``raw_checksums.json`` hashes, with the same geometry; the properties dict of the first case of each dataset must
equal (values and types) what the reference nnU-Net 2.8.1 returned. Those expectations were recorded by running
the reference once by hand; they are literals here, the reference is never imported.
"""
import hashlib
import json
from collections import defaultdict

import numpy as np
import pytest

from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient
from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

F64 = np.float64
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def sitk_props(spacing_xyz, origin):
    """The reference's SimpleITKIO dict: ITK geometry as tuples of float, nnU-Net spacing as list of float64."""
    return {'sitk_stuff': {'spacing': tuple(spacing_xyz), 'origin': tuple(origin), 'direction': IDENTITY},
            'spacing': [F64(s) for s in spacing_xyz[::-1]]}


# (reader class, first case's channel files, label file, expected properties) as observed with the reference
EXPECTED = {
    'Dataset901_SynthCT3D': (SimpleITKIO, ['ct_000_0000.nii.gz'], 'ct_000.nii.gz', sitk_props(
        (0.7156000137329102, 0.7156000137329102, 4.994500160217285),
        (-168.71800231933594, -165.92599487304688, -360.6919860839844))),
    'Dataset902_SynthMRRegions': (SimpleITKIO, ['mr_000_0000.nii.gz', 'mr_000_0001.nii.gz'], 'mr_000.nii.gz',
                                  sitk_props((0.917900025844574, 0.9394000172615051, 1.0666999816894531),
                                             (-134.95700073242188, -233.0959930419922, -248.14999389648438))),
    'Dataset903_SynthNatural2D': (NaturalImage2DIO, ['nat_000_0000.png'], 'nat_000.png', {'spacing': (999, 1, 1)}),
    'Dataset904_SynthSparse3D': (SimpleITKIO, ['sp_000_0000.nii.gz'], 'sp_000.nii.gz', sitk_props(
        (0.9192000031471252, 0.9192000031471252, 1.5800000429153442),
        (-136.6750030517578, -130.2259979248047, -218.73899841308594))),
    'Dataset905_SynthBig3D': (SimpleITKIO, ['big_000_0000.nii.gz'], 'big_000.nii.gz', sitk_props(
        (1.0, 1.0, 1.0), (-172.38299560546875, -238.43099975585938, -584.4140014648438))),
}


def assert_same_typed(ours, ref, where='props'):
    """Equal values and identical container/scalar types, recursively."""
    assert type(ours) is type(ref), f"{where}: {type(ours).__name__} != {type(ref).__name__}"
    if isinstance(ref, dict):
        assert ours.keys() == ref.keys(), where
        for k in ref:
            assert_same_typed(ours[k], ref[k], f"{where}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        assert len(ours) == len(ref), where
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same_typed(a, b, f"{where}[{i}]")
    else:
        assert ours == ref, f"{where}: {ours!r} != {ref!r}"


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize('dataset', sorted(EXPECTED))
def test_golden_raw_files_decode_identically(golden_raw, shared_dir, dataset):
    root = golden_raw(dataset)
    checks = json.loads((shared_dir / 'reference' / dataset / 'raw_checksums.json').read_text())['files']
    dataset_json = json.loads((root / 'dataset.json').read_text())
    ref_cls, first_images, first_label, expected_props = EXPECTED[dataset]
    rw_cls = determine_reader_writer_from_dataset_json(dataset_json, str(root / 'imagesTr' / first_images[0]),
                                                       verbose=False)
    assert rw_cls is ref_cls
    rw = rw_cls()
    natural = rw_cls is NaturalImage2DIO

    # group image channel files by case, as nnU-Net reads them (one read_images call per case)
    cases = defaultdict(list)
    for rel in checks:
        if rel.startswith('images'):
            folder, name = rel.split('/')
            cases[(folder, name[:-len(dataset_json['file_ending']) - 5])].append(rel)
    n_checked = 0
    props_compared = 0
    for (folder, case), rels in sorted(cases.items()):
        rels = sorted(rels)
        data, props = rw.read_images([str(root / r) for r in rels])
        assert data.dtype == np.float32
        if natural and len(rels) == 1 and len(checks[rels[0]]['shape']) == 3:  # one RGB file -> 3 channels
            channels = [data[:, 0].transpose(1, 2, 0)]
        else:
            assert data.shape[0] == len(rels)
            channels = [data[i] for i in range(len(rels))]
        for rel, ch in zip(rels, channels):
            info = checks[rel]
            assert sha(np.ascontiguousarray(ch.astype(info['dtype'])).reshape(info['shape'])) == info['sha256'], rel
            check_geometry(props, info, rel)
            n_checked += 1
        if folder == 'imagesTr' and case + '_0000' + dataset_json['file_ending'] == first_images[0]:
            assert_same_typed(props, expected_props)
            props_compared += 1
    for rel, info in checks.items():
        if rel.startswith('labels'):
            seg, props = rw.read_seg(str(root / rel))
            assert seg.dtype == np.float32 and seg.shape[0] == 1
            assert sha(np.ascontiguousarray(seg.astype(info['dtype'])).reshape(info['shape'])) == info['sha256'], rel
            check_geometry(props, info, rel)
            if rel == f'labelsTr/{first_label}':
                assert_same_typed(props, expected_props)
                props_compared += 1
            n_checked += 1
    assert n_checked == len(checks)
    assert props_compared == 2  # the first case's images and its label


def check_geometry(props: dict, info: dict, rel: str) -> None:
    if 'spacing_xyz' not in info:  # natural images carry no geometry
        assert props['spacing'] == (999, 1, 1), rel
        return
    st = props['sitk_stuff']
    assert list(st['spacing']) == info['spacing_xyz'], rel
    assert list(st['origin']) == info['origin_xyz'], rel
    assert list(st['direction']) == info['direction'], rel
    assert props['spacing'] == info['spacing_xyz'][::-1], rel


def test_golden_case_with_nibabel_readers(golden_raw):
    """NibabelIO(WithReorient) on a golden SimpleITK-written file: values/types as the reference returned them."""
    f = str(golden_raw('Dataset901_SynthCT3D') / 'imagesTr' / 'ct_000_0000.nii.gz')
    original = [[-0.7156000137329102, 0.0, 0.0, 168.71800231933594],
                [0.0, -0.7156000137329102, 0.0, 165.92599487304688],
                [0.0, 0.0, 4.994500160217285, -360.6919860839844], [0.0, 0.0, 0.0, 1.0]]
    reoriented = [[0.7156000137329102, 0.0, 0.0, 110.0388011932373],
                  [0.0, 0.7156000137329102, 0.0, 95.08159351348877],
                  [0.0, 0.0, 4.994500160217285, -360.6919860839844], [0.0, 0.0, 0.0, 1.0]]
    spacing = [4.994500160217285, 0.7156000137329102, 0.7156000137329102]
    sitk_data, _ = SimpleITKIO().read_images([f])
    data, props = NibabelIO().read_images([f])
    np.testing.assert_array_equal(data, sitk_data)  # same axis order as SimpleITK
    assert_same_typed(props['spacing'], spacing)
    assert props['nibabel_stuff'].keys() == {'original_affine'}
    assert props['nibabel_stuff']['original_affine'].dtype == np.float64
    assert props['nibabel_stuff']['original_affine'].tolist() == original
    data_r, props_r = NibabelIOWithReorient().read_images([f])
    assert sha(data_r) == 'c54423c9b633b58e31e130e902713d9ccdeef13c7fbd21e42b91acb8e12d930f'
    assert_same_typed(props_r['spacing'], spacing)
    assert props_r['nibabel_stuff']['original_affine'].tolist() == original
    assert props_r['nibabel_stuff']['reoriented_affine'].tolist() == reoriented
