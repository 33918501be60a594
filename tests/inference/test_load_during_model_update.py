"""A prediction loading a model while nnUNetv2_install_pretrained_model_from_zip installs a new version of it (same
folder: an update of a pretrained model). The install replaces the files one after the other and the loader reads
them one after the other; before, that gave exit 0 and a prediction by neither version (fold 0 of the old version,
fold 1 of the new one). The interleavings are made deterministic by patching the readers."""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

import nnunetv2.inference.model_loading as model_loading
import nnunetv2.model_sharing.model_update as model_update
from _cascade_model import DATASET_NAME, TRAINER, build_model_folders
from nnunetv2.errors import UserError
from nnunetv2.file_io import folder_is_locked
from nnunetv2.model_sharing.model_import import install_model_from_zip_file

MODEL = f"{TRAINER}__nnUNetPlans__3d_lowres"


@pytest.fixture
def model(tmp_path, monkeypatch):
    """Version A installed (folds 0 and 1); version B (other weights; dataset.json and plans.json that differ from
    A's by a 'version' entry only) as a zip; B's first weight."""
    results = tmp_path / "nnUNet_results"
    results.mkdir()
    monkeypatch.setenv("nnUNet_results", str(results))
    monkeypatch.delenv("nnUNet_compile", raising=False)
    model_dir = build_model_folders(results)["3d_lowres"]
    shutil.copytree(model_dir / "fold_0", model_dir / "fold_1")
    checkpoint = torch.load(model_dir / "fold_0" / "checkpoint_final.pth", weights_only=False)
    checkpoint["network_weights"] = {k: v + 1 for k, v in checkpoint["network_weights"].items()}
    new_checkpoint = tmp_path / "new_checkpoint.pth"
    torch.save(checkpoint, new_checkpoint)
    zip_b = tmp_path / "B.zip"
    with zipfile.ZipFile(zip_b, "w") as zf:
        for name in ("dataset.json", "plans.json"):
            content = json.loads((model_dir / name).read_text())
            (model_dir / name).write_text(json.dumps({**content, "version": "A"}))
            zf.writestr(f"{DATASET_NAME}/{MODEL}/{name}", json.dumps({**content, "version": "B"}))
        for fold in (0, 1):
            zf.write(new_checkpoint, f"{DATASET_NAME}/{MODEL}/fold_{fold}/checkpoint_final.pth")
    key, value = next(iter(checkpoint["network_weights"].items()))
    return model_dir, str(zip_b), new_checkpoint, (key, value)


def _versions(loaded, weight_b) -> list:
    key, value = weight_b
    return ["B" if torch.equal(p[key], value) else "A" for p in loaded.parameters]


def _all_versions(loaded, weight_b) -> list:
    """Which version each thing the loader read came from: dataset.json, plans.json, then every fold's weights."""
    return [loaded.dataset_json["version"], loaded.plans_manager.plans["version"], *_versions(loaded, weight_b)]


def _markers(model_dir: Path) -> list:
    return [n for n in os.listdir(model_dir) if n.startswith(model_update.MODEL_UPDATE_PREFIX)]


def test_install_between_two_checkpoint_reads_is_not_mixed_in(model, monkeypatch):
    model_dir, zip_b, _, weight_b = model
    real_load, calls = model_loading.load_checkpoint, []

    def load_checkpoint(fname, *args, **kwargs):
        calls.append(fname)
        if len(calls) == 2:  # fold 0 has been read: the new version is installed now
            install_model_from_zip_file(zip_b)
        return real_load(fname, *args, **kwargs)

    monkeypatch.setattr(model_loading, "load_checkpoint", load_checkpoint)
    loaded = model_loading.load_trained_model(str(model_dir), (0, 1))
    assert _versions(loaded, weight_b) == ["B", "B"]
    assert len(calls) == 4  # read once more, all of it
    assert _markers(model_dir) == []


@pytest.mark.parametrize("install_after", ["dataset.json", "plans.json"])
def test_install_after_the_json_files_were_read_gives_one_version_of_everything(model, monkeypatch, install_after):
    """The install lands after dataset.json (or after plans.json) was read and before the checkpoints are: without
    the check that gave A's dataset.json (and plans) with B's weights, which a weights-only comparison misses."""
    model_dir, zip_b, _, weight_b = model
    real_json, real_load, installed = model_loading.load_json, model_loading.load_checkpoint, []

    def install_once():
        if not installed:
            installed.append(True)
            install_model_from_zip_file(zip_b)

    def load_json(fname, *args, **kwargs):
        content = real_json(fname, *args, **kwargs)
        if install_after == "dataset.json":
            install_once()
        return content

    def load_checkpoint(fname, *args, **kwargs):
        install_once()  # plans.json has been read by now
        return real_load(fname, *args, **kwargs)

    monkeypatch.setattr(model_loading, "load_json", load_json)
    monkeypatch.setattr(model_loading, "load_checkpoint", load_checkpoint)
    loaded = model_loading.load_trained_model(str(model_dir), (0, 1))
    assert installed == [True]
    assert _all_versions(loaded, weight_b) == ["B", "B", "B", "B"]


def test_model_rewritten_in_place_keeping_sizes_and_mtimes_is_read_again(model, monkeypatch, tmp_path):
    """A copy of version B over A that keeps the files (``cp -p``, ``rsync --inplace -t``) lands after fold 0 was
    read and sets the old modification times again: same inodes, sizes and mtimes, only the change times tell.
    Without them the loader kept A's dataset.json, plans and fold 0 and took B's fold 1."""
    model_dir, _, new_checkpoint, weight_b = model
    checkpoint = torch.load(new_checkpoint, weights_only=False)
    (tmp_path / "B").mkdir()
    new_checkpoint = tmp_path / "B" / "checkpoint_final.pth"  # torch.save names its records after the file
    torch.save(checkpoint, new_checkpoint)
    checkpoint["network_weights"] = {k: v - 1 for k, v in checkpoint["network_weights"].items()}
    new_content = {}
    for fold in (0, 1):  # A again, saved the way B was: the files have the same sizes
        torch.save(checkpoint, model_dir / f"fold_{fold}" / "checkpoint_final.pth")
        new_content[model_dir / f"fold_{fold}" / "checkpoint_final.pth"] = new_checkpoint.read_bytes()
    for name in ("dataset.json", "plans.json"):
        new_content[model_dir / name] = (model_dir / name).read_bytes().replace(b'"version": "A"', b'"version": "B"')
    assert all(len(content) == path.stat().st_size for path, content in new_content.items())
    real_load, calls, unchanged = model_loading.load_checkpoint, [], []

    def load_checkpoint(fname, *args, **kwargs):
        calls.append(fname)
        if len(calls) == 2:  # fold 0 has been read: B is copied over A now
            old = {path: path.stat() for path in new_content}
            _wait_for_a_later_change_time(max(st.st_ctime_ns for st in old.values()), tmp_path)
            for path, content in new_content.items():
                with open(path, "r+b") as f:
                    f.write(content)
                os.utime(path, ns=(old[path].st_atime_ns, old[path].st_mtime_ns))
            for path in new_content:  # what a check without the change time looks at stayed the same
                new = path.stat()
                unchanged.append((new.st_ino, new.st_size, new.st_mtime_ns, new.st_ctime_ns == old[path].st_ctime_ns)
                                 == (old[path].st_ino, old[path].st_size, old[path].st_mtime_ns, False))
        return real_load(fname, *args, **kwargs)

    monkeypatch.setattr(model_loading, "load_checkpoint", load_checkpoint)
    loaded = model_loading.load_trained_model(str(model_dir), (0, 1))
    assert unchanged == [True] * 4
    assert _all_versions(loaded, weight_b) == ["B", "B", "B", "B"]


def _wait_for_a_later_change_time(ctime_ns: int, folder: Path) -> None:
    """Return once a file changed now gets a change time after ``ctime_ns`` (the kernel's clock for file times moves
    in ticks of some milliseconds): a rewrite then shows in the change time for sure."""
    probe, deadline = folder / "ctime_probe", time.monotonic() + 10
    while time.monotonic() < deadline:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > ctime_ns:
            break
    probe.unlink()


def test_a_writer_that_never_stops_gives_one_line_naming_the_folder(model, monkeypatch, tmp_path):
    """Every read of fold 1 meets a newly replaced file: after the tries, one line naming the model folder."""
    model_dir, _, new_checkpoint, _ = model
    real_load, reads = model_loading.load_checkpoint, []

    def load_checkpoint(fname, *args, **kwargs):
        if os.path.basename(os.path.dirname(fname)) == "fold_1":
            reads.append(fname)
            staged = tmp_path / "staged.pth"
            shutil.copy(new_checkpoint, staged)
            os.replace(staged, fname)
        return real_load(fname, *args, **kwargs)

    monkeypatch.setattr(model_loading, "load_checkpoint", load_checkpoint)
    with pytest.raises(UserError) as e:
        model_loading.load_trained_model(str(model_dir), (0, 1))
    assert len(reads) == model_loading._MODEL_READ_ATTEMPTS
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"The files of the model in {model_dir} kept changing while they were read")


def test_read_between_two_renames_of_an_install_waits_and_reads_again(model, monkeypatch):
    """The install has replaced fold 0 before the read starts and replaces fold 1 only after it ended: no file
    changes during the read, but the install's marker is still locked afterwards. Fails where the marker's lock is
    not seen (fcntl.flock without effect): the read mixes fold 0 of B with fold 1 of A."""
    model_dir, _, new_checkpoint, weight_b = model
    fold_0_replaced, loader_looks, errors, waits = threading.Event(), threading.Event(), [], []

    def install():
        try:
            with model_update.marking_model_updates([str(model_dir)], str(model_dir.parent)):
                for fold in (0, 1):
                    if fold == 1:
                        assert loader_looks.wait(60)
                        time.sleep(0.5)  # the loader is blocked on the marker's lock by now
                    staged = model_dir / f"fold_{fold}" / "staged.pth"
                    shutil.copy(new_checkpoint, staged)
                    os.replace(staged, model_dir / f"fold_{fold}" / "checkpoint_final.pth")
                    fold_0_replaced.set()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            fold_0_replaced.set()

    installer = threading.Thread(target=install, daemon=True)
    real_identities, real_wait = model_update.file_identities, model_update._wait_for_install

    def file_identities(paths):
        if not installer.is_alive() and not fold_0_replaced.is_set():  # the snapshot before the first read
            installer.start()
            assert fold_0_replaced.wait(60)
        return real_identities(paths)

    def wait_for_install(marker):
        loader_looks.set()  # after the read: the loader looks for a running install
        waits.append(real_wait(marker))
        return waits[-1]

    monkeypatch.setattr(model_update, "file_identities", file_identities)
    monkeypatch.setattr(model_update, "_wait_for_install", wait_for_install)
    loaded = model_loading.load_trained_model(str(model_dir), (0, 1))
    installer.join(60)
    assert errors == []
    assert waits[0] is True
    assert _versions(loaded, weight_b) == ["B", "B"]
    assert _markers(model_dir) == []


def test_two_loaders_looking_at_a_stale_marker_at_once_do_not_wait_for_each_other(model):
    """Loaders look at a marker with a shared lock: one that a killed install left, looked at by two predictions
    starting together, is not taken for a running install (a 'waiting' line and a second read)."""
    import fcntl
    model_dir = model[0]
    stale = model_dir / (model_update.MODEL_UPDATE_PREFIX + "killed")
    stale.mkdir()
    fd = os.open(stale, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # the other loader, looking right now
        assert model_update.wait_for_model_updates(str(model_dir)) is False
    finally:
        os.close(fd)


def test_install_holds_a_locked_marker_while_it_moves_files_in(model, monkeypatch):
    model_dir, zip_b, _, _ = model
    import nnunetv2.model_sharing.model_import as model_import
    seen, real_move = [], model_import._move_into_place

    def move(src, dst):
        if not seen:
            markers = _markers(model_dir)
            seen.append([folder_is_locked(str(model_dir / m)) for m in markers])
        real_move(src, dst)

    monkeypatch.setattr(model_import, "_move_into_place", move)
    install_model_from_zip_file(zip_b)
    assert seen == [[True]]
    assert _markers(model_dir) == []


def test_marker_of_a_killed_install_is_ignored_and_then_removed(model):
    model_dir, zip_b, _, weight_b = model
    stale = model_dir / (model_update.MODEL_UPDATE_PREFIX + "killed")
    stale.mkdir()
    assert model_update.wait_for_model_updates(str(model_dir)) is False
    assert _versions(model_loading.load_trained_model(str(model_dir), (0, 1)), weight_b) == ["A", "A"]
    install_model_from_zip_file(zip_b)
    assert _markers(model_dir) == []
    assert _versions(model_loading.load_trained_model(str(model_dir), (0, 1)), weight_b) == ["B", "B"]


def test_install_of_a_new_model_places_no_marker(tmp_path, model, monkeypatch):
    """A model folder that does not exist yet arrives with one rename: nothing to mark."""
    model_dir, zip_b, _, _ = model
    shutil.rmtree(model_dir)
    made = []
    real = model_update.marking_model_updates
    monkeypatch.setattr("nnunetv2.model_sharing.model_import.marking_model_updates",
                        lambda dirs, staging: made.append(list(dirs)) or real(dirs, staging))
    install_model_from_zip_file(zip_b)
    assert made == [[]]
    assert (model_dir / "fold_1" / "checkpoint_final.pth").is_file() and _markers(model_dir) == []
    assert Path(zip_b).is_file()


def test_checkpoint_removed_while_it_is_read_is_reported_as_missing(model, monkeypatch):
    """A training that finishes deletes checkpoint_latest.pth; a prediction reading it in that instant got a
    'not a readable PyTorch checkpoint' error, as if the file were damaged."""
    model_dir = model[0]
    real_load = model_loading.load_checkpoint

    def load_checkpoint(fname, *args, **kwargs):
        if os.path.basename(os.path.dirname(fname)) == "fold_1" and os.path.isfile(fname):
            os.remove(fname)  # as torch meets it: the file vanished under the reader
            raise UserError(f"{fname} is not a readable PyTorch checkpoint (FileNotFoundError).")
        return real_load(fname, *args, **kwargs)

    monkeypatch.setattr(model_loading, "load_checkpoint", load_checkpoint)
    with pytest.raises(UserError, match="Checkpoint file not found: .*fold_1"):
        model_loading.load_trained_model(str(model_dir), (0, 1))
