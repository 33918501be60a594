"""The pseudo Dice of the validation epochs and its moving average (which picks checkpoint_best.pth) are computed in
the precision of the TP/FP/FN counts (float32), as nnU-Net 2.8.1 does: the mean of the widened per-class values and
a float64 moving average end in other last digits (seeded CPU training against the reference: identical weights and
losses, but mean_fg_dice / ema_fg_dice / _best_ema differed by ~1e-9)."""
import math

import numpy as np
import pytest

from nnunetv2.training.logging.nnunet_logger import MetaLogger, _next_ema, nnUNetLogger
from nnunetv2.training.nnUNetTrainer import _checkpointing, _epoch

# the expected values below are NumPy 2's: NumPy < 2 widens float32 scalar arithmetic with Python numbers to
# float64 (in the reference too, which computes the same expressions), so they hold there only from NumPy 2 on
nep50 = pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < '2.0.0', reason="float32 scalar promotion of NumPy 2")


def _val_outputs(tp, fp, fn):
    # two validation steps whose counts add up to tp/fp/fn (float32, as validation_step returns them)
    half = lambda x: np.asarray(x, dtype=np.float32) / 2
    return [{'loss': np.float32(0.5), 'tp_hard': half(tp), 'fp_hard': half(fp), 'fn_hard': half(fn)}
            for _ in range(2)]


@nep50
def test_mean_fg_dice_is_the_float32_mean():
    mean, per_class, loss = _epoch.validation_summary(_val_outputs([2, 2, 2], [0, 2, 4], [0, 0, 0]), False)
    assert per_class == [1.0, float(np.float32(2 / 3)), 0.5]
    assert isinstance(mean, np.float32)
    assert float(mean).hex() == '0x1.71c71e0000000p-1'  # np.nanmean of the three float32 values
    assert float(mean) != float(np.nanmean(per_class))  # the float64 mean: 0.7222222288449606
    assert loss == np.float32(0.5)


@nep50
def test_nan_classes_are_left_out_and_all_nan_is_nan():
    mean, per_class, _ = _epoch.validation_summary(_val_outputs([2, 0], [2, 0], [0, 0]), False)
    assert per_class[0] == float(np.float32(2 / 3)) and math.isnan(per_class[1])
    assert mean == np.float32(2 / 3)
    mean, per_class, _ = _epoch.validation_summary(_val_outputs([0], [0], [0]), False)
    assert math.isnan(mean) and math.isnan(per_class[0])


@nep50
def test_ema_in_float32(tmp_path, monkeypatch):
    monkeypatch.delenv('nnUNet_wandb_enabled', raising=False)
    lg = MetaLogger(str(tmp_path), False)
    mean, _, _ = _epoch.validation_summary(_val_outputs([2, 2, 2], [0, 2, 4], [0, 0, 0]), False)
    lg.log('mean_fg_dice', np.float32(0.7), 0)
    lg.log('mean_fg_dice', mean, 1)
    ema = lg.get_value('ema_fg_dice', 1)
    assert isinstance(ema, np.float32)
    assert float(ema).hex() == '0x1.6789ac0000000p-1'  # float64 arithmetic would give 0.702222216129303


@pytest.mark.parametrize('logger_class', [MetaLogger, nnUNetLogger])
def test_resumed_ema_equals_the_uninterrupted_one(tmp_path, monkeypatch, logger_class):
    monkeypatch.delenv('nnUNet_wandb_enabled', raising=False)
    make = (lambda: MetaLogger(str(tmp_path), False)) if logger_class is MetaLogger else nnUNetLogger
    rng = np.random.RandomState(0)
    values = [np.float32(v) for v in rng.uniform(size=40)]
    straight = make()
    for e, v in enumerate(values):
        straight.log('mean_fg_dice', v, e)
    for stop in range(1, len(values)):
        first = make()
        for e, v in enumerate(values[:stop]):
            first.log('mean_fg_dice', v, e)
        # the checkpoint stores the logging lists as Python floats
        saved = _checkpointing.numpy_scalars_as_python(first.get_checkpoint())
        resumed = make()
        resumed.load_checkpoint(saved)
        for e in range(stop, len(values)):
            resumed.log('mean_fg_dice', values[e], e)
        assert [float(x) for x in resumed.get_checkpoint()['ema_fg_dice']] == \
               [float(x) for x in straight.get_checkpoint()['ema_fg_dice']], stop


def test_resumed_float64_ema_is_not_rounded_to_float32():
    # NumPy < 2 (allowed by our requirements) widens np.float32 * 0.9 to float64, so from the second epoch on the
    # moving average is an np.float64 that a checkpoint stores as a Python float; resuming must continue it in
    # float64, not round it to float32 (it did: 38 of 39 resume points of the test above differed under NumPy 1.26)
    value = np.float32(0.7)
    for previous in (np.float64(0.123456789012345), np.float32(0.625), np.float32('nan')):
        uninterrupted, resumed = _next_ema(previous, value), _next_ema(float(previous), value)
        assert type(resumed) is type(uninterrupted), previous
        assert float(resumed) == float(uninterrupted) or (math.isnan(resumed) and math.isnan(uninterrupted))
