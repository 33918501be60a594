"""DefaultPreprocessor.run_case against the reference's preprocessed first training case of every golden dataset and
configuration (data max |diff| <= 1e-4, seg identical, properties equal incl. the sampled class locations), and the
on-disk format of run_case_save against storage.json."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.conformance

SMALL = ("Dataset901_SynthCT3D", "Dataset902_SynthMRRegions", "Dataset903_SynthNatural2D", "Dataset904_SynthSparse3D")
BIG = "Dataset905_SynthBig3D"


def _jsonable(o):
    """Properties dict -> the README's JSON conventions (int keys -> "1", tuple keys -> "[1, 2]", arrays -> lists)."""
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if isinstance(k, tuple):
                k = json.dumps([int(i) for i in k])
            elif not isinstance(k, str):
                k = str(int(k))
            out[k] = _jsonable(v)
        return out
    if isinstance(o, (list, tuple)):
        return [_jsonable(i) for i in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return o.item()
    return o


def _configurations(shared_dir, ds):
    folder = shared_dir / "reference" / ds / "preprocessed"
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _run_first_case(shared_dir, golden_raw, ds, configuration):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    ref_folder = shared_dir / "reference" / ds / "preprocessed" / configuration
    case = next(ref_folder.glob("*_properties.json")).name[:-len("_properties.json")]
    raw = Path(golden_raw(ds))
    dataset_json = json.loads((raw / "dataset.json").read_text())
    ending = dataset_json["file_ending"]
    images = sorted(str(p) for p in (raw / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"))
    plans_manager = PlansManager(str(shared_dir / "reference" / ds / "nnUNetPlans.json"))
    cm = plans_manager.get_configuration(configuration)
    data, seg, props = DefaultPreprocessor(verbose=False).run_case(images, str(raw / "labelsTr" / f"{case}{ending}"),
                                                                   plans_manager, cm, dataset_json)
    return ref_folder, case, data, seg, props, (images, str(raw / "labelsTr" / f"{case}{ending}"), plans_manager, cm,
                                                dataset_json)


def _small_params():
    # the shared_dir fixture is not available at collection time; same location rule as conftest.py
    import os
    shared = Path(os.environ.get("NNUNET_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))
    params = []
    for ds in SMALL:
        folder = shared / "reference" / ds / "preprocessed"
        configs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ["2d"]
        params += [(ds, c) for c in configs]
    return params


@pytest.mark.parametrize("ds,configuration", _small_params())
def test_run_case_matches_reference(shared_dir, golden_raw, ds, configuration):
    ref_folder, case, data, seg, props, _ = _run_first_case(shared_dir, golden_raw, ds, configuration)
    golden = np.load(ref_folder / f"{case}.npz")
    assert data.dtype == np.float32 and data.shape == golden["data"].shape
    # measured against these files (made on a Zen 3) on a Zen 4: max |diff| 4.4e-16, elsewhere bit-identical; 1e-4
    # (~100 float32 steps of the largest normalised values) leaves room for float32 reductions of the normalisation
    # statistics, whose summation order numpy picks by the CPU's vector width
    assert np.abs(data - golden["data"]).max() <= 1e-4
    assert seg.shape == golden["seg"].shape
    np.testing.assert_array_equal(seg, golden["seg"])
    assert _jsonable(props) == json.loads((ref_folder / f"{case}_properties.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("configuration", ["3d_lowres", "3d_fullres"])
def test_run_case_matches_reference_big(shared_dir, golden_raw, configuration):
    if configuration not in _configurations(shared_dir, BIG):
        pytest.skip(f"{configuration} not in the golden data")
    ref_folder, case, data, seg, props, _ = _run_first_case(shared_dir, golden_raw, BIG, configuration)
    summary = json.loads((ref_folder / f"{case}_summary.json").read_text())
    crop = np.load(ref_folder / f"{case}_centre_crop.npz")
    assert list(data.shape) == summary["data"]["shape"]
    sl = (slice(None),) + tuple(slice(int(a), int(a) + int(b)) for a, b in zip(crop["crop_start"], crop["crop_size"]))
    assert np.abs(data[sl] - crop["data"]).max() <= 1e-4
    np.testing.assert_array_equal(seg[sl], crop["seg"])
    d64 = data.astype(np.float64)
    # measured Zen 3 (these files) vs Zen 4: all four statistics identical; tolerances as for the small datasets
    assert d64.sum() == pytest.approx(summary["data"]["sum_float64"], rel=1e-6)
    assert d64.std() == pytest.approx(summary["data"]["std"], rel=1e-5)
    assert float(data.min()) == pytest.approx(summary["data"]["min"], abs=1e-4)
    assert float(data.max()) == pytest.approx(summary["data"]["max"], abs=1e-4)
    values, counts = np.unique(seg, return_counts=True)
    assert {str(int(v)): int(c) for v, c in zip(values, counts)} == summary["seg"]["counts"]
    assert hashlib.sha256(np.ascontiguousarray(seg.astype(np.int16)).tobytes()).hexdigest() == summary["seg"]["sha256"]
    assert _jsonable(props) == json.loads((ref_folder / f"{case}_properties.json").read_text())


@pytest.mark.parametrize("ds", ["Dataset901_SynthCT3D", "Dataset902_SynthMRRegions"])
def test_saved_files_match_storage_json(shared_dir, golden_raw, tmp_path, ds):
    """Our .b2nd files carry the reference's dtypes, shapes, chunks, blocks, codec, clevel and filters."""
    import blosc2

    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    storage = json.loads((shared_dir / "reference" / ds / "preprocessed" / "storage.json").read_text())
    for configuration, expected in storage.items():
        if not (shared_dir / "reference" / ds / "preprocessed" / configuration).is_dir():
            continue
        _, case, _, _, _, args = _run_first_case(shared_dir, golden_raw, ds, configuration)
        out = tmp_path / configuration
        out.mkdir()
        DefaultPreprocessor(verbose=False).run_case_save(str(out / case), *args)
        assert sorted(p.name for p in out.iterdir()) == expected["files"]
        for key, suffix in (("data", ".b2nd"), ("seg", "_seg.b2nd")):
            arr = blosc2.open(str(out / f"{case}{suffix}"), mode="r")
            exp = expected[key]
            assert str(arr.dtype) == exp["dtype"]
            assert list(arr.shape) == exp["shape"]
            assert list(arr.chunks) == exp["chunks"] and list(arr.blocks) == exp["blocks"]
            cparams = arr.schunk.cparams
            assert str(cparams.codec) == exp["codec"] and cparams.clevel == exp["clevel"]
            assert [str(f) for f in cparams.filters] == exp["filters"]
            if "unique_values" in exp:
                assert np.unique(arr[:]).tolist() == exp["unique_values"]
        import pickle
        props = pickle.loads((out / f"{case}.pkl").read_bytes())
        assert sorted(props.keys()) == expected["properties_keys"]
