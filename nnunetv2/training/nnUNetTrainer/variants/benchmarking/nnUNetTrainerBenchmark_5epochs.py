"""5-epoch speed benchmark: records the fastest epoch in <output_folder>/benchmark_result.json."""
import os
import socket
import traceback

import numpy as np
import torch
from torch import distributed as dist

from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json, save_json
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerBenchmark_5epochs(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        if self.fold != 0:
            raise UserError(f"{self.__class__.__name__} only runs on fold 0, got fold {self.fold}.")
        if not torch.cuda.is_available() or self.device.type != 'cuda':
            raise UserError(f"{self.__class__.__name__} benchmarks GPUs: it needs -device cuda on a CUDA machine.")
        self.disable_checkpointing = True
        self.num_epochs = 5
        self.crashed_with_runtime_error = False

    def perform_actual_validation(self, save_probabilities: bool = False):
        pass  # a benchmark needs no final validation

    def run_training(self):
        try:
            super().run_training()
        except RuntimeError as e:
            self._record_crash(e)

    def _record_crash(self, e: RuntimeError) -> None:
        """A RuntimeError (typically out of GPU memory) is recorded as 'Not enough VRAM!' in the result file; the
        exception itself goes to the training log, since it may as well be something else."""
        self.print_to_log_file("Benchmark stopped by an exception; recorded as 'Not enough VRAM!':\n" +
                               ''.join(traceback.format_exception(type(e), e, e.__traceback__)),
                               also_print_to_console=True)
        self.crashed_with_runtime_error = True
        self.on_train_end()

    def _result_key_and_values(self):
        gpu_name = torch.cuda.get_device_name()
        num_gpus = dist.get_world_size() if self.is_ddp else 1
        key = (f"{socket.gethostname()}__{torch.backends.cudnn.version()}__{torch.__version__.replace(' ', '')}__"
               f"{gpu_name.replace(' ', '')}__num_gpus_{num_gpus}")
        return key, {'torch_version': torch.__version__, 'cudnn_version': torch.backends.cudnn.version(),
                     'gpu_name': gpu_name, 'num_gpus': num_gpus, 'hostname': socket.gethostname()}

    def on_train_end(self):
        super().on_train_end()
        if self.local_rank != 0:
            return
        key, values = self._result_key_and_values()
        if self.crashed_with_runtime_error:
            fastest = 'Not enough VRAM!'
        else:
            starts = self.logger.get_value('epoch_start_timestamps', step=None)
            ends = self.logger.get_value('epoch_end_timestamps', step=None)
            fastest = float(np.min(np.subtract(ends, starts)[:len(starts)]))
        values['fastest_epoch'] = fastest
        result_file = os.path.join(self.output_folder, 'benchmark_result.json')
        results = load_json(result_file) if os.path.isfile(result_file) else {}
        results[key] = values
        save_json(results, result_file)
