"""Case-list building (spec 01 §2.4) on synthetic folders, the 'dataset' key form and the reference's quirks."""
import os

import numpy as np
import pytest

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.errors import UserError
from nnunetv2.file_io import save_json
from nnunetv2.utilities.utils import (create_lists_from_splitted_dataset_folder, create_paths_fn,
                                      get_filenames_of_train_images_and_targets,
                                      get_identifiers_from_splitted_dataset_folder)


def _touch(folder, *names):
    os.makedirs(folder, exist_ok=True)
    for n in names:
        open(os.path.join(folder, n), "w").close()


def test_identifiers_and_lists_multichannel(tmp_path):
    folder = make_synthetic_dataset(str(tmp_path), 7, "Multi", kind="3d", num_train=3, num_test=1, num_channels=2,
                                    shape=(4, 6, 5))
    images = os.path.join(folder, "imagesTr")
    ids = get_identifiers_from_splitted_dataset_folder(images, ".nii.gz")
    assert isinstance(ids, np.ndarray) and list(ids) == ["case_000", "case_001", "case_002"]
    lists = create_lists_from_splitted_dataset_folder(images, ".nii.gz", ids)
    assert lists == [[os.path.join(images, f"case_{i:03d}_{c:04d}.nii.gz") for c in range(2)] for i in range(3)]
    assert create_lists_from_splitted_dataset_folder(images, ".nii.gz") == lists  # identifiers default

    d = get_filenames_of_train_images_and_targets(folder)
    assert list(d) == ["case_000", "case_001", "case_002"]
    assert d["case_001"] == {"images": lists[1], "label": os.path.join(folder, "labelsTr", "case_001.nii.gz")}


def test_grouping_matches_regex_semantics(tmp_path):
    names = ["a_0000.png", "a_0001.png", "a_0000_0000.png", "b_0000.png", "b_000x.png", "c.png", "a_0000.PNG",
             "ab_0002.png", "x_0000.nii.gz"]
    _touch(str(tmp_path), *names)
    os.mkdir(tmp_path / "dir_0000.png")  # folders are not files
    ids = get_identifiers_from_splitted_dataset_folder(str(tmp_path), ".png")
    # the reference cuts len(ending) + 5 characters whatever the name looks like
    # (values observed on the reference: 'c.png' gives '', 'b_000x.png' gives 'b')
    assert list(ids) == ["", "a", "a_0000", "ab", "b"]
    idents = ["a", "a_0000", "ab", "b", "c", "zz", ""]
    lists = create_lists_from_splitted_dataset_folder(str(tmp_path), ".png", idents, num_processes=1)
    files = sorted(n for n in names if n.endswith(".png"))
    expected = [create_paths_fn(str(tmp_path), files, ".png", f) for f in idents]
    assert lists == expected
    assert lists[0] == [str(tmp_path / "a_0000.png"), str(tmp_path / "a_0001.png")]
    assert lists[1] == [str(tmp_path / "a_0000_0000.png")]
    assert lists[2] == [str(tmp_path / "ab_0002.png")] and lists[3] == [str(tmp_path / "b_0000.png")]
    assert lists[4:] == [[], [], []]


def test_create_paths_fn_escapes(tmp_path):
    files = ["a.b_0000.nii.gz", "aXb_0000.nii.gz", "a.b_0000Xnii.gz"]
    assert create_paths_fn("/f", files, ".nii.gz", "a.b") == [os.path.join("/f", "a.b_0000.nii.gz")]


def test_dataset_key_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_DATA", str(tmp_path / "elsewhere"))
    raw = tmp_path / "Dataset010_X"
    raw.mkdir()
    dj = {"channel_names": {"0": "CT", "1": "T2"}, "labels": {"background": 0, "a": 1}, "numTraining": 2,
          "file_ending": ".nii.gz",
          "dataset": {"c2": {"images": ["$MY_DATA/c2_a.nii.gz", "/abs/c2_b.nii.gz"], "label": "sub/../lab/c2.nii.gz"},
                      "c1": {"images": ["img/c1_a.nii.gz", "img/c1_b.nii.gz"], "label": "$MY_DATA/c1.nii.gz"}}}
    save_json(dj, str(raw / "dataset.json"), sort_keys=False)
    d = get_filenames_of_train_images_and_targets(str(raw))
    assert list(d) == ["c2", "c1"]  # JSON order
    assert d["c2"]["images"] == [str(tmp_path / "elsewhere" / "c2_a.nii.gz"), "/abs/c2_b.nii.gz"]
    assert d["c2"]["label"] == str(raw / "lab" / "c2.nii.gz")
    assert d["c1"]["images"] == [str(raw / "img" / "c1_a.nii.gz"), str(raw / "img" / "c1_b.nii.gz")]
    assert d["c1"]["label"] == str(tmp_path / "elsewhere" / "c1.nii.gz")
    # passed-in dict is updated in place, like the reference
    dj2 = {"dataset": {"c": {"images": ["i.png"], "label": "l.png"}}}
    out = get_filenames_of_train_images_and_targets(str(raw), dj2)
    assert out is dj2["dataset"] and dj2["dataset"]["c"]["label"] == str(raw / "l.png")


def test_missing_pieces_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="dataset.json not found"):
        get_filenames_of_train_images_and_targets(str(tmp_path))
    with pytest.raises(UserError, match="imagesTr"):
        get_filenames_of_train_images_and_targets(str(tmp_path), {"file_ending": ".png"})
    with pytest.raises(UserError, match="file_ending"):
        get_filenames_of_train_images_and_targets(str(tmp_path), {"labels": {}})


def test_sorted_files_with_ending_leaves_out_our_temporary_files(tmp_path):
    from nnunetv2.file_io import TMP_PREFIX
    from nnunetv2.utilities.utils import sorted_files_with_ending
    for name in ('b.npz', 'a.npz', f'{TMP_PREFIX}0123456789ab_a.npz', 'c.npz.txt', '.hidden.npz'):
        (tmp_path / name).write_bytes(b'')
    (tmp_path / 'd.npz').mkdir()
    assert sorted_files_with_ending(str(tmp_path), '.npz') == ['.hidden.npz', 'a.npz', 'b.npz']


def test_macos_metadata_files_are_not_cases(tmp_path):
    """macOS writes ``._<name>`` beside every file it copies to an exFAT/FAT disk or a network share: same name and
    ending as the image, no image inside (it starts with the AppleDouble magic). The reference takes them for cases
    and fails reading them; they are left out wherever cases are listed. A file that merely starts with ``._`` is
    still listed (it may be an image)."""
    from nnunetv2.inference.input_handling import list_cases_in_folder
    from nnunetv2.utilities.utils import sorted_files_with_ending
    appledouble = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    _touch(str(images), "case_a_0000.nii.gz", "case_a_0001.nii.gz")
    _touch(str(labels), "case_a.nii.gz")
    for folder, name in ((images, "._case_a_0000.nii.gz"), (images, "._case_a_0001.nii.gz"),
                         (labels, "._case_a.nii.gz")):
        (folder / name).write_bytes(appledouble)
    assert list(get_identifiers_from_splitted_dataset_folder(str(images), ".nii.gz")) == ["case_a"]
    assert create_lists_from_splitted_dataset_folder(str(images), ".nii.gz") == [
        [str(images / "case_a_0000.nii.gz"), str(images / "case_a_0001.nii.gz")]]
    assert sorted_files_with_ending(str(labels), ".nii.gz") == ["case_a.nii.gz"]
    assert list_cases_in_folder(str(images), ".nii.gz", 2) == [
        [str(images / "case_a_0000.nii.gz"), str(images / "case_a_0001.nii.gz")]]
    (labels / "._case_b.nii.gz").write_bytes(b"\x1f\x8b not AppleDouble")
    assert sorted_files_with_ending(str(labels), ".nii.gz") == ["._case_b.nii.gz", "case_a.nii.gz"]
