"""The classifier's default skorch callbacks that differ from skorch's own."""

import math
import sys
import warnings

import torch
from skorch.callbacks import Callback, LRScheduler
from skorch.callbacks import PrintLog as SkorchPrintLog
from skorch.utils import Ansi

from ..exceptions import TrainingDivergedError

__all__ = ["DivergenceCheck", "PrintLog", "RestartingLRScheduler"]


class DivergenceCheck(Callback):
    """Stop training whose weights are no longer finite; warn of a loss that never is.

    Without it, a run that diverges (a huge ``sam_rho`` or ``auc_power``) ends
    quietly with NaN weights, and the classifier then calls every image real.
    """

    def on_train_begin(self, net, **kwargs):
        self.non_finite_losses_ = 0
        self.epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        self.epochs_ += 1
        loss = net.history[-1].get("train_loss", 0.0)
        if not math.isfinite(loss):
            self.non_finite_losses_ += 1
        with torch.no_grad():
            finite = all(torch.isfinite(p).all() for p in net.module_.parameters())
        if not finite:
            raise TrainingDivergedError(
                f"Training diverged in epoch {len(net.history)}: the weights are no longer "
                f"finite (training loss {loss}). Lower lr, sam_rho or auc_power, or use "
                "standardize=True."
            )

    def on_train_end(self, net, **kwargs):
        if self.epochs_ and self.non_finite_losses_ == self.epochs_:
            warnings.warn(
                f"The training loss was not finite in any of the {self.epochs_} epochs "
                "(e.g. a huge auc_margin): the weights moved by finite steps, but the "
                "objective is meaningless; check the loss settings.",
                UserWarning,
                stacklevel=2,
            )


class PrintLog(SkorchPrintLog):
    """skorch's epoch table, coloured only when it is printed to a terminal.

    skorch marks the best value of each column with ANSI colour codes, which
    end up as escape sequences in pipes, log files and other sinks.
    """

    def format_row(self, row, key, color):
        if self.sink is print and sys.stdout.isatty():
            return super().format_row(row, key, color)
        return super().format_row(row, key, color="").replace(Ansi.ENDC.value, "")


class RestartingLRScheduler(LRScheduler):
    """skorch's LRScheduler, run from its start by every training call.

    skorch resumes a schedule where the history ends, so a ``partial_fit``
    after a full cosine schedule climbs back up from ``lr_min``. Here every
    call to ``fit`` or ``partial_fit`` starts the schedule again from the
    net's current ``lr``: further training is one more run of the same
    schedule, from the current weights.

    Parameters
    ----------
    policy : type
        A torch learning-rate scheduler class.
    **kwargs
        Its arguments, and those of skorch's LRScheduler.
    """

    def __init__(self, policy, **kwargs):
        # An explicit last_epoch keeps skorch from resuming at len(history).
        super().__init__(policy, last_epoch=-1, **kwargs)

    def on_train_begin(self, net, **kwargs):
        for group in net.optimizer_.param_groups:
            group["lr"] = group["initial_lr"] = net.lr
        super().on_train_begin(net, **kwargs)
