"""Conformance: our dataset_fingerprint.json of each golden raw dataset equals the reference's."""
import json
import math

import pytest

from nnunetv2.experiment_planning.dataset_fingerprint.intensity_statistics import _sums_blockwise

# the golden files were written by the reference under NumPy 2.4, which sums a float array as one pairwise tree; older
# NumPy (2.2, the newest for Python 3.10; 1.26) sums it in 8192-value blocks, so there the reference's own means and
# stds differ by a few 1e-6 (measured: up to 4e-6 relative on these datasets), and so do ours, which follow the
# installed NumPy
_REL_TOL = 1e-5 if _sums_blockwise() else 1e-6

GOLDEN_DATASETS = ("Dataset901_SynthCT3D", "Dataset902_SynthMRRegions", "Dataset903_SynthNatural2D",
                   "Dataset904_SynthSparse3D", "Dataset905_SynthBig3D")


def _assert_same(ours, ref, path="fingerprint"):
    if isinstance(ref, dict):
        assert set(ours) == set(ref), f"{path}: keys differ: {set(ours) ^ set(ref)}"
        for k in ref:
            _assert_same(ours[k], ref[k], f"{path}/{k}")
    elif isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref), f"{path}: lengths differ"
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(ref, int):
        assert ours == ref and type(ours) is type(ref), f"{path}: {ours!r} != {ref!r}"
    else:
        # measured: every value identical to the reference's files (Zen 3) on a Zen 4; 1e-6 relative leaves room for
        # numpy's CPU-dependent (vector-width) summation order in the intensity statistics
        assert isinstance(ours, float) and math.isclose(ours, ref, rel_tol=_REL_TOL, abs_tol=1e-12), \
            f"{path}: {ours!r} != {ref!r}"


@pytest.mark.parametrize("dataset", GOLDEN_DATASETS)
def test_fingerprint_equals_reference(dataset, golden_raw, shared_dir, nnunet_dirs, monkeypatch):
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    raw = golden_raw(dataset)
    monkeypatch.setenv("nnUNet_raw", str(raw.parent))
    extractor = DatasetFingerprintExtractor(dataset, num_processes=2)
    extractor.show_progress_bar = False
    fingerprint = extractor.run(overwrite_existing=True)
    written = nnunet_dirs["nnUNet_preprocessed"] / dataset / "dataset_fingerprint.json"
    with open(written) as f:
        on_disk = json.load(f)
    with open(shared_dir / "reference" / dataset / "dataset_fingerprint.json") as f:
        reference = json.load(f)
    _assert_same(on_disk, reference)
    assert json.loads(json.dumps(fingerprint)) == on_disk
    # same layout as the reference file: sorted keys, indent 4
    assert written.read_text() == json.dumps(on_disk, sort_keys=True, indent=4)
