"""Bad input gives one-line UserErrors; checkpoints load safely; trainer lookup binds by parameter name."""
from __future__ import annotations

import logging
import os
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2.errors import UserError
from _inference_golden import model_folder, safe_extract

DS3 = 'Dataset902_SynthMRRegions'
DS2 = 'Dataset903_SynthNatural2D'


@pytest.fixture(scope="module")
def results(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("err_models")
    mp = pytest.MonkeyPatch()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        mp.setenv(name, str(root / name))
    for ds in (DS3, DS2):
        safe_extract(next((shared_dir / "reference" / "models" / ds).glob("*.zip")), root / "nnUNet_results")
    yield root / "nnUNet_results"
    mp.undo()


@pytest.fixture(scope="module")
def predictor3d(results):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    p = nnUNetPredictor(use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_folder(results, DS3)), (0,))
    return p


def _copy_model(results: Path, tmp_path: Path, ds: str) -> Path:
    dst = tmp_path / 'model'
    shutil.copytree(model_folder(results, ds), dst)
    return dst


def test_model_folder_errors(results, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    p = nnUNetPredictor(device=torch.device('cpu'))
    with pytest.raises(UserError, match='Model folder not found'):
        p.initialize_from_trained_model_folder(str(tmp_path / 'nope'), (0,))
    m = _copy_model(results, tmp_path, DS2)
    with pytest.raises(UserError, match=r'fold_1.*checkpoint_final.pth not found.*fold_0 \(checkpoint_final.pth\)'):
        p.initialize_from_trained_model_folder(str(m), (0, 1))
    with pytest.raises(UserError, match='checkpoint_best.pth not found.*fold_0 \\(checkpoint_final.pth\\)'):
        p.initialize_from_trained_model_folder(str(m), (0,), 'checkpoint_best.pth')
    with pytest.raises(UserError, match='No folds with checkpoint_best.pth'):
        p.initialize_from_trained_model_folder(str(m), None, 'checkpoint_best.pth')
    (m / 'fold_0' / 'checkpoint_final.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(UserError, match='not a readable PyTorch checkpoint'):
        p.initialize_from_trained_model_folder(str(m), (0,))
    torch.save({'hello': 1}, m / 'fold_0' / 'checkpoint_final.pth')
    with pytest.raises(UserError, match='not an nnU-Net checkpoint'):
        p.initialize_from_trained_model_folder(str(m), (0,))


def test_auto_detect_folds(results, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    m = _copy_model(results, tmp_path, DS2)
    for f in ('fold_10', 'fold_2', 'fold_all'):
        shutil.copytree(m / 'fold_0', m / f)
    (m / 'fold_3').mkdir()
    assert nnUNetPredictor.auto_detect_available_folds(str(m), 'checkpoint_final.pth') == [0, 10, 2]


def test_input_errors(predictor3d, golden_raw, tmp_path):
    images = golden_raw(DS3) / 'imagesTs'
    out = str(tmp_path / 'out')
    p = predictor3d
    with pytest.raises(UserError, match='Input folder not found'):
        p.predict_from_files_sequential(str(tmp_path / 'missing'), out)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UserError, match='is empty'):
        p.predict_from_files_sequential(str(tmp_path / 'empty'), out)
    wrong = tmp_path / 'wrong'
    wrong.mkdir()
    (wrong / 'a_0000.nrrd').write_bytes(b'x')
    with pytest.raises(UserError, match=r'no files ending with \.nii\.gz.*\.nrrd'):
        p.predict_from_files_sequential(str(wrong), out)
    nochan = tmp_path / 'nochan'
    nochan.mkdir()
    shutil.copy(images / 'mr_008_0000.nii.gz', nochan / 'mr_008.nii.gz')
    with pytest.raises(UserError, match=r'mr_008\.nii\.gz does not follow the naming CASE_XXXX'):
        p.predict_from_files_sequential(str(nochan), out)
    missing = tmp_path / 'missing_channel'
    missing.mkdir()
    for f in ('mr_008_0000.nii.gz', 'mr_008_0001.nii.gz', 'mr_009_0000.nii.gz'):
        shutil.copy(images / f, missing / f)
    with pytest.raises(UserError, match=r'Case mr_009 .*missing channel file\(s\) _0001'):
        p.predict_from_files_sequential(str(missing), out)
    extra = tmp_path / 'extra'
    extra.mkdir()
    for i in range(3):
        shutil.copy(images / 'mr_008_0000.nii.gz', extra / f'mr_008_000{i}.nii.gz')
    with pytest.raises(UserError, match=r'unexpected channel file\(s\) _0002.*expects 2 input channel'):
        p.predict_from_files_sequential(str(extra), out)
    with pytest.raises(UserError, match='part_id'):
        p.predict_from_files(str(images), out, num_parts=2, part_id=2)
    dangling = tmp_path / 'dangling'
    dangling.mkdir()
    shutil.copy(images / 'mr_008_0000.nii.gz', dangling / 'mr_008_0000.nii.gz')
    shutil.copy(images / 'mr_008_0001.nii.gz', dangling / 'mr_008_0001.nii.gz')
    for c in ('0000', '0001'):
        os.symlink(tmp_path / 'nowhere.nii.gz', dangling / f'mr_009_{c}.nii.gz')
    with pytest.raises(UserError, match=r'mr_009_0000\.nii\.gz is a symbolic link to .*nowhere.*does not exist'):
        p.predict_from_files_sequential(str(dangling), out)  # was: mr_009 silently left out
    assert not os.path.exists(out) or not os.listdir(out)


def test_wrong_number_of_channels_after_reading(predictor3d, golden_raw):
    p = predictor3d
    img = np.zeros((1, 20, 20, 20), dtype=np.float32)
    with pytest.raises(UserError, match=r'1 (image )?channel'):
        p.predict_single_npy_array(img, {'spacing': [1., 1., 1.]})


def test_continue_prediction_skips_only_complete_outputs(predictor3d, golden_raw, tmp_path):
    images = golden_raw(DS3) / 'imagesTs'
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'predict_from_raw_data_args.json').write_text('{}')  # an earlier prediction's folder
    (out / 'mr_008.nii.gz').write_bytes(b'done')
    (out / 'mr_009.nii.gz').write_bytes(b'done')
    (out / 'mr_009.npz').write_bytes(b'done')
    lists, outs, _ = predictor3d._manage_input_and_output_lists(str(images), str(out), None, False, 0, 1, True)
    assert [os.path.basename(o) for o in outs] == ['mr_008']  # no .npz yet
    lists, outs, _ = predictor3d._manage_input_and_output_lists(str(images), str(out), None, False, 0, 1, False)
    assert outs == [] and lists == []
    lists, outs, segs = predictor3d._manage_input_and_output_lists(str(images), str(out), None, True, 1, 2, False)
    assert [os.path.basename(o) for o in outs] == ['mr_009'] and segs == [None]
    assert [os.path.basename(f) for f in lists[0]] == ['mr_009_0000.nii.gz', 'mr_009_0001.nii.gz']


def test_export_functions_are_looked_up_at_call_time(results, golden_raw, tmp_path, monkeypatch):
    """TotalSegmentator replaces export_prediction's functions at run time."""
    import nnunetv2.inference.export_prediction as ep
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    calls = []
    monkeypatch.setattr(ep, 'export_prediction_from_logits', lambda *a, **k: calls.append(a[5]))
    p = nnUNetPredictor(use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_folder(results, DS2)), (0,))
    images = golden_raw(DS2) / 'imagesTs'
    p.predict_from_files_sequential([[str(images / 'nat_012_0000.png')]], [str(tmp_path / 'x')])
    assert calls == [str(tmp_path / 'x')]


def test_cli_user_errors(results, tmp_path, capsys):
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point
    with pytest.raises(SystemExit) as e:
        predict_entry_point(['-i', str(tmp_path), '-o', str(tmp_path / 'o'), '-d', '903', '-c', '2d', '-f', '0',
                             '-tr', 'nnUNetTrainer_5epochs', '-p', 'nnUNetPlansTiny', '-device', 'cpu',
                             '-num_parts', '2', '-part_id', '2'])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('nnU-Net error:') and 'part_id' in err[0]
    with pytest.raises(SystemExit) as e:
        predict_entry_point(['-i', str(tmp_path), '-o', str(tmp_path / 'o'), '-d', '903', '-c', '2d', '-f', '3',
                             '-tr', 'nnUNetTrainer_5epochs', '-p', 'nnUNetPlansTiny', '-device', 'cpu'])
    assert e.value.code == 1
    assert 'fold_3' in capsys.readouterr().err
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point_modelfolder
    model = results / 'Dataset903_SynthNatural2D' / 'nnUNetTrainer_5epochs__nnUNetPlansTiny__2d'
    with pytest.raises(SystemExit) as e:
        predict_entry_point_modelfolder(['-i', str(tmp_path), '-o', str(tmp_path / 'o'), '-m', str(model),
                                         '-f', '3', '-device', 'cpu'])
    assert e.value.code == 1
    assert 'fold_3' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()  # a refused prediction leaves no empty output folder behind


# ----- checkpoint I/O -----------------------------------------------------------------------------------------
def test_checkpoint_io(results, tmp_path, monkeypatch):
    import fractions
    from nnunetv2.utilities.checkpoint_io import load_checkpoint, strip_state_dict_prefixes
    ck = load_checkpoint(str(model_folder(results, DS3) / 'fold_0' / 'checkpoint_final.pth'))
    assert ck['trainer_name'] == 'nnUNetTrainer_5epochs' and isinstance(ck['_best_ema'], np.float32)
    assert tuple(ck['inference_allowed_mirroring_axes']) == (0, 1, 2)
    bad = tmp_path / 'bad.pth'
    torch.save({'network_weights': {}, 'x': fractions.Fraction(1, 3)}, bad)
    with pytest.raises(UserError, match=r'bad\.pth contains objects.*fractions\.Fraction.*allow_unsafe=True'):
        load_checkpoint(str(bad))
    assert load_checkpoint(str(bad), allow_unsafe=True)['x'] == fractions.Fraction(1, 3)
    monkeypatch.setenv('nnUNet_allow_unsafe_checkpoints', '1')
    assert load_checkpoint(str(bad))['x'] == fractions.Fraction(1, 3)
    sd = OrderedDict([('module._orig_mod.a', 1), ('_orig_mod.b', 2), ('c', 3)])
    assert list(strip_state_dict_prefixes(sd).items()) == [('a', 1), ('b', 2), ('c', 3)]


def test_checkpoint_allow_list_without_name_pairs(results, monkeypatch):
    """torch 2.5's safe_globals takes no (object, name) pairs: the NumPy functions are then listed as aliases under
    each module name a checkpoint may use. Loading a reference checkpoint (NumPy scalars inside) through them gives
    the same values as through the pairs."""
    from nnunetv2.utilities import checkpoint_io
    path = str(model_folder(results, DS3) / 'fold_0' / 'checkpoint_final.pth')
    with_pairs = checkpoint_io.load_checkpoint(path)
    monkeypatch.delattr(torch.serialization, "get_unsafe_globals_in_checkpoint")
    entries = checkpoint_io._numpy_safe_globals()
    assert not any(isinstance(e, tuple) for e in entries)
    names = {f"{e.__module__}.{e.__name__}" for e in entries if callable(e) and not isinstance(e, type)}
    assert names == {f"numpy.{m}multiarray.{f}" for m in ("core.", "_core.") for f in ("scalar", "_reconstruct")}
    aliases = checkpoint_io.load_checkpoint(path)
    assert aliases['_best_ema'] == with_pairs['_best_ema'] and type(aliases['_best_ema']) is np.float32
    assert aliases['logging'] == with_pairs['logging']


# ----- trainer build_network_architecture binding ---------------------------------------------------------------
class _Cfg:
    network_arch_class_name = 'X'
    network_arch_init_kwargs = {'k': 1}
    network_arch_init_kwargs_req_import = ()


@pytest.mark.parametrize("form", ['2.1', '2.3', '2.7', 'wrapper'])
def test_build_network_binds_by_name(form):
    from nnunetv2.inference.model_loading import call_build_network_architecture
    seen = {}
    if form == '2.1':
        def fn(plans_manager, dataset_json, configuration_manager, num_input_channels, enable_deep_supervision=True):
            seen.update(pm=plans_manager, dj=dataset_json, cm=configuration_manager, n=num_input_channels,
                        ds=enable_deep_supervision)
    elif form == '2.3':
        def fn(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import, num_input_channels,
               num_output_channels, enable_deep_supervision=True):
            seen.update(a=architecture_class_name, k=arch_init_kwargs, n=num_input_channels, o=num_output_channels,
                        ds=enable_deep_supervision)
    else:
        def fn(plans_manager, configuration_manager, num_input_channels, num_output_channels,
               enable_deep_supervision=True):
            seen.update(pm=plans_manager, cm=configuration_manager, n=num_input_channels, o=num_output_channels,
                        ds=enable_deep_supervision)
    if form == 'wrapper':  # an override with only *args/**kwargs gets the 2.3-2.6 form, as in the reference
        def fn(*args, **kwargs):
            seen.update(args=args, kwargs=kwargs)
    cfg = _Cfg()
    if form == 'wrapper':
        with pytest.warns(DeprecationWarning):
            call_build_network_architecture(fn, 'PM', cfg, {'dj': 1}, 4, 3)
        assert seen == {'args': ('X', {'k': 1}, (), 4, 3, False), 'kwargs': {}}
    elif form == '2.3':
        with pytest.warns(DeprecationWarning):
            call_build_network_architecture(fn, 'PM', cfg, {'dj': 1}, 4, 3)
        assert seen == {'a': 'X', 'k': {'k': 1}, 'n': 4, 'o': 3, 'ds': False}
    else:
        call_build_network_architecture(fn, 'PM', cfg, {'dj': 1}, 4, 3)
        assert seen['pm'] == 'PM' and seen['cm'] is cfg and seen['n'] == 4 and seen['ds'] is False
        if form == '2.1':
            assert seen['dj'] == {'dj': 1}


def _model_naming_trainer(results, tmp_path, trainer_name: str):
    """A copy of Dataset902's model whose checkpoint names ``trainer_name``."""
    m = _copy_model(results, tmp_path, DS2)
    ck = torch.load(m / 'fold_0' / 'checkpoint_final.pth', weights_only=False)
    ck['trainer_name'] = trainer_name
    torch.save(ck, m / 'fold_0' / 'checkpoint_final.pth')
    return m


def test_unknown_trainer_falls_back_to_plans_with_one_log_line(results, tmp_path, caplog):
    import nnunetv2.inference.model_loading as ml
    m = _model_naming_trainer(results, tmp_path, 'SomeTrainerThatDoesNotExist')
    with caplog.at_level(logging.INFO, logger=ml.__name__):
        loaded = ml.load_trained_model(str(m), [0])
    lines = [r for r in caplog.records if 'SomeTrainerThatDoesNotExist' in r.getMessage()]
    assert len(lines) == 1 and 'from the plans' in lines[0].getMessage()
    assert loaded.network.__class__.__name__ == 'PlainConvUNet' and not loaded.network.decoder.deep_supervision


@pytest.mark.parametrize('failure', ['from math import does_not_exist', 'def broken(:'])
def test_trainer_module_that_fails_to_import_is_warned_about(results, tmp_path, caplog, monkeypatch, failure):
    """The trainer's own module breaks on import (TotalSpineSeg's trainer after its augmentation library moved a
    name; or a syntax error): the model still predicts with the plans' network, and a warning (shown without any
    logging set-up) names the trainer, the module and the error."""
    import nnunetv2.inference.model_loading as ml
    ext = tmp_path / 'ext'
    ext.mkdir()
    (ext / 'my_trainers.py').write_text(
        f'{failure}\nfrom nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n\n\n'
        'class MyBrokenTrainer(nnUNetTrainer):\n    pass\n')
    monkeypatch.setenv('nnUNet_extTrainer', str(ext))
    m = _model_naming_trainer(results, tmp_path, 'MyBrokenTrainer')
    with caplog.at_level(logging.WARNING, logger=ml.__name__):
        loaded = ml.load_trained_model(str(m), [0])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and 'MyBrokenTrainer' in
              r.getMessage()]
    assert len(warned) == 1 and 'my_trainers.py' in warned[0] and 'from the plans' in warned[0]
    assert ('does_not_exist' in warned[0]) if 'import' in failure else ('SyntaxError' in warned[0])
    assert loaded.network.__class__.__name__ == 'PlainConvUNet' and not loaded.network.decoder.deep_supervision


def test_listed_files_without_channel_suffix_keep_their_names(tmp_path):
    """Lists given by the caller name their outputs after the files: CASE_0000 -> CASE, t1.nii.gz -> t1 (not the
    hidden '.nii.gz' every such case would share)."""
    from nnunetv2.inference.input_handling import manage_input_and_output_lists
    files = [tmp_path / 't1.nii.gz', tmp_path / 'scan_0001.nii.gz', tmp_path / 'ct_0000.nii.gz']
    for f in files:
        f.write_bytes(b'')
    lists, outs, _ = manage_input_and_output_lists([[str(f)] for f in files], str(tmp_path / 'out'),
                                                   {'file_ending': '.nii.gz', 'channel_names': {'0': 'MR'}}, 1)
    assert lists == [[str(f)] for f in files]
    assert outs == [str(tmp_path / 'out' / n) for n in ('t1', 'scan', 'ct')]


@pytest.mark.parametrize("ds, warned", [(DS3, True), (DS2, False)])
def test_torch_release_with_slow_3d_convolutions_is_named(results, caplog, monkeypatch, ds, warned):
    """A 3-D model loaded for a CUDA device under torch 2.9.0 gets one warning naming the release; a 2-D one none."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities import slow_torch_releases
    monkeypatch.setattr(slow_torch_releases, "_warned", False)
    monkeypatch.setattr(slow_torch_releases.torch, "__version__", "2.9.0+cu128")
    monkeypatch.setattr(slow_torch_releases.torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(slow_torch_releases.torch.backends.cudnn, "version", lambda: 91002)
    p = nnUNetPredictor(use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)
    p.device = torch.device('cuda', 0)  # loading never touches the device; prediction would
    with caplog.at_level(logging.WARNING, logger=slow_torch_releases.__name__):
        p.initialize_from_trained_model_folder(str(model_folder(results, ds)), (0,))
    messages = [r.getMessage() for r in caplog.records if r.name == slow_torch_releases.__name__]
    assert len(messages) == int(warned)
    if warned:
        assert "PyTorch 2.9.0+cu128" in messages[0] and "torch >= 2.10" in messages[0]


@pytest.mark.parametrize('device', ['cuda', 'mps'], ids=['nvidia_gpu', 'apple_mps'])  # 'cuda' in an id skips w/o CUDA
def test_predictor_on_a_device_this_torch_lacks_is_one_clear_error(results, golden_raw, tmp_path, monkeypatch,
                                                                   device):
    # nnUNetPredictor's default device is cuda: on a machine without one the first case used to stop with torch's
    # "Found no NVIDIA driver" traceback from pinning its memory (after the model was loaded)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: False)
    p = nnUNetPredictor(use_mirroring=False, device=torch.device(device), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_folder(results, DS2)), (0,))  # loads on the CPU, as before
    out = tmp_path / 'out'
    with pytest.raises(UserError, match=rf"nnUNetPredictor\(device='{device}'\) was requested but .* available to PyTorch"
                                        rf".*device=torch.device\('cpu'\)"):
        p.predict_from_files(str(golden_raw(DS2) / 'imagesTs'), str(out), num_processes_preprocessing=0,
                             num_processes_segmentation_export=0)
    assert not out.exists() or not [f for f in os.listdir(out) if f.endswith('.png')]
    with pytest.raises(UserError, match='available to PyTorch'):
        p.predict_sliding_window_return_logits(torch.zeros((1, 1, 32, 32)))
