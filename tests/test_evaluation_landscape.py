"""Filter-normalised loss landscapes around a fitted RobustMLPClassifier."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from sklearn_clipdet import RobustMLPClassifier
from sklearn_clipdet.evaluation import loss_landscape, plot_loss_landscape
from sklearn_clipdet.evaluation.landscape import _filter_normalized_direction

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted():
    X, y = make_classification(n_samples=200, n_features=12, random_state=0)
    clf = RobustMLPClassifier((32,), max_epochs=10, lr=1e-2, batch_size=64, random_state=0)
    return clf.fit(X, y), X, y


def test_default_batches_are_the_training_batches_also_for_auto():
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    clf = RobustMLPClassifier((8,), max_epochs=1, random_state=0).fit(X, y)  # batch_size="auto"
    assert clf.batch_size == "auto" and clf.batch_size_for(len(X)) == 64
    default = loss_landscape(clf, X, y, n_points=3, random_state=0)
    explicit = loss_landscape(clf, X, y, n_points=3, batch_size=64, random_state=0)
    np.testing.assert_array_equal(default.losses_2d, explicit.losses_2d)


def test_center_is_the_criterion_at_the_trained_weights(fitted):
    clf, X, y = fitted
    landscape = loss_landscape(clf, X, y, n_points=5, batch_size=len(X), random_state=0)
    with torch.no_grad():
        expected = clf.criterion_(torch.as_tensor(clf.decision_function(X)),
                                  torch.as_tensor(y, dtype=torch.float64))
    assert landscape.center_loss == pytest.approx(float(expected), rel=1e-9)
    assert landscape.coordinates.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert landscape.losses_1d[2] == pytest.approx(landscape.center_loss)
    assert landscape.losses_2d[2, 2] == pytest.approx(landscape.center_loss)
    np.testing.assert_allclose(landscape.losses_2d[:, 2], landscape.losses_1d)
    # A trained network sits in a basin: a full filter-norm step raises the loss.
    assert landscape.losses_1d[[0, -1]].min() > landscape.center_loss
    assert landscape.losses_2d.min() >= landscape.center_loss * 0.9


def test_classifier_is_left_unchanged_and_results_are_reproducible(fitted):
    clf, X, y = fitted
    before = {k: v.clone() for k, v in clf.module_.state_dict().items()}
    clf.module_.train()
    first = loss_landscape(clf, X, y, n_points=3, random_state=1)
    assert clf.module_.training  # mode restored
    clf.module_.eval()
    for name, value in clf.module_.state_dict().items():
        assert torch.equal(value, before[name])
    again = loss_landscape(clf, X, y, n_points=3, random_state=1)
    other = loss_landscape(clf, X, y, n_points=3, random_state=2)
    np.testing.assert_array_equal(first.losses_2d, again.losses_2d)
    assert not np.allclose(first.losses_2d, other.losses_2d)


def test_directions_are_filter_normalised():
    weights = {"layer.weight": torch.randn(4, 6, dtype=torch.float64) * 3,
               "layer.bias": torch.randn(4, dtype=torch.float64)}
    direction = _filter_normalized_direction(weights, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(direction["layer.weight"].norm(dim=1),
                               weights["layer.weight"].norm(dim=1))
    assert not torch.allclose(direction["layer.weight"], weights["layer.weight"])
    assert torch.count_nonzero(direction["layer.bias"]) == 0


def test_batches_are_size_weighted(fitted):
    clf, X, y = fitted
    whole = loss_landscape(clf, X, y, n_points=3, batch_size=len(X), random_state=0)
    halves = loss_landscape(clf, X, y, n_points=3, batch_size=100, random_state=0)
    assert halves.center_loss == pytest.approx(np.mean([
        loss_landscape(clf, X[rows], y[rows], n_points=3, batch_size=100,
                       random_state=0).center_loss
        for rows in (slice(0, 100), slice(100, 200))
    ]))
    assert whole.center_loss != pytest.approx(halves.center_loss)
    assert whole.losses_2d.shape == halves.losses_2d.shape == (3, 3)
    by_default = loss_landscape(clf, X, y, n_points=3, random_state=0)  # clf.batch_size: 64
    explicit = loss_landscape(clf, X, y, n_points=3, batch_size=64, random_state=0)
    assert by_default.center_loss == explicit.center_loss


def test_plot_writes_a_png_and_draws_on_given_axes(fitted, tmp_path):
    clf, X, y = fitted
    path = tmp_path / "landscape.png"
    landscape = plot_loss_landscape(clf, X, y, n_points=7, random_state=0, path=path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert landscape.losses_2d.shape == (7, 7)
    figure, axes = plt.subplots(1, 2)
    try:
        plot_loss_landscape(clf, X, y, n_points=5, random_state=0, ax=axes, label="SAM")
        assert axes[0].get_legend_handles_labels()[1] == ["SAM"]
        assert axes[1].get_title() == "SAM"
    finally:
        plt.close(figure)


def test_invalid_inputs(fitted):
    clf, X, y = fitted
    with pytest.raises(ValueError, match="5 features, but the classifier was fitted on 12"):
        loss_landscape(clf, X[:, :5], y)
    with pytest.raises(ValueError, match="not in classes_"):
        loss_landscape(clf, X, y + 5)
    with pytest.raises(ValueError, match="n_points"):
        loss_landscape(clf, X, y, n_points=1)
    with pytest.raises(Exception, match="not fitted"):
        loss_landscape(RobustMLPClassifier(), X, y)
