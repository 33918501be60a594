"""Automatic reader choice, overwrite_image_reader_writer, lookup by name and the layering rule."""
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image

import nnunetv2.imageio
from nnunetv2.errors import UserError
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient
from nnunetv2.imageio.reader_writer_registry import (LIST_OF_IO_CLASSES, determine_reader_writer_from_dataset_json,
                                                     determine_reader_writer_from_file_ending,
                                                     recursive_find_reader_writer_by_name)
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO, SimpleITKIOWithReorient
from nnunetv2.imageio.tif_reader_writer import Tiff3DIO


def test_list_order():
    assert LIST_OF_IO_CLASSES == [NaturalImage2DIO, SimpleITKIO, Tiff3DIO, NibabelIO, NibabelIOWithReorient]


@pytest.mark.parametrize("ending,expected", [(".nii.gz", SimpleITKIO), (".nrrd", SimpleITKIO), (".mha", SimpleITKIO),
                                             (".gipl", SimpleITKIO), (".nii", NibabelIO), (".png", NaturalImage2DIO),
                                             (".bmp", NaturalImage2DIO), (".tif", NaturalImage2DIO),
                                             (".tiff", Tiff3DIO), (".PNG", NaturalImage2DIO)])
def test_choice_without_example_file(ending, expected):
    assert determine_reader_writer_from_file_ending(ending) is expected


def test_tif_2d_vs_3d_with_example_file(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "flat_0000.tif", np.zeros((8, 9), np.uint8))
    tifffile.imwrite(tmp_path / "vol_0000.tif", np.zeros((5, 8, 9), np.uint8))
    assert determine_reader_writer_from_file_ending(".tif", str(tmp_path / "flat_0000.tif"),
                                                    verbose=False) is NaturalImage2DIO
    assert determine_reader_writer_from_file_ending(".tif", str(tmp_path / "vol_0000.tif"),
                                                    verbose=False) is Tiff3DIO
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err  # quiet when verbose=False


def test_example_files_for_other_endings(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    sitk.WriteImage(img, str(tmp_path / "a_0000.nii"))
    sitk.WriteImage(img, str(tmp_path / "a_0000.nii.gz"))
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "a_0000.png")
    assert determine_reader_writer_from_file_ending(".nii", str(tmp_path / "a_0000.nii"), verbose=False) is NibabelIO
    assert determine_reader_writer_from_file_ending(".nii.gz", str(tmp_path / "a_0000.nii.gz"),
                                                    verbose=False) is SimpleITKIO
    assert determine_reader_writer_from_file_ending(".png", str(tmp_path / "a_0000.png"),
                                                    verbose=False) is NaturalImage2DIO
    # a nonmatching name is accepted only when allowed, and then the first class that reads it wins
    assert determine_reader_writer_from_file_ending(".xyz", str(tmp_path / "a_0000.nii.gz"), True,
                                                    verbose=False) is SimpleITKIO


def test_unknown_ending_and_unreadable_example_are_user_errors(tmp_path, capsys):
    with pytest.raises(UserError) as e:
        determine_reader_writer_from_file_ending(".jpg", "case_0000.jpg", verbose=False)
    msg = str(e.value)
    assert ".jpg" in msg and "case_0000.jpg" in msg and ".nii.gz" in msg and ".tiff" in msg and "\n" not in msg
    bad = tmp_path / "x_0000.nii.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError) as e:
        determine_reader_writer_from_file_ending(".nii.gz", str(bad), verbose=False)
    assert str(bad) in str(e.value) and "SimpleITKIO: Could not read file" in str(e.value)
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err
    with pytest.raises(UserError):
        determine_reader_writer_from_file_ending(".nii.gz", str(bad), verbose=True)
    out = capsys.readouterr().out
    assert "SimpleITKIO" in out and "Traceback" not in out


def test_dataset_json_overwrite(capsys):
    dj = {"file_ending": ".nii.gz", "overwrite_image_reader_writer": "SimpleITKIOWithReorient"}
    assert determine_reader_writer_from_dataset_json(dj, verbose=False) is SimpleITKIOWithReorient
    assert determine_reader_writer_from_dataset_json({"file_ending": ".nii.gz",
                                                      "overwrite_image_reader_writer": "NibabelIO"}) is NibabelIO
    assert "Using" in capsys.readouterr().out
    assert determine_reader_writer_from_dataset_json({"file_ending": ".nii.gz",
                                                      "overwrite_image_reader_writer": "None"}) is SimpleITKIO
    dj_missing = {"file_ending": ".nii", "overwrite_image_reader_writer": "NoSuchReaderIO"}
    assert determine_reader_writer_from_dataset_json(dj_missing) is NibabelIO
    out = capsys.readouterr().out
    assert "NoSuchReaderIO" in out and "automatically" in out
    with pytest.raises(UserError, match="file_ending"):
        determine_reader_writer_from_dataset_json({}, verbose=False)


def test_find_by_name_builtin_and_missing():
    assert recursive_find_reader_writer_by_name("Tiff3DIO") is Tiff3DIO
    assert recursive_find_reader_writer_by_name("SimpleITKIOWithReorient") is SimpleITKIOWithReorient
    with pytest.raises(UserError) as e:
        recursive_find_reader_writer_by_name("NoSuchReaderIO")
    assert "NoSuchReaderIO" in str(e.value) and "nnunetv2.imageio" in str(e.value)
    with pytest.raises(UserError) as e:
        recursive_find_reader_writer_by_name("Tiff3dIO")  # a typo, e.g. in dataset.json or a plans file
    assert "Did you mean Tiff3DIO?" in str(e.value)
    available = str(e.value).split("Available: ")[1]
    assert all(name in available for name in ("NaturalImage2DIO", "NibabelIOWithReorient", "SimpleITKIOWithReorient"))
    assert "BaseReaderWriter" not in available


def test_custom_reader_in_package_is_found_by_name(monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # leave no stray .pyc in the package
    pkg_dir = os.path.dirname(nnunetv2.imageio.__file__)
    suffix = uuid.uuid4().hex[:8]
    modname = f"zz_test_custom_{suffix}"
    clsname = f"MyCustomIO{suffix}"
    path = os.path.join(pkg_dir, modname + ".py")
    with open(path, "w") as f:
        f.write("from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO\n"
                f"class {clsname}(SimpleITKIO):\n    supported_file_endings = ['.nii.gz']\n")
    try:
        cls = recursive_find_reader_writer_by_name(clsname)
        assert cls.__name__ == clsname and cls.__module__ == f"nnunetv2.imageio.{modname}"
        assert issubclass(cls, SimpleITKIO)
        dj = {"file_ending": ".nii.gz", "overwrite_image_reader_writer": clsname}
        assert determine_reader_writer_from_dataset_json(dj, verbose=False) is cls
    finally:
        os.remove(path)
        sys.modules.pop(f"nnunetv2.imageio.{modname}", None)


def test_imageio_does_not_import_utilities():
    code = ("import sys, nnunetv2.imageio.reader_writer_registry; "
            "print([m for m in sys.modules if m.startswith('nnunetv2.') and not m.startswith('nnunetv2.imageio') "
            "and m not in ('nnunetv2.errors', 'nnunetv2.file_io', 'nnunetv2.paths', 'nnunetv2.configuration')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
