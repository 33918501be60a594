"""file_io.save_npz_compressed: the one atomic .npz writer."""
import pytest


def test_save_npz_compressed_is_atomic_and_keeps_the_name(tmp_path, monkeypatch):
    """The one helper behind probabilities (.npz of predictions and ensembles) and the old .npz dataset format."""
    import numpy as np
    from nnunetv2.file_io import save_npz_compressed
    target = tmp_path / "case.npz"
    save_npz_compressed(str(target), probabilities=np.ones((2, 3), np.float32), seg=np.zeros(3, np.int8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.npz"]  # no case.npz.npz, no temporary left
    with np.load(target) as z:
        assert sorted(z.files) == ["probabilities", "seg"] and z["probabilities"].sum() == 6

    def half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", half_then_fail)
    with pytest.raises(OSError) as e:
        save_npz_compressed(str(tmp_path / "other.npz"), probabilities=np.ones(2))
    assert e.value.filename == str(tmp_path / "other.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.npz"]
