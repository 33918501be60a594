"""documentation/how-to/train-models.md and explanation_logging.md: what nnUNetv2_train prints is the training log.
Each line the trainer logs with a timestamp carries that same timestamp on the console (as in the reference), so
that console captures (nohup/slurm output, which users and wrappers read) match training_log_*.txt."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from _tiny_plans import tiny_unet_plans

_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+: ")


def test_console_lines_carry_the_log_files_timestamp(nnunet_dirs, capsys):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    name = "Dataset988_ConsoleStamp"
    plans = tiny_unet_plans(name)
    dataset_json = {"channel_names": {"0": "MR"}, "labels": {"background": 0, "fg": 1}, "numTraining": 5,
                    "file_ending": ".nii.gz"}
    (nnunet_dirs["nnUNet_preprocessed"] / name).mkdir()
    (nnunet_dirs["nnUNet_preprocessed"] / name / "nnUNetPlans.json").write_text(json.dumps(plans))
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    capsys.readouterr()
    trainer.print_to_log_file("Epoch", 7)
    trainer.print_to_log_file("no stamp here", add_timestamp=False)
    out = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert _STAMP.match(out[0]) and out[0].endswith("Epoch 7"), out
    assert out[1] == "no stamp here"
    logged = [l.rstrip() for l in Path(trainer.log_file).read_text().splitlines() if l.strip()]
    assert out[0] in logged  # the very same line (same timestamp) in the log file
    assert "no stamp here" in logged
