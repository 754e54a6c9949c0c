"""Detection metrics and their bootstrap intervals."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sklearn_clipdet.evaluation import (
    accuracy_at_threshold,
    bootstrap_metric,
    detection_report,
    equal_error_rate,
    tpr_at_fpr,
)


@pytest.fixture(scope="module")
def overlapping():
    rng = np.random.RandomState(0)
    y = np.r_[np.zeros(200, int), np.ones(100, int)]
    scores = np.r_[rng.normal(0, 1, 200), rng.normal(1.5, 1, 100)]
    return y, scores


def _brute_force_rates(y, scores):
    """(fpr, tpr) of every threshold 'score >= t', by counting."""
    thresholds = np.r_[np.inf, np.unique(scores)]
    fpr = np.array([np.mean(scores[y == 0] >= t) for t in thresholds])
    tpr = np.array([np.mean(scores[y == 1] >= t) for t in thresholds])
    return fpr, tpr


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_tpr_at_fpr_matches_threshold_enumeration(overlapping, target):
    y, scores = overlapping
    fpr, tpr = _brute_force_rates(y, scores)
    assert tpr_at_fpr(y, scores, target) == pytest.approx(tpr[fpr <= target].max())


def test_equal_error_rate_balances_the_two_errors(overlapping):
    y, scores = overlapping
    eer = equal_error_rate(y, scores)
    fpr, tpr = _brute_force_rates(y, scores)
    # Some threshold has both error rates within one sample's step of the EER.
    step = 1 / min(np.sum(y == 0), np.sum(y == 1))
    distance = np.maximum(np.abs(fpr - eer), np.abs(1 - tpr - eer))
    assert distance.min() <= step
    assert 0.1 < eer < 0.4


def test_equal_error_rate_on_a_hand_computed_case():
    # Ranking: n0 < n1 < p0 < n2 < p1 < p2 ... with 4 real and 4 generated images.
    y = [0, 0, 1, 0, 1, 1, 0, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    # Points (fpr, fnr): ... (0.25, 0.5), (0.25, 0.25), (0.5, 0.25) ...; fpr == fnr == 0.25.
    assert equal_error_rate(y, scores) == pytest.approx(0.25)
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert equal_error_rate([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 1.0


def test_accuracy_uses_a_strict_threshold():
    y = [0, 1, 1]
    assert accuracy_at_threshold(y, [0.5, 0.5, 0.9]) == pytest.approx(2 / 3)
    assert accuracy_at_threshold(y, [-1.0, 0.5, 2.0], threshold=0.0) == 1.0


def test_detection_report_values(overlapping):
    y, scores = overlapping
    report = detection_report(y, scores, n_bootstraps=0).set_index("metric")
    assert list(report.index) == ["roc_auc", "average_precision", "accuracy@0.5",
                                  "tpr@fpr=0.01", "tpr@fpr=0.05", "eer"]
    assert report.loc["roc_auc", "value"] == pytest.approx(roc_auc_score(y, scores))
    assert report.loc["average_precision", "value"] == pytest.approx(
        average_precision_score(y, scores))
    assert report.loc["tpr@fpr=0.05", "value"] == tpr_at_fpr(y, scores, 0.05)
    assert report[["ci_low", "ci_high"]].isna().all().all()


def test_bootstrap_intervals_cover_the_value_and_shrink_with_more_data(overlapping):
    y, scores = overlapping
    report = detection_report(y, scores, n_bootstraps=300, random_state=0)
    assert (report["ci_low"] <= report["value"]).all()
    assert (report["value"] <= report["ci_high"]).all()
    auc = report.set_index("metric").loc["roc_auc"]
    assert auc["ci_high"] - auc["ci_low"] > 0.02
    bigger_y = np.tile(y, 9)
    bigger_scores = np.tile(scores, 9)
    big = detection_report(bigger_y, bigger_scores, n_bootstraps=300, random_state=0)
    big_auc = big.set_index("metric").loc["roc_auc"]
    assert big_auc["ci_high"] - big_auc["ci_low"] < (auc["ci_high"] - auc["ci_low"]) / 2


def test_bootstrap_is_reproducible_and_seed_dependent(overlapping):
    y, scores = overlapping
    first = bootstrap_metric(roc_auc_score, y, scores, n_bootstraps=100, random_state=1)
    again = bootstrap_metric(roc_auc_score, y, scores, n_bootstraps=100, random_state=1)
    other = bootstrap_metric(roc_auc_score, y, scores, n_bootstraps=100, random_state=2)
    assert first == again
    assert first[0] == other[0] and first[1:] != other[1:]


def test_bootstrap_keeps_both_classes_in_every_resample():
    # With 1 generated image among 50, unstratified resamples would often lack it.
    y = np.r_[np.zeros(49, int), 1]
    scores = np.linspace(0, 1, 50)
    value, low, high = bootstrap_metric(roc_auc_score, y, scores, n_bootstraps=200,
                                        random_state=0)
    assert value == 1.0 and low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_string_labels_need_pos_label():
    y = np.array(["real", "fake", "fake", "real"])
    scores = [0.2, 0.9, 0.6, 0.4]
    with pytest.raises(ValueError, match="pass pos_label"):
        detection_report(y, scores)
    report = detection_report(y, scores, pos_label="fake", n_bootstraps=0)
    assert report.set_index("metric").loc["roc_auc", "value"] == 1.0
    with pytest.raises(ValueError, match="pass pos_label"):
        tpr_at_fpr([-1, 0, 0], [0.1, 0.2, 0.3])
    assert tpr_at_fpr([-1, 1, -1, 1], [0.1, 0.8, 0.3, 0.9], fpr=0.0) == 1.0
    with pytest.raises(ValueError, match="not one of the labels"):
        tpr_at_fpr(y, scores, pos_label="generated")


def test_invalid_inputs_are_named():
    with pytest.raises(ValueError, match=r"y_score contains NaN or inf in 2 row\(s\): \[1, 3\]"):
        detection_report([0, 1, 0, 1], [0.1, np.nan, 0.2, np.inf])
    with pytest.raises(ValueError, match="exactly two classes"):
        equal_error_rate([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="different lengths"):
        equal_error_rate([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="fpr must be"):
        tpr_at_fpr([0, 1], [0.1, 0.2], fpr=5)
    with pytest.raises(ValueError, match="n_bootstraps"):
        detection_report([0, 1], [0.1, 0.2], n_bootstraps=-1)
