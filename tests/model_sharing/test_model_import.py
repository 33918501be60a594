"""install_model_from_zip_file: round trip, refusal of unsafe archives (nothing written), golden zips."""
from __future__ import annotations

import json
import logging
import os
import sys
import zipfile

import pytest

from _model_sharing_helpers import DATASET, MODEL, SPEC_EXAMPLE, all_files, make_fake_results_tree, make_zip
from nnunetv2.errors import UserError
from nnunetv2.model_sharing.entry_points import install_from_zip_entry_point
from nnunetv2.model_sharing.model_export import export_pretrained_model
from nnunetv2.model_sharing.model_import import install_model_from_zip_file

GOOD = f"{DATASET}/{MODEL}/plans.json"


def test_round_trip_export_install(nnunet_dirs, tmp_path, monkeypatch):
    src = tmp_path / "src_results"
    src.mkdir()
    make_fake_results_tree(str(src))
    monkeypatch.setenv("nnUNet_results", str(src))
    zip_file = tmp_path / "m.zip"
    export_pretrained_model(5, str(zip_file), configurations=("3d_fullres",), folds=(0, 1))

    dst = nnunet_dirs["nnUNet_results"]
    monkeypatch.setenv("nnUNet_results", str(dst))
    # an existing file of the same model is kept, one with the same name is replaced
    (dst / DATASET / MODEL / "fold_0").mkdir(parents=True)
    (dst / DATASET / MODEL / "fold_0" / "keep.txt").write_text("keep")
    (dst / DATASET / MODEL / "plans.json").write_text("old")
    install_model_from_zip_file(str(zip_file))
    expected = sorted(os.path.relpath(n, ".") for n in SPEC_EXAMPLE) + [f"{DATASET}/{MODEL}/fold_0/keep.txt"]
    assert all_files(str(dst)) == sorted(expected)
    for n in SPEC_EXAMPLE:
        assert (dst / n).read_bytes() == (src / n).read_bytes()
    assert not any(n.startswith(".nnunet_install_") for n in os.listdir(dst))  # temporary folder removed


@pytest.mark.parametrize("members,symlinks,fragment", [
    ({"../evil.txt": b"x"}, None, "'..'"),
    ({f"{DATASET}/../../evil.txt": b"x"}, None, "'..'"),
    ({"/tmp/evil_abs.txt": b"x"}, None, "absolute"),
    ({"C:/evil.txt": b"x"}, None, "absolute"),
    ({"evil.txt": b"x"}, None, "DatasetXXX_Name"),
    ({"NotADataset/evil.txt": b"x"}, None, "DatasetXXX_Name"),
    ({f"{DATASET}\\..\\evil.txt": b"x"}, None, "backslash"),
    ({}, {f"{DATASET}/link": "/etc/passwd"}, "symbolic link"),
])
def test_malicious_zips_rejected_nothing_written(nnunet_dirs, tmp_path, members, symlinks, fragment):
    results = nnunet_dirs["nnUNet_results"]
    # a harmless first member: proves that nothing at all is extracted when a later one is bad
    zip_file = make_zip(str(tmp_path / "evil.zip"), {GOOD: b"{}", **members}, symlinks)
    bad_name = next(iter(members or symlinks))
    with pytest.raises(UserError, match=fragment) as e:
        install_model_from_zip_file(zip_file)
    assert repr(bad_name) in str(e.value)
    assert os.listdir(results) == []
    assert not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/evil_abs.txt")


def test_device_file_member_rejected(nnunet_dirs, tmp_path):
    import stat
    zip_file = tmp_path / "dev.zip"
    with zipfile.ZipFile(zip_file, "w") as zf:
        info = zipfile.ZipInfo(f"{DATASET}/dev")
        info.external_attr = (stat.S_IFCHR | 0o666) << 16
        zf.writestr(info, b"")
    with pytest.raises(UserError, match="special file"):
        install_model_from_zip_file(str(zip_file))
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []


def test_not_a_zip_and_missing_file(nnunet_dirs, tmp_path):
    fake = tmp_path / "model.zip"
    fake.write_text("this is not a zip")
    with pytest.raises(UserError, match="not a zip archive"):
        install_model_from_zip_file(str(fake))
    with pytest.raises(UserError, match="does not exist"):
        install_model_from_zip_file(str(tmp_path / "missing.zip"))


def test_damaged_member_leaves_nothing(nnunet_dirs, tmp_path):
    zip_file = make_zip(str(tmp_path / "d.zip"), {GOOD: b"{}" * 100, f"{DATASET}/{MODEL}/dataset.json": b"a" * 1000})
    raw = bytearray(open(zip_file, "rb").read())
    i = raw.index(b"a" * 100)  # stored uncompressed: corrupt the data, the CRC check fails on extraction
    raw[i:i + 10] = b"b" * 10
    open(zip_file, "wb").write(bytes(raw))
    with pytest.raises(UserError, match="damaged"):
        install_model_from_zip_file(zip_file)
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []


def test_file_over_existing_folder_is_refused(nnunet_dirs, tmp_path):
    results = nnunet_dirs["nnUNet_results"]
    (results / DATASET / MODEL / "plans.json").mkdir(parents=True)
    zip_file = make_zip(str(tmp_path / "c.zip"), {GOOD: b"{}"})
    with pytest.raises(UserError, match="existing folder"):
        install_model_from_zip_file(zip_file)
    (results / DATASET / "afile").write_text("x")
    zip_file = make_zip(str(tmp_path / "d.zip"), {f"{DATASET}/afile/": b"", f"{DATASET}/afile/x.json": b"{}"})
    with pytest.raises(UserError, match="exists and is not a folder"):
        install_model_from_zip_file(zip_file)
    assert (results / DATASET / "afile").read_text() == "x"


def test_entry_point_one_line_error(nnunet_dirs, tmp_path, monkeypatch, capsys):
    zip_file = make_zip(str(tmp_path / "e.zip"), {"../evil": b"x"})
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_install_pretrained_model_from_zip", zip_file])
    with pytest.raises(SystemExit) as e:
        install_from_zip_entry_point()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("nnU-Net error: Refusing to install") and err.count("\n") == 1


def test_unset_results_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("nnUNet_results", raising=False)
    with pytest.raises(UserError, match="nnUNet_results"):
        install_model_from_zip_file(make_zip(str(tmp_path / "a.zip"), {GOOD: b"{}"}))


@pytest.mark.parametrize("model", ["Dataset902_SynthMRRegions", "Dataset903_SynthNatural2D"])
def test_golden_model_zips_install(shared_dir, nnunet_dirs, model):
    zips = sorted((shared_dir / "reference" / "models" / model).glob("*.zip"))
    if not zips:
        pytest.skip(f"no golden zip for {model}")
    results = nnunet_dirs["nnUNet_results"]
    install_model_from_zip_file(str(zips[0]))
    with zipfile.ZipFile(zips[0]) as zf:
        names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
        assert all_files(str(results)) == names
        for n in names:
            assert (results / n).read_bytes() == zf.read(n)
    assert any(n.endswith("fold_0/checkpoint_final.pth") for n in names)


def _set_header_bits(zip_file: str, flag_or: int = 0, method: int = None) -> None:
    """Set general-purpose flag bits / the compression method in every local and central header of ``zip_file``."""
    import struct
    raw = bytearray(open(zip_file, "rb").read())
    for sig, flag_off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = raw.find(sig)
        while i >= 0:
            flags = struct.unpack("<H", raw[i + flag_off:i + flag_off + 2])[0]
            struct.pack_into("<H", raw, i + flag_off, flags | flag_or)
            if method is not None:
                struct.pack_into("<H", raw, i + flag_off + 2, method)
            i = raw.find(sig, i + 4)
    open(zip_file, "wb").write(bytes(raw))


def _zip_with_duplicate(path: str) -> str:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
        return make_zip(path, {GOOD: b"{}"}) and _append(path, GOOD, b'{"other": 1}')


def _append(path: str, name: str, data: bytes) -> str:
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.mark.parametrize("build,fragment", [
    # two members of one name: unzip tools disagree on which one wins, so what was inspected is not what is installed
    (_zip_with_duplicate, "appears more than once"),
    (lambda p: make_zip(p, {GOOD: b"{}", GOOD + "/x.json": b"{}"}), "is a file, and other members need a folder"),
    (lambda p: (make_zip(p, {GOOD: b"{}"}), _set_header_bits(p, flag_or=0x1))[0], "encrypted"),
    (lambda p: (make_zip(p, {GOOD: b"{}"}), _set_header_bits(p, method=99))[0], "compression method 99"),
], ids=["duplicate", "file_and_folder", "encrypted", "unknown_method"])
def test_archives_that_cannot_be_installed_faithfully_are_refused(nnunet_dirs, tmp_path, build, fragment):
    zip_file = build(str(tmp_path / "x.zip"))
    with pytest.raises(UserError, match=fragment) as e:
        install_model_from_zip_file(zip_file)
    assert "\n" not in e.value.one_line() and "nothing was" in str(e.value)
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []


def test_member_name_flagged_utf8_that_is_not(nnunet_dirs, tmp_path):
    zip_file = make_zip(str(tmp_path / "u.zip"), {f"{DATASET}/{MODEL}/XXXX.json": b"{}"})
    raw = open(zip_file, "rb").read().replace(b"XXXX", b"\xff\xfe\xc3\x28")
    open(zip_file, "wb").write(raw)
    _set_header_bits(zip_file, flag_or=0x800)
    with pytest.raises(UserError, match="not valid UTF-8"):
        install_model_from_zip_file(zip_file)
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []


def test_member_name_too_long_names_the_member(nnunet_dirs, tmp_path):
    long_name = f"{DATASET}/{MODEL}/" + "a" * 300 + ".json"
    zip_file = make_zip(str(tmp_path / "l.zip"), {GOOD: b"{}", long_name: b"{}"})
    with pytest.raises(UserError) as e:
        install_model_from_zip_file(zip_file)
    assert repr(long_name) in str(e.value) and "too long" in str(e.value)
    assert ".nnunet_install_" not in str(e.value)  # not the staging folder's random name
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []


def test_archive_larger_than_the_free_disk_space_is_refused(nnunet_dirs, tmp_path, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple
    zip_file = make_zip(str(tmp_path / "b.zip"), {GOOD: b"{}" * 5000})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10 ** 6, 10 ** 6 - 9999, 9999))
    with pytest.raises(UserError, match=r"unpacks to .* more than the .* free on the disk of nnUNet_results"):
        install_model_from_zip_file(zip_file)
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10 ** 6, 10 ** 6 - 10000, 10000))
    install_model_from_zip_file(zip_file)  # exactly fits
    assert (nnunet_dirs["nnUNet_results"] / GOOD).read_bytes() == b"{}" * 5000


def _model_zip(path, plans: dict, folds) -> str:
    members = {f"{DATASET}/{MODEL}/plans.json": json.dumps(plans, indent=4).encode(),
               f"{DATASET}/{MODEL}/dataset.json": b'{"labels": {"background": 0, "a": 1}}'}
    for f in folds:
        members[f"{DATASET}/{MODEL}/fold_{f}/checkpoint_final.pth"] = f"weights of fold {f}".encode()
    return make_zip(str(path), members)


def test_folds_of_an_older_version_left_by_an_update_are_named(nnunet_dirs, tmp_path, caplog):
    """A new version of a model with fewer folds leaves the old version's other folds in place (as the reference's
    install, which extracts over the folder). When the new version's plans differ, those folds belong to another
    model: the install says which, and keeps every file (nothing of the user's is deleted)."""
    model = nnunet_dirs["nnUNet_results"] / DATASET / MODEL
    install_model_from_zip_file(_model_zip(tmp_path / "v1.zip", {"version": 1}, range(5)))
    assert sorted(p.name for p in model.iterdir() if p.name.startswith("fold_")) == [f"fold_{f}" for f in range(5)]

    # the same plans (only formatted differently): e.g. a model published as one zip per fold; nothing to say
    with caplog.at_level(logging.WARNING):
        install_model_from_zip_file(make_zip(str(tmp_path / "v1_fold0.zip"), {
            f"{DATASET}/{MODEL}/plans.json": b'{"version":1}',
            f"{DATASET}/{MODEL}/fold_0/checkpoint_final.pth": b"weights of fold 0, again"}))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    with caplog.at_level(logging.WARNING):
        install_model_from_zip_file(_model_zip(tmp_path / "v2.zip", {"version": 2}, [0, 1]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"{model} keeps fold_2, fold_3, fold_4 from before this install" in warnings[0]
    assert "-f" in warnings[0]
    assert (model / "fold_4" / "checkpoint_final.pth").read_bytes() == b"weights of fold 4"  # kept
    assert (model / "fold_1" / "checkpoint_final.pth").read_bytes() == b"weights of fold 1"
    assert json.loads((model / "plans.json").read_text()) == {"version": 2}
