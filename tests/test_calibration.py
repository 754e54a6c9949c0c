"""Split-conformal thresholds: the false-positive guarantee, the refusals, the detector copy."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_clipdet import RobustMLPClassifier, load_detector, save_detector
from sklearn_clipdet.calibration import calibrate, conformal_threshold, min_real_images


def test_the_threshold_is_the_conformal_order_statistic():
    scores = np.arange(1, 100) / 100  # 99 scores 0.01 .. 0.99
    # k = ceil(100 * 0.95) = 95: the 95th smallest.
    assert conformal_threshold(scores[::-1], fpr=0.05) == pytest.approx(0.95)
    assert conformal_threshold(scores, fpr=0.01) == pytest.approx(0.99)


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_the_false_positive_rate_holds_over_random_calibration_sets(fpr):
    """Over many random calibration sets of real scores, the rate at which new real
    images score above the threshold stays at or under fpr, within sampling error."""
    rng = np.random.default_rng(0)
    n_calibration, n_test, n_repeats = min_real_images(fpr) + 7, 2000, 400
    rates = []
    for _ in range(n_repeats):
        real = rng.beta(2, 5, size=n_calibration + n_test)  # any continuous distribution
        threshold = conformal_threshold(real[:n_calibration], fpr)
        rates.append(np.mean(real[n_calibration:] > threshold))
    mean_rate = np.mean(rates)
    standard_error = np.std(rates) / np.sqrt(n_repeats)
    assert mean_rate <= fpr + 3 * standard_error
    # And it is not trivially conservative: the rate is near fpr, not near 0.
    assert mean_rate > fpr / 3


def test_too_few_real_images_are_refused_with_the_number_needed():
    assert (min_real_images(0.05), min_real_images(0.01), min_real_images(0.5)) == (19, 99, 1)
    with pytest.raises(ValueError, match="needs at least 99 real images, got 50"):
        conformal_threshold(np.linspace(0, 1, 50), fpr=0.01)
    with pytest.raises(ValueError, match="not finite"):
        conformal_threshold([0.1] * 30 + [np.nan], fpr=0.05)
    with pytest.raises(ValueError, match="fpr"):
        min_real_images(0.0)


def test_calibrate_returns_a_thresholded_copy_that_files_and_clones_keep(tmp_path):
    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    detector = RobustMLPClassifier(hidden_layer_sizes=(), max_epochs=3, random_state=0)
    pipe = make_pipeline(FunctionTransformer(), detector).fit(X, y)
    real = X[y == 0][:40]
    calibrated = calibrate(pipe, real, fpr=0.05)
    threshold = calibrated[-1].threshold
    assert pipe[-1].threshold == 0.5  # the given detector is not modified
    assert threshold == conformal_threshold(pipe.predict_proba(real)[:, 1], 0.05)
    np.testing.assert_array_equal(calibrated.predict_proba(X), pipe.predict_proba(X))
    assert (calibrated.predict(real) == 1).mean() <= 0.05
    assert clone(calibrated)[-1].threshold == threshold
    save_detector(calibrated[-1], tmp_path / "calibrated.safetensors")
    assert load_detector(tmp_path / "calibrated.safetensors").threshold == threshold
    with pytest.raises(ValueError, match="needs at least 99"):
        calibrate(pipe, real, fpr=0.01)


def test_a_detector_whose_generated_label_sorts_first_is_refused():
    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    labels = np.where(y == 1, "fake", "real")  # "fake" sorts first: classes_[0]
    clf = RobustMLPClassifier(max_epochs=2, generated_label="fake", random_state=0)
    pipe = make_pipeline(FunctionTransformer(), clf).fit(X, labels)
    with pytest.raises(ValueError, match="generated label 'fake' is classes_"):
        calibrate(pipe, X[labels == "real"][:40], fpr=0.05)
