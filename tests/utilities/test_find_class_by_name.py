"""Class discovery by name (spec 01 §9.3) on temporary folders, and the trainer lookup."""
import os
import sys
import textwrap
import uuid

import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities.find_class_by_name import (recursive_find_python_class, temporarily_cleanup_imports_from_path,
                                                   temporarily_extend_syspath)
from nnunetv2.utilities.find_objects import _search_external_folders, close_matches


def _write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path):
    """A uniquely named package: pkg/{a.py, b.py, sub/{c.py, deeper/d.py}} on a temporary sys.path entry."""
    name = f"engb_pkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    _write(str(root / "__init__.py"))
    _write(str(root / "a.py"), "class Alpha:\n    origin = 'a'\n")
    _write(str(root / "b.py"), f"from {name}.a import Alpha\nclass Beta:\n    pass\n")
    _write(str(root / "sub" / "__init__.py"))
    _write(str(root / "sub" / "c.py"), "class Beta:\n    origin = 'sub.c'\nclass Gamma:\n    pass\n")
    _write(str(root / "sub" / "deeper" / "__init__.py"))
    _write(str(root / "sub" / "deeper" / "d.py"), "class Delta:\n    pass\n")
    yield name, root
    for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[m]


def test_finds_in_modules_then_subpackages(package):
    name, root = package
    with temporarily_extend_syspath(str(root.parent)):
        assert recursive_find_python_class(str(root), "Alpha", name).origin == "a"
        # modules of a folder are searched before its sub-packages: b.Beta wins over sub.c.Beta
        beta = recursive_find_python_class(str(root), "Beta", name)
        assert beta.__module__ == f"{name}.b"
        assert recursive_find_python_class(str(root), "Gamma", name).__module__ == f"{name}.sub.c"
        assert recursive_find_python_class(str(root), "Delta", name).__module__ == f"{name}.sub.deeper.d"
        assert recursive_find_python_class(str(root), "Nope", name) is None


def test_imported_names_count(package):
    name, root = package
    os.remove(root / "a.py")
    _write(str(root / "a.py"), "")  # Alpha now only exists as an import in b.py
    _write(str(root / "b.py"), "from collections import OrderedDict as Alpha\n")
    with temporarily_extend_syspath(str(root.parent)):
        from collections import OrderedDict
        assert recursive_find_python_class(str(root), "Alpha", name) is OrderedDict


def test_other_import_errors_propagate(package):
    name, root = package
    _write(str(root / "aa_broken.py"), "import engb_this_module_does_not_exist\n")
    with temporarily_extend_syspath(str(root.parent)):
        # modules whose source never names the class are not imported while a module naming it exists ...
        assert recursive_find_python_class(str(root), "Beta", name).__name__ == "Beta"
        # ... but when nothing names it, every module is imported and a broken one's error surfaces
        with pytest.raises(ModuleNotFoundError, match="engb_this_module_does_not_exist"):
            recursive_find_python_class(str(root), "NoSuchClassAnywhere", name)
    _write(str(root / "ab_broken_naming_beta.py"), "import engb_this_module_does_not_exist  # Beta\n")
    with temporarily_extend_syspath(str(root.parent)):
        with pytest.raises(ModuleNotFoundError, match="engb_this_module_does_not_exist"):
            recursive_find_python_class(str(root), "Beta", name)


def test_top_level_modules_with_cleanup(tmp_path):
    folder = tmp_path / "ext"
    mod = f"engb_ext_{uuid.uuid4().hex[:8]}"
    _write(str(folder / f"{mod}.py"), "class ExtThing:\n    pass\n")
    path_before = list(sys.path)
    found = recursive_find_python_class(str(folder), "ExtThing", None, base_folder=str(folder),
                                        cleanup_imports_from_base_folder=True)
    assert found.__name__ == "ExtThing" and found.__module__ == mod
    assert mod not in sys.modules  # cleaned up
    assert sys.path == path_before  # restored
    found2 = recursive_find_python_class(str(folder), "ExtThing", None)
    assert found2.__module__ == mod and mod in sys.modules
    del sys.modules[mod]


def test_temporarily_extend_syspath_keeps_existing_entry(tmp_path):
    p = os.path.abspath(str(tmp_path))
    sys.path.append(p)
    try:
        with temporarily_extend_syspath(p):
            assert sys.path[0] == p
        assert sys.path.count(p) == 1 and sys.path[-1] == p
    finally:
        sys.path.remove(p)


def test_temporarily_cleanup_imports_from_path(tmp_path):
    mod = f"engb_clean_{uuid.uuid4().hex[:8]}"
    _write(str(tmp_path / f"{mod}.py"), "X = 1\n")
    with temporarily_extend_syspath(str(tmp_path)), temporarily_cleanup_imports_from_path(str(tmp_path)):
        __import__(mod)
        assert mod in sys.modules
    assert mod not in sys.modules
    assert "json" in sys.modules  # modules from elsewhere are kept


def test_search_external_folders(tmp_path, capsys):
    mod = f"engb_trainers_{uuid.uuid4().hex[:8]}"
    good = tmp_path / "good"
    _write(str(good / f"{mod}.py"), "class MyExtTrainer:\n    pass\n")
    value = os.pathsep.join(["", str(tmp_path / "missing"), "  ", str(good)])
    found = _search_external_folders("MyExtTrainer", value)
    assert found.__name__ == "MyExtTrainer"
    out = capsys.readouterr().out
    assert f"Searching in: {good}" in out and f"Using trainer 'MyExtTrainer' from: {good}" in out
    assert "missing" not in out
    assert _search_external_folders("Nothing", str(good)) is None


def test_verbose_search_prints_as_the_reference(package, capsys):
    """The verbose search (nnUNet_extTrainer folders) names the folder once, then every module in search order
    (modules before subpackages), and where the class was found, as nnU-Net 2.8.1 prints it; the lookup's second,
    import-everything pass does not list the modules again."""
    name, root = package
    header = f"Searching for class {{}} in folder {root} with current module {name}"
    modules = [f"  Inspecting module: {name}.{m}" for m in ("a", "b", "sub.c", "sub.deeper.d")]
    with temporarily_extend_syspath(str(root.parent)):
        assert recursive_find_python_class(str(root), "Nope", name, verbose=True) is None
        assert capsys.readouterr().out.splitlines() == [header.format("Nope")] + modules
        assert recursive_find_python_class(str(root), "Gamma", name, verbose=True).__name__ == "Gamma"
        assert capsys.readouterr().out.splitlines() == [header.format("Gamma")] + modules[:3] + \
            [f"Found class Gamma in {name}.sub.c"]


def test_external_trainer_search_prints_as_the_reference(tmp_path, capsys):
    mod = f"engb_trainers_{uuid.uuid4().hex[:8]}"
    first, second = tmp_path / "first", tmp_path / "second"
    _write(str(first / "other.py"), "X = 1\n")
    _write(str(second / f"{mod}.py"), "class MyExtTrainer:\n    pass\n")
    assert _search_external_folders("MyExtTrainer", os.pathsep.join([str(first), str(second)])) is not None
    assert capsys.readouterr().out.splitlines() == [
        "Trainer 'MyExtTrainer' not found in nnunetv2.training.nnUNetTrainer.",
        "Searching in external trainer paths from environment variable 'nnUNet_extTrainer'...",
        f"Searching in: {first}",
        f"Searching for class MyExtTrainer in folder {first} with current module None",
        "  Inspecting module: other",
        f"Searching in: {second}",
        f"Searching for class MyExtTrainer in folder {second} with current module None",
        f"  Inspecting module: {mod}",
        f"Found class MyExtTrainer in {mod}",
        f"Using trainer 'MyExtTrainer' from: {second}"]


def test_close_matches():
    names = ["nnUNetTrainer", "nnUNetTrainerNoMirroring", "nnUNetTrainer_5epochs", "nnUNetTrainerDiceCELoss_noSmooth"]
    assert close_matches("nnunettrainer", names)[0] == "nnUNetTrainer"
    assert "nnUNetTrainer_5epochs" in close_matches("nnUNetTrainer_5epoch", names)
    assert close_matches("xyz", names) == []


def test_trainer_lookup_unknown_name(monkeypatch, tmp_path):
    pytest.importorskip("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    assert recursive_find_trainer_class_by_name("nnUNetTrainer") is nnUNetTrainer
    with pytest.raises(UserError) as e:
        recursive_find_trainer_class_by_name("nnUNetTrainr")
    assert "nnUNetTrainr" in str(e.value) and "Did you mean: nnUNetTrainer" in str(e.value)
    assert "nnUNet_extTrainer=None" in str(e.value)


def test_trainer_lookup_external(monkeypatch, tmp_path):
    pytest.importorskip("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    mod = f"engb_ext_tr_{uuid.uuid4().hex[:8]}"
    _write(str(tmp_path / f"{mod}.py"), "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
                                        "class EngBExtTrainer(nnUNetTrainer):\n    pass\n"
                                        "class EngBNotATrainer:\n    pass\n")
    monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path))
    assert recursive_find_trainer_class_by_name("EngBExtTrainer").__name__ == "EngBExtTrainer"
    with pytest.raises(UserError, match="not a subclass of nnUNetTrainer"):
        recursive_find_trainer_class_by_name("EngBNotATrainer")


def test_trainer_lookup_suggests_external_trainers(monkeypatch, tmp_path):
    """A misspelt custom trainer of an nnUNet_extTrainer folder is among the suggestions, as package ones are."""
    pytest.importorskip("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    mod = f"engb_ext_tr_{uuid.uuid4().hex[:8]}"
    _write(str(tmp_path / "sub" / f"{mod}.py"),
           "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
           "class EngBTinyTrainer(nnUNetTrainer):\n    pass\n")
    monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path))
    with pytest.raises(UserError) as e:
        recursive_find_trainer_class_by_name("EngBTinnyTrainer")
    assert "Did you mean: EngBTinyTrainer" in str(e.value)


def test_classes_defined_in(tmp_path):
    from nnunetv2.utilities.find_class_by_name import classes_defined_in
    _write(str(tmp_path / "a.py"), "class A(object):\n    class Inner:\n        pass\nclass _Private:\n    pass\n")
    _write(str(tmp_path / "pkg" / "b.py"), "x = 'class NotCode'\nclass B:\n    pass\n")
    _write(str(tmp_path / "notes.txt"), "class C:\n")
    assert classes_defined_in([str(tmp_path), str(tmp_path / "missing")]) == ["A", "B", "Inner"]


def test_trainer_lookup_with_stand_in_package(monkeypatch, tmp_path, capsys):
    """Until the real trainer package exists: the same checks against a stand-in nnunetv2.training package."""
    import importlib.util
    import nnunetv2
    if importlib.util.find_spec("nnunetv2.training") is not None:
        pytest.skip("the real trainer package exists; covered by the tests above")
    pkg = tmp_path / "training" / "nnUNetTrainer"
    _write(str(tmp_path / "training" / "__init__.py"))
    _write(str(pkg / "__init__.py"))
    _write(str(pkg / "nnUNetTrainer.py"), "class nnUNetTrainer:\n    pass\n")
    _write(str(pkg / "variants" / "__init__.py"))
    _write(str(pkg / "variants" / "v.py"), "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
                                           "class nnUNetTrainer_5epochs(nnUNetTrainer):\n    pass\n")
    ext = tmp_path / "ext"
    mod = f"engb_ext_tr_{uuid.uuid4().hex[:8]}"
    _write(str(ext / f"{mod}.py"), "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
                                   "class EngBExtTrainer(nnUNetTrainer):\n    pass\nclass EngBNotATrainer:\n    pass\n")
    monkeypatch.setattr(nnunetv2, "__path__", [str(tmp_path)] + list(nnunetv2.__path__))
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
    try:
        monkeypatch.delenv("nnUNet_extTrainer", raising=False)
        assert find("nnUNetTrainer_5epochs").__module__ == "nnunetv2.training.nnUNetTrainer.variants.v"
        with pytest.raises(UserError) as e:
            find("nnUNetTrainer_5epoch")
        assert "Did you mean: nnUNetTrainer_5epochs, nnUNetTrainer?" in str(e.value)
        assert "nnUNet_extTrainer=None" in str(e.value)
        monkeypatch.setenv("nnUNet_extTrainer", str(ext))
        assert find("EngBExtTrainer").__name__ == "EngBExtTrainer"
        assert f"Using trainer 'EngBExtTrainer' from: {ext}" in capsys.readouterr().out
        with pytest.raises(UserError, match="not a subclass of nnUNetTrainer"):
            find("EngBNotATrainer")
        with pytest.raises(UserError, match=f"nnUNet_extTrainer='{ext}'"):
            find("Missing")
    finally:
        for m in [m for m in sys.modules if m.startswith("nnunetv2.training")]:
            del sys.modules[m]


def test_unknown_planner_lists_only_public_planners():
    """-pl with a typo lists the planners a user can choose; private helper bases (_ResEncPreset) are none."""
    from nnunetv2.errors import UserError
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.class_lookup import find_class_or_explain
    with pytest.raises(UserError) as e:
        find_class_or_explain('nnunetv2.experiment_planning', 'nnUNetPlannerResEncMM', ExperimentPlanner,
                              'experiment planner', '-pl')
    line = e.value.one_line()
    assert 'Did you mean nnUNetPlannerResEncM' in line and 'nnUNetPlannerResEncXL' in line
    assert '_ResEncPreset' not in line


@pytest.mark.parametrize("lookup, name, flag", [("_planner_class", "DatasetFingerprintExtractor", "-pl"),
                                                ("preprocessor_class", "CTNormalization", "-preprocessor_name"),
                                                ("_fingerprint_extractor_class", "ExperimentPlanner", "-fpe")])
def test_a_class_of_the_wrong_kind_is_one_line(lookup, name, flag):
    """Another class of the package given to the wrong flag (found by name, but no planner/preprocessor/extractor)
    is refused with one line at the lookup, not a TypeError from its constructor later."""
    from nnunetv2.errors import UserError
    from nnunetv2.experiment_planning import plan_and_preprocess_api as api
    with pytest.raises(UserError) as e:
        getattr(api, lookup)(name)
    assert f"{name} (" in e.value.one_line() and f"cannot be given to {flag}" in e.value.one_line()


def test_a_duck_typed_class_with_the_required_method_is_accepted():
    """A class not derived from the base but with the method that is called (the reference accepts such planners)."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.class_lookup import find_class_or_explain
    assert find_class_or_explain("nnunetv2.experiment_planning", "ExperimentPlanner", DatasetFingerprintExtractor,
                                 "thing", "-x", required_method="plan_experiment") is ExperimentPlanner


@pytest.mark.parametrize("lookup, name, flag", [("_planner_class", "plan_experiments", "-pl"),
                                                ("_planner_class", "ANISO_THRESHOLD", "-pl"),
                                                ("preprocessor_class", "resample_data_or_seg_to_shape",
                                                 "-preprocessor_name")])
def test_a_function_or_constant_of_that_name_is_one_line_too(lookup, name, flag):
    """The name may find a function or a constant of the package (no class at all): the same one line, not a
    TypeError from issubclass()."""
    from nnunetv2.errors import UserError
    from nnunetv2.experiment_planning import plan_and_preprocess_api as api
    with pytest.raises(UserError) as e:
        getattr(api, lookup)(name)
    assert f"cannot be given to {flag}" in e.value.one_line()
