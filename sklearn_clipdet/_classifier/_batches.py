"""Mini-batches of feature rows kept on the training device, as skorch iterators.

skorch's default iterator is a :class:`~torch.utils.data.DataLoader` that
indexes one sample at a time, collates the rows and copies every batch to the
device. For feature rows that is most of an epoch's time on a GPU. Here the
rows are copied to the device once per ``fit`` (or ``predict``) call and each
batch is sliced from them by index, in a fresh random order every epoch.
When the rows do not fit in the device's free memory they are streamed to it
in chunks through pinned host memory instead.

:class:`DeviceBatches` is the classifier's ``iterator_train`` and
``iterator_valid``, :class:`FeatureDataset` its dataset, so skorch's
``train_split``, callbacks and history work as with any skorch net.
"""

import numpy as np
import torch
from skorch.dataset import Dataset
from torch.utils.data import Subset

__all__ = [
    "DEVICE_MEMORY_SHARE",
    "DeviceBatches",
    "FeatureDataset",
    "arrays_of",
    "fits_in_device_memory",
]

# At most this share of a CUDA device's free memory holds the rows; the rest
# is left to the network, its activations and other users of the device.
DEVICE_MEMORY_SHARE = 0.5
# Rows streamed to the device at a time when they do not fit there.
_CHUNK_BYTES = 256 * 2**20


class FeatureDataset(Dataset):
    """Feature rows with their labels as given and as training targets.

    A :class:`skorch.dataset.Dataset`, so that skorch's splits and scoring
    callbacks read ``X`` and ``y`` from it: scoring callbacks compare
    ``predict`` with ``y``, the labels as the user gave them, while the loss
    trains on ``targets``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32
        Feature rows.
    y : ndarray of shape (n_samples,) or None, default=None
        Labels as given to ``fit``.
    targets : ndarray of shape (n_samples,), float32, or None, default=None
        The labels encoded for the loss: 1.0 for ``classes_[1]``, else 0.0.
    """

    def __init__(self, X, y=None, targets=None):
        super().__init__(X, y)
        self.targets = targets


def fits_in_device_memory(nbytes, device):
    """Whether ``nbytes`` of rows may be copied to ``device`` whole.

    Always True off CUDA (on the CPU nothing is copied). On a CUDA device the
    rows may take :data:`DEVICE_MEMORY_SHARE` of its free memory, as reported
    by :func:`torch.cuda.mem_get_info`.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_SHARE * free


class DeviceBatches:
    """skorch iterator: batches of ``(rows, targets)`` sliced from device tensors.

    Built once per training or prediction call (skorch's ``get_iterator``);
    each iteration over it is one epoch. The rows are put on ``device`` when
    the iterator is built: on the CPU the tensors share memory with the
    dataset's arrays; on a CUDA device they are copied once if they fit (see
    :func:`fits_in_device_memory`), else streamed each epoch in chunks through
    pinned host memory with asynchronous copies.

    Parameters
    ----------
    dataset : FeatureDataset or torch.utils.data.Subset of one
        The rows (skorch's ``train_split`` gives subsets).
    batch_size : int
        Rows per batch.
    shuffle : bool, default=False
        Visit the rows in a new random order each epoch (drawn from torch's
        global random generator, on the CPU, so that a seed gives the same
        order on every device).
    drop_last : bool, default=False
        Skip a trailing batch smaller than ``batch_size``.
    device : str or torch.device, default="cpu"
        Where the batches are.

    Yields
    ------
    rows : torch.Tensor of shape (batch, n_features)
    targets : torch.Tensor of shape (batch,) or None
        None when the dataset has no targets (prediction).
    """

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, device="cpu"):
        X, targets = arrays_of(dataset)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.n_rows = len(X)
        self._X = torch.from_numpy(X)
        self._targets = None if targets is None else torch.from_numpy(targets)
        nbytes = self._X.nbytes + (0 if targets is None else self._targets.nbytes)
        self.resident = fits_in_device_memory(nbytes, self.device)
        if self.resident:
            self._X = self._X.to(self.device)
            if self._targets is not None:
                self._targets = self._targets.to(self.device)

    def __len__(self):
        full, rest = divmod(self.n_rows, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def __iter__(self):
        stop = self.n_rows
        if self.drop_last:
            stop -= stop % self.batch_size
        order = torch.randperm(self.n_rows)[:stop] if self.shuffle else None
        chunks = self._resident_chunk if self.resident else self._streamed_chunks
        for rows, targets in chunks(order, stop):
            for start in range(0, len(rows), self.batch_size):
                end = start + self.batch_size
                yield rows[start:end], None if targets is None else targets[start:end]

    def _resident_chunk(self, order, stop):
        if order is None:
            yield self._X[:stop], _take(self._targets, slice(0, stop))
            return
        # Batches gather their rows one at a time: a whole shuffled copy would
        # double the memory the rows take on the device.
        order = order.to(self.device)
        for start in range(0, stop, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self._X[index], _take(self._targets, index)

    def _streamed_chunks(self, order, stop):
        row_bytes = self._X[0].nbytes
        chunk = max(1, _CHUNK_BYTES // (row_bytes * self.batch_size)) * self.batch_size
        pinned = self.device.type == "cuda"
        for start in range(0, stop, chunk):
            end = min(start + chunk, stop)
            index = torch.arange(start, end) if order is None else order[start:end]
            rows = torch.empty((end - start, *self._X.shape[1:]), dtype=self._X.dtype,
                               pin_memory=pinned)
            torch.index_select(self._X, 0, index, out=rows)
            # A pinned buffer is reused only once its copy has finished (torch's
            # caching host allocator records the copy), so copies may overlap.
            rows = rows.to(self.device, non_blocking=pinned)
            targets = _take(self._targets, index)
            yield rows, None if targets is None else targets.to(self.device)


def _take(tensor, index):
    return None if tensor is None else tensor[index]


def arrays_of(dataset):
    """``(X, targets)`` arrays of a FeatureDataset or of (nested) subsets of one."""
    indices = None
    while isinstance(dataset, Subset):
        subset = np.asarray(dataset.indices)
        indices = subset if indices is None else subset[indices]
        dataset = dataset.dataset
    if not isinstance(dataset, FeatureDataset):
        raise TypeError(
            "The classifier's batches come from its own FeatureDataset (or subsets of it, "
            f"as skorch's train_split makes); got {type(dataset).__name__}."
        )
    X, targets = dataset.X, dataset.targets
    if indices is not None:
        X = X[indices]
        targets = None if targets is None else targets[indices]
    return np.ascontiguousarray(X, dtype=np.float32), targets
