"""progress.png: loss + pseudo Dice, epoch duration and learning rate over epochs."""
from __future__ import annotations

import os
from typing import Any, Dict, List

from nnunetv2.file_io import atomic_path

# seaborn's font_scale=2.5 on its default "notebook" context; matplotlib alone gives the same look without seaborn
_RC = {'font.size': 30, 'axes.labelsize': 30, 'axes.titlesize': 30, 'xtick.labelsize': 27.5,
       'ytick.labelsize': 27.5, 'legend.fontsize': 27.5, 'axes.grid': True, 'lines.linewidth': 3.75}


def plot_progress_png(log: Dict[str, List[Any]], output_folder: str) -> str:
    """Write ``<output_folder>/progress.png`` (atomically) from the logger's lists; return its path.

    Epochs ``0..m`` are plotted where ``m + 1`` is the length of the shortest list, so a half-logged epoch (e.g.
    a crash between train and validation) does not break the plot.
    """
    # A bare Figure (no pyplot) renders with Agg, touches no global backend state and needs no display.
    import matplotlib
    from matplotlib.figure import Figure

    epoch = min(len(v) for v in log.values()) - 1
    x_values = list(range(epoch + 1))
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(30, 54))
        ax_all = fig.subplots(3, 1)
        if True:
            ax = ax_all[0]
            ax2 = ax.twinx()
            ax.plot(x_values, log['train_losses'][:epoch + 1], color='b', ls='-', label='loss_tr', linewidth=4)
            ax.plot(x_values, log['val_losses'][:epoch + 1], color='r', ls='-', label='loss_val', linewidth=4)
            ax2.plot(x_values, log['mean_fg_dice'][:epoch + 1], color='g', ls='dotted', label='pseudo dice',
                     linewidth=3)
            ax2.plot(x_values, log['ema_fg_dice'][:epoch + 1], color='g', ls='-', label='pseudo dice (mov. avg.)',
                     linewidth=4)
            ax.set_xlabel('epoch')
            ax.set_ylabel('loss')
            ax2.set_ylabel('pseudo dice')
            ax.legend(loc=(0, 1))
            ax2.legend(loc=(0.2, 1))

            ax = ax_all[1]
            durations = [e - s for s, e in zip(log['epoch_start_timestamps'][:epoch + 1],
                                              log['epoch_end_timestamps'][:epoch + 1])]
            ax.plot(x_values, durations, color='b', ls='-', label='epoch duration', linewidth=4)
            ylim = [0] + [ax.get_ylim()[1]]
            ax.set(ylim=ylim)
            ax.set_xlabel('epoch')
            ax.set_ylabel('time [s]')
            ax.legend(loc=(0, 1))

            ax = ax_all[2]
            ax.plot(x_values, log['lrs'][:epoch + 1], color='b', ls='-', label='learning rate', linewidth=4)
            ax.set_xlabel('epoch')
            ax.set_ylabel('learning rate')
            ax.legend(loc=(0, 1))

            fig.tight_layout()
            final = os.path.join(output_folder, 'progress.png')
            with atomic_path(final) as tmp:
                fig.savefig(tmp, format='png')
    return final
