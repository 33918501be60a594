"""overlay_plots: overlay numerics, slice choice (incl. the reference's running-total quirk), PNGs per case."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.errors import UserError
from nnunetv2.file_io import save_json
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.utilities.blosc2_storage import save_case
from nnunetv2.utilities.overlay_plots import (color_cycle, entry_point_generate_overlay, generate_overlay,
                                              generate_overlays_from_preprocessed, generate_overlays_from_raw,
                                              hex_to_rgb, select_slice_to_plot, select_slice_to_plot2)


def _png_rgba(path) -> np.ndarray:
    """The PNG as uint8 RGBA (imread gives floats in [0, 1] for PNGs)."""
    return np.round(imread(str(path)) * 255).astype(np.uint8)


def test_hex_to_rgb_and_colour_cycle():
    assert hex_to_rgb("4363d8") == (67, 99, 216)
    assert hex_to_rgb("9A6324") == (154, 99, 36)
    assert len(color_cycle) == 15 and color_cycle[0] == "000000"
    with pytest.raises(AssertionError):
        hex_to_rgb("fff")


def test_generate_overlay_values():
    image = np.array([[0., 1.], [2., 4.]], dtype=np.float32)
    seg = np.array([[0, 1], [2, 1]])
    # grey scaled to 0..255, plus 0.5 x colour of rank 1 (4363d8) / rank 2 (f58231), rescaled to max 255
    grey = np.array([[0, 63.75], [127.5, 255]])
    expected = np.stack([grey] * 3, -1)
    expected[0, 1] += 0.5 * np.array([67, 99, 216])
    expected[1, 1] += 0.5 * np.array([67, 99, 216])
    expected[1, 0] += 0.5 * np.array([245, 130, 49])
    expected = (expected / 363.0 * 255).astype(np.uint8)
    out = generate_overlay(image, seg, overlay_intensity=0.5)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, expected)
    assert out[1, 1].tolist() == [202, 213, 255] and out[0, 0].tolist() == [0, 0, 0]
    # (x, y, 1) input is the same as (x, y)
    np.testing.assert_array_equal(generate_overlay(image[:, :, None], seg, overlay_intensity=0.5), out)


def test_generate_overlay_rank_quirk_and_mapping():
    image = np.arange(6, dtype=float).reshape(2, 3)
    # no background in the slice: label 3 has rank 0 = black (no overlay), label 7 gets the first real colour
    seg = np.array([[3, 3, 7], [7, 3, 3]])
    out = generate_overlay(image, seg, overlay_intensity=1)
    same_as = generate_overlay(image, np.where(seg == 3, 0, 1), overlay_intensity=1)
    np.testing.assert_array_equal(out, same_as)
    # explicit mapping: label value -> colour index
    mapped = generate_overlay(image, seg, mapping={7: 3}, overlay_intensity=1)
    np.testing.assert_array_equal(mapped, generate_overlay(image, np.where(seg == 7, 5, 0), mapping={5: 3}, overlay_intensity=1))
    assert not np.array_equal(mapped, out)
    # constant image: no division by zero
    assert generate_overlay(np.ones((2, 2)), np.zeros((2, 2))).tolist() == [[[0, 0, 0]] * 2] * 2


def test_generate_overlay_rejects_bad_shapes():
    with pytest.raises(RuntimeError):
        generate_overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)))
    with pytest.raises(RuntimeError):
        generate_overlay(np.zeros(4), np.zeros(4))


def test_select_slice_to_plot2_running_total_quirk():
    seg = np.zeros((3, 4, 4), dtype=np.int16)
    seg[0].flat[:6] = 1  # class 1: 6 / 4 / 0 voxels -> column [0.6, 0.4, 0]
    seg[1].flat[:4] = 1
    seg[2].flat[0] = 2  # class 2: one voxel in slice 2
    # true per-class fractions would give row means [0.3, 0.2, 0.5] -> slice 2; the reference divides column 2
    # by the running total (1 + 1), giving [0.3, 0.2, 0.25] -> slice 0
    assert select_slice_to_plot2(seg, seg) == 0
    # with more class-2 voxels the normalisation matters less: 10 voxels -> 10/11 / 2 = 0.45 > 0.3
    seg[2].flat[:10] = 2
    assert select_slice_to_plot2(seg, seg) == 2
    assert select_slice_to_plot(seg, seg) == 2  # most non-zero voxels
    assert select_slice_to_plot2(seg, np.zeros_like(seg)) == 0  # all background
    # -1 (outside the nonzero mask in preprocessed data) is not a class
    seg2 = np.full((2, 3, 3), -1)
    seg2[1, 0, 0] = 1
    assert select_slice_to_plot2(seg2, seg2) == 1


def _expected_raw_overlay(image_file, seg_file, reader, intensity=0.6):
    img, _ = reader.read_images((image_file,))
    seg, _ = reader.read_seg(seg_file)
    s = select_slice_to_plot2(img[0], seg[0])
    return generate_overlay(img[0][s], seg[0][s], overlay_intensity=intensity)


@pytest.mark.parametrize("num_processes", [1, 2])
def test_raw_mode_3d_one_png_per_case(nnunet_dirs, tmp_path, num_processes):
    raw = nnunet_dirs["nnUNet_raw"]
    folder = make_synthetic_dataset(str(raw), 5, "Toy", kind="3d", num_train=3, num_test=0, num_channels=2,
                                    shape=(6, 20, 18))
    out = tmp_path / "overlays"
    generate_overlays_from_raw(5, str(out), num_processes=num_processes, channel_idx=1, overlay_intensity=0.4)
    assert sorted(os.listdir(out)) == ["case_000.png", "case_001.png", "case_002.png"]
    for case in ("case_000", "case_002"):
        png = _png_rgba(out / f"{case}.png")
        expected = _expected_raw_overlay(os.path.join(folder, "imagesTr", f"{case}_0001.nii.gz"),
                                         os.path.join(folder, "labelsTr", f"{case}.nii.gz"), SimpleITKIO(), 0.4)
        assert png.shape == (20, 18, 4)  # (y, x) of the slice, RGBA
        np.testing.assert_array_equal(png[..., :3], expected)
        assert (png[..., 3] == 255).all()
    with pytest.raises(UserError, match="channel_idx 2 is out of range"):
        generate_overlays_from_raw(5, str(out), num_processes=1, channel_idx=2)


def test_raw_mode_2d_png(nnunet_dirs, tmp_path):
    folder = make_synthetic_dataset(str(nnunet_dirs["nnUNet_raw"]), 6, "Nat", kind="2d", num_train=2, num_test=0,
                                    shape=(24, 30))
    out = tmp_path / "o"
    generate_overlays_from_raw("Dataset006_Nat", str(out), num_processes=1)
    png = _png_rgba(out / "case_001.png")
    expected = _expected_raw_overlay(os.path.join(folder, "imagesTr", "case_001_0000.png"),
                                     os.path.join(folder, "labelsTr", "case_001.png"), NaturalImage2DIO())
    assert png.shape == (24, 30, 4)
    np.testing.assert_array_equal(png[..., :3], expected)


def _write_preprocessed(pre_root, configurations=("3d_fullres",)):
    """Two blosc2 cases with 2 channels and -1 in the seg, plus a minimal plans file."""
    ds = pre_root / "Dataset005_Toy"
    rng = np.random.RandomState(3)
    plans = {"dataset_name": "Dataset005_Toy", "plans_name": "nnUNetPlans", "configurations": {}}
    cases = {}
    for c in configurations:
        plans["configurations"][c] = {"data_identifier": f"nnUNetPlans_{c}"}
        (ds / f"nnUNetPlans_{c}").mkdir(parents=True)
        for k in ("case_000", "case_001"):
            data = rng.randn(2, 5, 12, 10).astype(np.float32)
            seg = rng.randint(-1, 3, (1, 5, 12, 10)).astype(np.int16)
            seg[:, :, :3] = 0
            save_case(data, seg, {"spacing": [1, 1, 1]}, str(ds / f"nnUNetPlans_{c}" / k), patch_size=(5, 12, 10))
            cases[(c, k)] = (data, seg)
    save_json(plans, str(ds / "nnUNetPlans.json"), sort_keys=False)
    return cases


def test_preprocessed_mode(nnunet_dirs, tmp_path):
    (nnunet_dirs["nnUNet_raw"] / "Dataset005_Toy").mkdir()
    cases = _write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], ("2d", "3d_fullres"))
    out = tmp_path / "pp"
    generate_overlays_from_preprocessed(5, str(out), num_processes=1, channel_idx=1)
    assert sorted(os.listdir(out)) == ["case_000.png", "case_001.png"]
    data, seg = cases[("3d_fullres", "case_001")]  # default configuration: 3d_fullres
    s = select_slice_to_plot2(data[1], seg[0])
    seg_slice = np.maximum(seg[0][s], 0)
    png = _png_rgba(out / "case_001.png")
    assert png.shape == (12, 10, 4)
    np.testing.assert_array_equal(png[..., :3], generate_overlay(data[1][s], seg_slice))

    with pytest.raises(UserError, match="channel_idx 2 is out of range"):
        generate_overlays_from_preprocessed(5, str(out), num_processes=1, channel_idx=2)
    with pytest.raises(UserError, match="'3d_lowres' not found"):
        generate_overlays_from_preprocessed(5, str(out), num_processes=1, configuration="3d_lowres")
    with pytest.raises(UserError, match="nnUNetPlansX.json does not exist"):
        generate_overlays_from_preprocessed(5, str(out), plans_identifier="nnUNetPlansX")


def test_preprocessed_mode_defaults_to_2d_and_missing_folders(nnunet_dirs, tmp_path):
    (nnunet_dirs["nnUNet_raw"] / "Dataset005_Toy").mkdir()
    (nnunet_dirs["nnUNet_raw"] / "Dataset007_Empty").mkdir()
    cases = _write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], ("2d",))
    out = tmp_path / "pp"
    generate_overlays_from_preprocessed(5, str(out), num_processes=1)
    data, seg = cases[("2d", "case_000")]
    s = select_slice_to_plot2(data[0], seg[0])
    np.testing.assert_array_equal(_png_rgba(out / "case_000.png")[..., :3],
                                  generate_overlay(data[0][s], np.maximum(seg[0][s], 0)))
    with pytest.raises(UserError, match="run preprocessing for that task first"):
        generate_overlays_from_preprocessed(7, str(out))
    import shutil
    shutil.rmtree(nnunet_dirs["nnUNet_preprocessed"] / "Dataset005_Toy" / "nnUNetPlans_2d")
    with pytest.raises(UserError, match="configuration 2d of plans nnUNetPlans"):
        generate_overlays_from_preprocessed(5, str(out))


def test_entry_point(nnunet_dirs, tmp_path, monkeypatch, capsys):
    make_synthetic_dataset(str(nnunet_dirs["nnUNet_raw"]), 5, "Toy", kind="3d", num_train=2, num_test=0,
                           shape=(4, 10, 8))
    out = tmp_path / "cli"
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_plot_overlay_pngs", "-d", "5", "-o", str(out), "--use_raw",
                                      "-np", "1", "-overlay_intensity", "0.3"])
    entry_point_generate_overlay()
    assert sorted(os.listdir(out)) == ["case_000.png", "case_001.png"]
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_plot_overlay_pngs", "-d", "5", "-o", str(out)])
    with pytest.raises(SystemExit) as e:
        entry_point_generate_overlay()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "run preprocessing for that task first" in err and err.count("\n") == 1
