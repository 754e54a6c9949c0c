"""Control of a training run: seeding torch without touching its global state, and
carrying a KeyboardInterrupt past skorch."""

from contextlib import contextmanager

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["TrainingInterrupted", "seeded"]


@contextmanager
def seeded(random_state, device, active=True):
    """Seed torch from ``random_state`` without touching the global RNG.

    Parameters
    ----------
    random_state : int, RandomState instance or None
        None (or ``active=False``) leaves torch's random state alone.
    device : str or torch.device
        The CUDA device whose generator is forked too, if CUDA.
    active : bool, default=True
        False makes the context a no-op.
    """
    if random_state is None or not active:
        yield
        return
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    device = torch.device(device)
    cuda = [] if device.type != "cuda" else [
        device.index if device.index is not None else torch.cuda.current_device()
    ]
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


class TrainingInterrupted(BaseException):
    """Carries a KeyboardInterrupt past skorch, which would swallow it."""

    def __init__(self, interrupt, epochs_done, epochs):
        super().__init__(interrupt)
        self.interrupt = interrupt
        self.epochs_done = epochs_done
        self.epochs = epochs
