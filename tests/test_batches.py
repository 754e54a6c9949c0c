"""Device-resident and streamed mini-batches (the classifier's skorch iterators)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from torch.utils.data import Subset

from sklearn_clipdet import RobustMLPClassifier
from sklearn_clipdet._classifier import _batches
from sklearn_clipdet._classifier._batches import (
    DeviceBatches,
    FeatureDataset,
    fits_in_device_memory,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture()
def dataset():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(103, 5)).astype(np.float32)
    targets = (rng.random(103) > 0.5).astype(np.float32)
    return FeatureDataset(X, targets.astype(int), targets)


@pytest.fixture()
def streamed(monkeypatch):
    """Make every iterator stream its rows, in chunks of two batches of 10."""
    monkeypatch.setattr(_batches, "fits_in_device_memory", lambda nbytes, device: False)
    monkeypatch.setattr(_batches, "_CHUNK_BYTES", 2 * 10 * 5 * 4)


def epochs(iterator, n, seed=0):
    torch.manual_seed(seed)
    return [[(rows.clone(), targets.clone()) for rows, targets in iterator] for _ in range(n)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_streamed_batches_equal_resident_batches(dataset, request, shuffle, drop_last):
    options = dict(batch_size=10, shuffle=shuffle, drop_last=drop_last)
    resident = DeviceBatches(dataset, **options)
    assert resident.resident
    expected = epochs(resident, 2)
    request.getfixturevalue("streamed")
    streamed = DeviceBatches(dataset, **options)
    assert not streamed.resident
    got = epochs(streamed, 2)
    assert [len(epoch) for epoch in got] == [len(resident)] * 2 == [10 + (not drop_last)] * 2
    for epoch_got, epoch_expected in zip(got, expected):
        for (rows, targets), (rows_e, targets_e) in zip(epoch_got, epoch_expected):
            assert torch.equal(rows, rows_e) and torch.equal(targets, targets_e)


def test_rows_keep_their_targets(dataset):
    seen = {}
    for rows, targets in DeviceBatches(dataset, batch_size=7, shuffle=True):
        for row, target in zip(rows.tolist(), targets.tolist()):
            seen[tuple(row)] = target
    expected = {tuple(row): target for row, target in zip(dataset.X.tolist(), dataset.targets)}
    assert seen == expected


def test_subsets_of_subsets(dataset):
    inner = Subset(dataset, np.arange(50, 103))
    outer = Subset(inner, [3, 1, 4])
    rows, targets = next(iter(DeviceBatches(outer, batch_size=8)))
    np.testing.assert_array_equal(rows.numpy(), dataset.X[[53, 51, 54]])
    np.testing.assert_array_equal(targets.numpy(), dataset.targets[[53, 51, 54]])
    with pytest.raises(TypeError, match="FeatureDataset"):
        DeviceBatches(torch.utils.data.TensorDataset(torch.zeros(3, 2)), batch_size=2)


def test_prediction_batches_have_no_targets(dataset):
    unlabelled = FeatureDataset(dataset.X)
    batches = list(DeviceBatches(unlabelled, batch_size=50))
    assert [len(rows) for rows, _ in batches] == [50, 50, 3]
    assert all(targets is None for _, targets in batches)


def test_rows_fit_in_a_share_of_free_cuda_memory(monkeypatch):
    assert fits_in_device_memory(10**15, "cpu")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 4000))
    assert fits_in_device_memory(500, "cuda")
    assert not fits_in_device_memory(501, "cuda")


def test_training_on_streamed_rows_equals_training_on_resident_rows(request):
    X, y = make_classification(n_samples=90, n_features=5, random_state=0)

    def fit_predict():
        clf = RobustMLPClassifier(hidden_layer_sizes=(8,), batch_size=10, max_epochs=2,
                                  random_state=0).fit(X, y)
        return clf.predict_proba(X)

    expected = fit_predict()
    request.getfixturevalue("streamed")
    np.testing.assert_array_equal(fit_predict(), expected)


@cuda
def test_cuda_training_and_prediction_match_the_cpu():
    X, y = make_classification(n_samples=300, n_features=12, random_state=0)
    params = dict(hidden_layer_sizes=(32,), batch_size=64, max_epochs=3, random_state=0)
    on_cpu = RobustMLPClassifier(**params).fit(X, y)
    on_cuda = RobustMLPClassifier(**params, device="cuda").fit(X, y)
    assert next(on_cuda.module_.parameters()).is_cuda
    # Same shuffles and initial weights; float32 kernels differ slightly.
    np.testing.assert_allclose(on_cuda.predict_proba(X), on_cpu.predict_proba(X), atol=1e-3)
    full = on_cuda.decision_function(X)
    one_by_one = np.concatenate([on_cuda.decision_function(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(full[:20], one_by_one, rtol=1e-12, atol=1e-12)


@cuda
def test_cuda_streamed_batches_equal_resident_batches(dataset, request):
    resident = DeviceBatches(dataset, batch_size=10, shuffle=True, device="cuda")
    assert resident.resident and next(iter(resident))[0].is_cuda
    expected = epochs(resident, 2)
    request.getfixturevalue("streamed")
    streamed = DeviceBatches(dataset, batch_size=10, shuffle=True, device="cuda")
    assert not streamed.resident
    for epoch_got, epoch_expected in zip(epochs(streamed, 2), expected):
        for (rows, targets), (rows_e, targets_e) in zip(epoch_got, epoch_expected):
            assert rows.is_cuda
            assert torch.equal(rows, rows_e) and torch.equal(targets, targets_e)
