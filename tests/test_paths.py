import os
import subprocess
import sys

import pytest

from nnunetv2.errors import UserError
from nnunetv2.paths import _EnvPath, nnUNet_raw, nnUNet_results


def test_value_is_read_at_every_use(monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    assert os.path.join(nnUNet_raw, "x") == os.path.join(str(tmp_path), "x")
    monkeypatch.setenv("nnUNet_raw", "/elsewhere")
    assert str(nnUNet_raw) == "/elsewhere"
    assert nnUNet_raw == "/elsewhere" and nnUNet_raw.is_set() and bool(nnUNet_raw)


def test_unset_variable_gives_one_clear_error(monkeypatch):
    monkeypatch.delenv("nnUNet_results", raising=False)
    monkeypatch.delenv("RESULTS_FOLDER", raising=False)
    monkeypatch.delenv("nnUNet_raw_data_base", raising=False)
    assert nnUNet_results == None  # noqa: E711 (the reference's documented way of testing)
    assert not nnUNet_results and repr(nnUNet_results) == "<unset nnUNet_results>"
    with pytest.raises(UserError) as e:
        os.path.join(nnUNet_results, "Dataset001")
    msg = e.value.one_line()
    assert "nnUNet_results is not defined" in msg and "setup_paths.sh" in msg and "\n" not in msg
    assert isinstance(e.value, RuntimeError)


def test_empty_variable_counts_as_unset(monkeypatch, tmp_path):
    """`export nnUNet_raw=` (a script whose variable was empty) would otherwise mean the current folder."""
    monkeypatch.setenv("nnUNet_raw", "")
    monkeypatch.chdir(tmp_path)
    assert nnUNet_raw == None and not nnUNet_raw.is_set()  # noqa: E711
    with pytest.raises(UserError, match=r"nnUNet_raw is not defined \(it is empty\)"):
        os.path.join(nnUNet_raw, "Dataset001_X")


def test_v1_variables_are_named(monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    monkeypatch.setenv("nnUNet_raw_data_base", "/old/v1")
    with pytest.raises(UserError, match="nnUNet_raw_data_base.*nnU-Net v2 uses nnUNet_raw"):
        str(nnUNet_raw)


def test_unhashable_and_no_concatenation():
    p = _EnvPath("SOME_UNUSED_VAR_FOR_TEST", "x")
    with pytest.raises(TypeError):
        hash(p)
    with pytest.raises(TypeError):
        p + "/x"  # noqa: B018


def test_import_never_fails_without_variables():
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet")}
    out = subprocess.run([sys.executable, "-c", "import nnunetv2.paths, nnunetv2.configuration; print('ok')"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok" and out.stderr == ""


def test_setup_paths_script_exports_and_creates(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = f"source '{repo}/setup_paths.sh' '{tmp_path}/base' >/dev/null; echo $nnUNet_raw; echo $nnUNet_results"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"{tmp_path}/base/nnUNet_raw", f"{tmp_path}/base/nnUNet_results"]
    assert (tmp_path / "base" / "nnUNet_preprocessed").is_dir()


def test_configuration_bad_env_value_falls_back(tmp_path):
    env = dict(os.environ, nnUNet_def_n_proc="many")
    out = subprocess.run([sys.executable, "-c", "from nnunetv2.configuration import default_num_processes as d; "
                          "print(d)"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "8" and "nnUNet_def_n_proc" in out.stderr


def test_quoted_tilde_and_variables_are_expanded(monkeypatch, tmp_path):
    """`export nnUNet_results="~/results"` (quotes keep the shell from expanding) or os.environ in a notebook: the
    data goes below the home folder, not into a folder named '~' below the working directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("nnUNet_results", "~/results")
    assert os.fspath(nnUNet_results) == str(home / "results")
    monkeypatch.setenv("nnUNet_raw", "$DATA_ROOT/raw")
    assert os.path.join(nnUNet_raw, "Dataset001_X") == str(tmp_path / "data" / "raw" / "Dataset001_X")
    monkeypatch.setenv("nnUNet_raw", "${DATA_ROOT}/raw")
    assert str(nnUNet_raw) == str(tmp_path / "data" / "raw")
    assert not (tmp_path / "~").exists()
    # an existing folder of the literal name stays in use (data written there by an earlier run)
    (tmp_path / "~" / "results").mkdir(parents=True)
    assert os.fspath(nnUNet_results) == "~/results"
    monkeypatch.setenv("nnUNet_raw", "$UNSET_VARIABLE_XYZ/raw")
    assert str(nnUNet_raw) == "$UNSET_VARIABLE_XYZ/raw"
