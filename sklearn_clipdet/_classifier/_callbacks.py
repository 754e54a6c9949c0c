"""The classifier's default skorch callbacks that differ from skorch's own."""

import sys

from skorch.callbacks import LRScheduler
from skorch.callbacks import PrintLog as SkorchPrintLog
from skorch.utils import Ansi

__all__ = ["PrintLog", "RestartingLRScheduler"]


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
