"""MetaLogger / LocalLogger bookkeeping, checkpoint round trip and progress.png (spec 03 §7.2)."""
import os

import numpy as np
import pytest
from PIL import Image

from nnunetv2.training.logging.nnunet_logger import LOCAL_KEYS, LocalLogger, MetaLogger, nnUNetLogger


def _fill(lg, epochs=6):
    t0 = 1000.0
    for e in range(epochs):
        lg.log('epoch_start_timestamps', t0 + 10 * e, e)
        lg.log('lrs', 0.01 * (1 - e / 10) ** 0.9, e)
        lg.log('train_losses', np.float32(-0.1 * e), e)
        lg.log('val_losses', np.float32(-0.08 * e), e)
        lg.log('mean_fg_dice', np.float32(0.1 * e), e)
        lg.log('dice_per_class_or_region', [0.1 * e, 0.05 * e], e)
        lg.log('epoch_end_timestamps', t0 + 10 * e + 5 + e, e)


def test_ema_and_keys(tmp_path, monkeypatch):
    monkeypatch.delenv('nnUNet_wandb_enabled', raising=False)
    lg = MetaLogger(str(tmp_path), False)
    _fill(lg, 3)
    ck = lg.get_checkpoint()
    assert set(ck) == set(LOCAL_KEYS)
    assert all(len(v) == 3 for v in ck.values())
    ema = ck['ema_fg_dice']
    assert ema[0] == pytest.approx(0.0)
    assert ema[1] == pytest.approx(0.9 * 0 + 0.1 * 0.1)
    assert ema[2] == pytest.approx(0.9 * ema[1] + 0.1 * 0.2)
    assert lg.get_value('train_losses', 1) == pytest.approx(-0.1)
    assert len(lg.get_value('lrs', None)) == 3
    # overwriting the current epoch recomputes its EMA from the previous epoch's
    lg.log('mean_fg_dice', np.float32(0.5), 2)
    assert lg.get_value('ema_fg_dice', 2) == pytest.approx(0.9 * ema[1] + 0.1 * 0.5)
    with pytest.raises(KeyError):
        lg.log('not_a_key', 1, 0)


def test_checkpoint_round_trip(tmp_path, monkeypatch):
    monkeypatch.delenv('nnUNet_wandb_enabled', raising=False)
    lg = MetaLogger(str(tmp_path), False)
    _fill(lg, 4)
    import copy
    saved = copy.deepcopy(lg.get_checkpoint())
    fresh = MetaLogger(str(tmp_path), True)
    fresh.load_checkpoint(saved)
    assert fresh.get_checkpoint() == saved
    fresh.log('mean_fg_dice', np.float32(0.9), 4)  # resuming continues the EMA
    assert fresh.get_value('ema_fg_dice', 4) == pytest.approx(0.9 * saved['ema_fg_dice'][3] + 0.1 * 0.9)


def test_wandb_env_validation(tmp_path, monkeypatch):
    monkeypatch.setenv('nnUNet_wandb_enabled', 'maybe')
    with pytest.raises(RuntimeError, match='nnUNet_wandb_enabled'):
        MetaLogger(str(tmp_path), False)
    monkeypatch.setenv('nnUNet_wandb_enabled', 'false')
    assert MetaLogger(str(tmp_path), False).loggers == []


def test_bad_wandb_env_value_is_a_user_error(tmp_path, monkeypatch):
    """A mistyped nnUNet_wandb_enabled is the user's to fix: one line at the CLI (nnUNetv2_train), no traceback."""
    from nnunetv2.errors import UserError
    monkeypatch.setenv('nnUNet_wandb_enabled', 'yes')
    with pytest.raises(UserError) as e:
        MetaLogger(str(tmp_path), False)
    assert isinstance(e.value, RuntimeError)  # what the reference raised
    assert "nnUNet_wandb_enabled='yes'" in e.value.one_line() and '1/True/true' in e.value.one_line()


def test_legacy_nnunet_logger_computes_ema():
    lg = nnUNetLogger()
    lg.log('mean_fg_dice', 0.5, 0)
    lg.log('mean_fg_dice', 1.0, 1)
    assert lg.get_value('ema_fg_dice', None) == pytest.approx([0.5, 0.55])
    plain = LocalLogger()
    plain.log('mean_fg_dice', 0.5, 0)
    assert plain.get_value('ema_fg_dice', None) == []


def test_progress_png_has_curves(tmp_path, monkeypatch):
    monkeypatch.delenv('nnUNet_wandb_enabled', raising=False)
    lg = MetaLogger(str(tmp_path), False)
    _fill(lg, 6)
    lg.log('train_losses', np.float32(-1), 6)  # a half-logged epoch is not plotted
    lg.plot_progress_png(str(tmp_path))
    png = tmp_path / 'progress.png'
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    img = np.asarray(Image.open(png).convert('RGB')).astype(int)
    assert img.shape == (5400, 3000, 3)
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 10
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    top, middle, bottom = img.shape[0] // 3, 2 * img.shape[0] // 3, img.shape[0]
    blue = (b > 180) & (r < 80) & (g < 80)
    red = (r > 180) & (g < 80) & (b < 80)
    green = (g > 100) & (r < 60) & (b < 60)
    assert red[:top].sum() > 500 and green[:top].sum() > 500 and blue[:top].sum() > 500  # loss + dice panel
    assert blue[top:middle].sum() > 500  # epoch time
    assert blue[middle:bottom].sum() > 500  # learning rate
    assert not any(n.startswith('.nnunet_tmp_') for n in os.listdir(tmp_path))


@pytest.mark.parametrize("make", [lambda: MetaLogger('/nonexistent', False), nnUNetLogger])
def test_ema_indexing_follows_the_reference(make, monkeypatch):
    """Rewriting epoch 0's pseudo Dice averages it with the moving average it replaces (the reference reads
    ``ema[step - 1]``, i.e. ``ema[-1]``); a pseudo Dice for an epoch after a gap raises IndexError as there."""
    monkeypatch.delenv('nnUNet_wandb_enabled', raising=False)
    lg = make()
    lg.log('mean_fg_dice', 0.5, 0)
    lg.log('mean_fg_dice', 0.7, 0)
    assert lg.get_value('ema_fg_dice', None) == pytest.approx([0.9 * 0.5 + 0.1 * 0.7])
    with pytest.raises(IndexError):
        lg.log('mean_fg_dice', 0.6, 2)
