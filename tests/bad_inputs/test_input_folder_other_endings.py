"""An input folder holding CASE_XXXX files of another ending than the model's (a .nii.gz next to the .png inputs of a
2-D model): those cases are not predicted, which used to happen without a word (found by fuzz round 3; the
reference does the same). Now a warning names them; the model's files are still listed as before."""
from nnunetv2.inference.input_handling import list_cases_in_folder


def test_other_ending_case_is_named(tmp_path, capsys):
    for n in ("a_0000.png", "b_0000.nii.gz", "c_0001.mha"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "a.json").write_text("{}")  # side-cars and other files are not named
    cases = list_cases_in_folder(str(tmp_path), ".png", 3)
    assert cases == [[str(tmp_path / "a_0000.png")]]
    err = capsys.readouterr().err
    assert "b_0000.nii.gz" in err and "c_0001.mha" in err and "not predicted" in err and "a.json" not in err


def test_no_warning_when_all_files_fit(tmp_path, capsys):
    for n in ("a_0000.nii.gz", "a_0001.nii.gz", "a.json", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert len(list_cases_in_folder(str(tmp_path), ".nii.gz", 2)) == 1
    assert capsys.readouterr().err == ""


def test_tif_side_cars_of_four_digit_case_names_are_not_named(tmp_path, capsys):
    """Case 'case_0001' of a .tif model: its spacing side-car is case_0001.json, named like an input image; an earlier
    prediction with --save_probabilities left case_0001.npz/.pkl. None of them is an image that was left out."""
    for n in ("case_0001_0000.tif", "case_0001.json", "case_0002_0000.tif", "case_0002.json", "case_0003.npz",
              "case_0003.pkl"):
        (tmp_path / n).write_bytes(b"x")
    assert len(list_cases_in_folder(str(tmp_path), ".tif", 1)) == 2
    assert capsys.readouterr().err == ""


def test_macos_metadata_files_are_not_named(tmp_path, capsys):
    """macOS's ._<name> files beside copied images carry an image's name but are no image: not named as left out."""
    from nnunetv2.utilities.utils import _APPLEDOUBLE_MAGIC
    (tmp_path / "a_0000.png").write_bytes(b"x")
    (tmp_path / "b_0000.nii.gz").write_bytes(b"x")
    (tmp_path / "._b_0000.nii.gz").write_bytes(_APPLEDOUBLE_MAGIC + b"\0" * 60)
    assert list_cases_in_folder(str(tmp_path), ".png", 3) == [[str(tmp_path / "a_0000.png")]]
    err = capsys.readouterr().err
    assert "1 file(s)" in err and "b_0000.nii.gz" in err and "._b_0000" not in err
