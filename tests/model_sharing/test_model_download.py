"""download_file / download_and_install_from_url against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import io
import os
import sys
import zipfile

import pytest

from _model_sharing_helpers import DATASET, MODEL, all_files, serve_bytes
from nnunetv2.errors import UserError
from nnunetv2.model_sharing.entry_points import download_by_url
from nnunetv2.model_sharing.model_download import download_and_install_from_url, download_file


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{DATASET}/{MODEL}/plans.json", b'{"plans": 1}')
        zf.writestr(f"{DATASET}/{MODEL}/fold_0/checkpoint_final.pth", os.urandom(300_000))
    return buf.getvalue()


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    return h


@pytest.mark.parametrize("content_length", [True, False])
def test_download_file(tmp_path, content_length):
    body = os.urandom(200_000)
    with serve_bytes({"/f.bin": body}, content_length=content_length) as url:
        out = download_file(url + "/f.bin", str(tmp_path / "f.bin"), chunk_size=4096)
    assert out == str(tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == body
    assert os.listdir(tmp_path) == ["f.bin"]


def test_download_and_install(nnunet_dirs, home):
    body = _zip_bytes()
    with serve_bytes({"/model.zip": body}, content_length=False) as url:
        download_and_install_from_url(url + "/model.zip")
    results = nnunet_dirs["nnUNet_results"]
    assert all_files(str(results)) == [f"{DATASET}/{MODEL}/fold_0/checkpoint_final.pth", f"{DATASET}/{MODEL}/plans.json"]
    assert os.listdir(home) == []  # temporary download removed


def test_http_error_and_not_a_zip_clean_up(nnunet_dirs, home):
    with serve_bytes({"/junk.zip": b"<html>not a zip</html>"}) as url:
        with pytest.raises(UserError, match=r"HTTP 404") as e:
            download_and_install_from_url(url + "/missing.zip")
        assert "\n" not in str(e.value)
        with pytest.raises(UserError, match="not a zip archive"):
            download_and_install_from_url(url + "/junk.zip")
    assert os.listdir(home) == []
    assert os.listdir(nnunet_dirs["nnUNet_results"]) == []


def test_connection_refused_is_one_line_user_error(nnunet_dirs, home, monkeypatch, capsys):
    with serve_bytes({}) as url:
        pass  # server stopped: the port is closed now
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_download_pretrained_model_by_url", url + "/model.zip"])
    with pytest.raises(SystemExit) as e:
        download_by_url()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("nnU-Net error: Download of http://127.0.0.1:") and err.count("\n") == 1
    assert os.listdir(home) == []


def test_invalid_url(nnunet_dirs, home):
    with pytest.raises(UserError, match="Download of not-a-url failed"):
        download_and_install_from_url("not-a-url")


def test_file_url_says_to_install_the_local_zip(nnunet_dirs, home, tmp_path):
    with pytest.raises(UserError, match="nnUNetv2_install_pretrained_model_from_zip") as e:
        download_and_install_from_url(f"file://{tmp_path}/model.zip")
    assert "network" not in str(e.value)
    assert os.listdir(home) == []
