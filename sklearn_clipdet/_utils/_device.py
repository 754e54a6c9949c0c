"""Which torch device to run on: "auto" resolved, and device names checked against the machine."""

import torch

__all__ = ["check_device", "resolve_device"]


def resolve_device(device):
    """Return a concrete torch device name for ``device`` ("auto" picks CUDA when available)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(torch.device(device))


def check_device(device):
    """Raise a ValueError unless ``device`` ("auto", "cpu", "cuda", "cuda:N", "mps") exists here.

    The message says what is wrong and what to use instead.
    """
    if device == "auto":
        return
    choices = "use auto, cpu, cuda, cuda:N or mps"
    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a device; {choices}") from None
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = " (this torch build has no CUDA support)" if torch.version.cuda is None else ""
            raise ValueError(f"device {device!r}: no CUDA device on this machine{build}; "
                             "use cpu")
        if kind.index is not None and kind.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif kind.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: MPS is not available here; use cpu")
    elif kind.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; {choices}")
