"""Asynchronous work on a CUDA device, written once for every device.

On a CUDA device, model inputs are prepared on a side stream and embeddings
copied back to pinned host memory without blocking, each step ordered by
events instead of synchronising the device. On the CPU the same calls do the
plain synchronous thing, so the code that uses them has one path.
"""

import contextlib
from collections import deque

import torch

__all__ = ["HostCopy", "InFlight", "SideStream", "copy_to_device"]


class SideStream:
    """A CUDA stream for work that overlaps the default stream's (no-op on the CPU).

    Work is queued on it inside :meth:`run`; :meth:`hand_over` lets the
    calling thread's current stream use a tensor made there.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def run(self):
        """Context in which this thread's CUDA work goes to the side stream."""
        if self._stream is None:
            return contextlib.nullcontext()
        return torch.cuda.stream(self._stream)

    def record(self):
        """An event marking the work queued so far on the side stream (None on the CPU)."""
        return None if self._stream is None else self._stream.record_event()

    def hand_over(self, tensor, event):
        """Make the current stream wait for ``event`` before using ``tensor``, and keep the
        memory of ``tensor`` from being reused until the current stream is done with it."""
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            tensor.record_stream(current)
        return tensor


def copy_to_device(tensors, device):
    """Stack CPU tensors of one shape and copy them to the CUDA ``device`` through pinned
    memory, without waiting for the copy."""
    pinned = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype,
                         pin_memory=True)
    torch.stack(tensors, out=pinned)
    return pinned.to(device, non_blocking=True)


class HostCopy:
    """A copy of a device tensor to the CPU, started now and waited for in :meth:`result`.

    On a CUDA device the copy goes to pinned memory on the current stream
    without blocking; :meth:`done` says whether it has finished.
    """

    def __init__(self, tensor):
        tensor = torch.as_tensor(tensor)
        self._event = None
        if tensor.device.type == "cuda":
            self._tensor = tensor.to("cpu", non_blocking=True)  # pinned, asynchronous
            self._event = torch.cuda.current_stream(tensor.device).record_event()
        else:
            self._tensor = tensor

    def done(self):
        """True when :meth:`result` will not wait."""
        return self._event is None or self._event.query()

    def result(self):
        """The copy as a numpy array, once it has arrived."""
        if self._event is not None:
            self._event.synchronize()
        return self._tensor.numpy()


class InFlight:
    """Results on their way from the device to the host, each with a tag, kept in order.

    :meth:`add` starts a :class:`HostCopy`; :meth:`arrived` hands back, in order, the
    copies that have finished, or any number once more than ``limit`` are waiting (or
    all with ``wait``), so that the device runs ahead of the host by at most ``limit``.
    """

    def __init__(self, limit=2):
        self.limit = limit
        self._copies = deque()

    def add(self, tag, tensor):
        self._copies.append((tag, HostCopy(tensor)))

    def arrived(self, wait=False):
        """Yield ``(tag, array)`` for each copy delivered now."""
        while self._copies and (
            wait or len(self._copies) > self.limit or self._copies[0][1].done()
        ):
            tag, copy = self._copies.popleft()
            yield tag, copy.result()
