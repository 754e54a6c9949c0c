"""Detection metrics with bootstrap confidence intervals.

All functions take the true labels and a score per sample, higher meaning
"more likely generated" (``predict_proba[:, 1]`` or ``decision_function`` of a
detector trained on 0/1 labels). The ROC quantities come from
:func:`sklearn.metrics.roc_curve`, average precision from
:func:`sklearn.metrics.average_precision_score`.
"""

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.metrics import auc, average_precision_score, roc_curve
from sklearn.utils import check_random_state, column_or_1d

from .._utils._validation import check_finite_rows
from ._common import binary_targets

__all__ = [
    "accuracy_at_threshold",
    "bootstrap_metric",
    "detection_report",
    "equal_error_rate",
    "tpr_at_fpr",
]



def tpr_at_fpr(y_true, y_score, fpr=0.01, *, pos_label=None):
    """True-positive rate at the best threshold whose false-positive rate is at most ``fpr``.

    This is the share of generated images caught when at most a fraction
    ``fpr`` of real images may be flagged. With ``n`` real images the
    false-positive rate moves in steps of ``1 / n``, so a target below that
    step means "no false positive at all".

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of two classes.
    y_score : array-like of shape (n_samples,)
        Scores, higher for the positive (generated) class.
    fpr : float in [0, 1], default=0.01
        Largest acceptable false-positive rate.
    pos_label : int, str or None, default=None
        Label of generated images; None means 1 (labels must then be 0/1,
        -1/1 or booleans).

    Returns
    -------
    tpr : float
        The share of generated images above that threshold.

    Examples
    --------
    >>> from sklearn_clipdet.evaluation.metrics import tpr_at_fpr
    >>> tpr_at_fpr([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.7, 0.9], fpr=0.25)
    1.0
    """
    _check_fraction("fpr", fpr)
    targets, scores = _check_inputs(y_true, y_score, pos_label)
    return _tpr_at_fpr(*_roc(targets, scores), fpr)


def equal_error_rate(y_true, y_score, *, pos_label=None):
    """Error rate at the operating point where false-positive and false-negative rates are equal.

    The ROC curve is interpolated linearly between its points, so the EER is
    where the segment crossing ``fnr = fpr`` meets that line.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of two classes.
    y_score : array-like of shape (n_samples,)
        Scores, higher for the positive (generated) class.
    pos_label : int, str or None, default=None
        Label of generated images; None means 1.

    Returns
    -------
    eer : float in [0, 1]
        0 for a perfect separation, about 0.5 for chance.
    """
    targets, scores = _check_inputs(y_true, y_score, pos_label)
    return _equal_error_rate(*_roc(targets, scores))


def accuracy_at_threshold(y_true, y_score, threshold=0.5, *, pos_label=None):
    """Accuracy when samples with ``score > threshold`` are called generated.

    The strict inequality matches :meth:`RobustMLPClassifier.predict`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of two classes.
    y_score : array-like of shape (n_samples,)
        Scores, higher for the positive (generated) class.
    threshold : float, default=0.5
        Decision threshold (0.5 for probabilities, 0 for logits).
    pos_label : int, str or None, default=None
        Label of generated images; None means 1.

    Returns
    -------
    accuracy : float
        The fraction of samples whose side of ``threshold`` matches their label.
    """
    targets, scores = _check_inputs(y_true, y_score, pos_label)
    return _accuracy(targets, scores, threshold)


def bootstrap_metric(
    metric,
    y_true,
    y_score,
    *,
    n_bootstraps=1000,
    confidence_level=0.95,
    random_state=None,
    pos_label=None,
):
    """A metric and its percentile bootstrap confidence interval.

    Each bootstrap sample draws, with replacement, as many generated and as
    many real samples as the data has (a stratified bootstrap), so every
    resample holds both classes and rank metrics stay defined.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_score) -> float`` with ``y_true`` a boolean array
        (True = generated), e.g. :func:`sklearn.metrics.roc_auc_score`.
    y_true : array-like of shape (n_samples,)
        True labels of two classes.
    y_score : array-like of shape (n_samples,)
        Scores, higher for the positive (generated) class.
    n_bootstraps : int, default=1000
        Number of resamples; 0 gives NaN bounds.
    confidence_level : float in (0, 1), default=0.95
        Coverage of the interval.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.
    pos_label : int, str or None, default=None
        Label of generated images; None means 1.

    Returns
    -------
    value : float
        The metric on the full data.
    ci_low, ci_high : float
        Bounds of the interval.

    Examples
    --------
    >>> from sklearn.metrics import roc_auc_score
    >>> from sklearn_clipdet.evaluation.metrics import bootstrap_metric
    >>> y, s = [0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    >>> value, low, high = bootstrap_metric(roc_auc_score, y, s, random_state=0)
    >>> round(value, 3), low <= value <= high
    (0.889, True)
    """
    _check_bootstrap_params(n_bootstraps, confidence_level)
    targets, scores = _check_inputs(y_true, y_score, pos_label)
    value = float(metric(targets, scores))
    samples = [
        metric(targets[rows], scores[rows])
        for rows in stratified_resamples(targets, n_bootstraps, random_state)
    ]
    low, high = _interval(np.asarray(samples, dtype=float), confidence_level)
    return value, low, high


def detection_report(
    y_true,
    y_score,
    *,
    threshold=0.5,
    fpr_targets=(0.01, 0.05),
    n_bootstraps=1000,
    confidence_level=0.95,
    random_state=None,
    pos_label=None,
):
    """The usual detection metrics with bootstrap confidence intervals, as a table.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of two classes.
    y_score : array-like of shape (n_samples,)
        Scores, higher for the positive (generated) class.
    threshold : float, default=0.5
        Threshold of the accuracy (``score > threshold`` is generated).
    fpr_targets : sequence of float, default=(0.01, 0.05)
        False-positive rates at which the true-positive rate is reported.
    n_bootstraps : int, default=1000
        Stratified bootstrap resamples (see :func:`bootstrap_metric`); 0 skips
        the intervals (NaN bounds).
    confidence_level : float in (0, 1), default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.
    pos_label : int, str or None, default=None
        Label of generated images; None means 1.

    Returns
    -------
    report : DataFrame
        One row per metric, columns ``metric``, ``value``, ``ci_low`` and
        ``ci_high``. The metrics are ``roc_auc``, ``average_precision``,
        ``accuracy@{threshold}``, ``tpr@fpr={target}`` for each target, and
        ``eer`` (equal error rate: lower is better).

    Examples
    --------
    >>> from sklearn_clipdet.evaluation import detection_report
    >>> report = detection_report([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], n_bootstraps=0)
    >>> report.set_index("metric")["value"].round(3).to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'roc_auc': 1.0, 'average_precision': 1.0, 'accuracy@0.5': 0.75,
     'tpr@fpr=0.01': 1.0, 'tpr@fpr=0.05': 1.0, 'eer': 0.0}
    """
    _check_bootstrap_params(n_bootstraps, confidence_level)
    for target in fpr_targets:
        _check_fraction("fpr_targets", target)
    targets, scores = _check_inputs(y_true, y_score, pos_label)
    names = _metric_names(threshold, fpr_targets)
    values = _all_metrics(targets, scores, threshold, fpr_targets)
    samples = np.array([
        _all_metrics(targets[rows], scores[rows], threshold, fpr_targets)
        for rows in stratified_resamples(targets, n_bootstraps, random_state)
    ]).reshape(n_bootstraps, len(names))
    bounds = [_interval(samples[:, j], confidence_level) for j in range(len(names))]
    report = pd.DataFrame({
        "metric": names,
        "value": values,
        "ci_low": [low for low, _ in bounds],
        "ci_high": [high for _, high in bounds],
    })
    report.attrs.update(
        n_samples=len(targets), n_generated=int(targets.sum()), n_bootstraps=n_bootstraps,
        confidence_level=confidence_level,
    )
    return report


def _metric_names(threshold=0.5, fpr_targets=(0.01, 0.05)):
    """Names of the rows of :func:`detection_report`, in order."""
    return [
        "roc_auc",
        "average_precision",
        f"accuracy@{threshold:g}",
        *[f"tpr@fpr={target:g}" for target in fpr_targets],
        "eer",
    ]


# --- computations on checked inputs (boolean targets, float scores) --------------------------


def _all_metrics(targets, scores, threshold, fpr_targets):
    fpr, tpr = _roc(targets, scores)
    return [
        auc(fpr, tpr),
        average_precision_score(targets, scores),
        _accuracy(targets, scores, threshold),
        *[_tpr_at_fpr(fpr, tpr, target) for target in fpr_targets],
        _equal_error_rate(fpr, tpr),
    ]


def _roc(targets, scores):
    fpr, tpr, _ = roc_curve(targets, scores, drop_intermediate=False)
    return fpr, tpr


def _tpr_at_fpr(fpr, tpr, target):
    return float(tpr[fpr <= target].max())  # the curve starts at (0, 0), so never empty


def _equal_error_rate(fpr, tpr):
    # fnr - fpr falls from 1 at (0, 0) to -1 at (1, 1); interpolate the crossing.
    gap = (1.0 - tpr) - fpr
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _accuracy(targets, scores, threshold):
    return float(np.mean((scores > threshold) == targets))


def stratified_resamples(targets, n_bootstraps, random_state):
    """Row indices of stratified bootstrap resamples."""
    rng = check_random_state(random_state)
    positives, negatives = np.flatnonzero(targets), np.flatnonzero(~targets)
    for _ in range(n_bootstraps):
        yield np.concatenate([
            rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))
        ])


def _interval(samples, confidence_level):
    if samples.size == 0:
        return np.nan, np.nan
    tail = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


# --- validation ----------------------------------------------------------------------------


def _check_inputs(y_true, y_score, pos_label):
    targets, _ = binary_targets(y_true, pos_label)
    scores = column_or_1d(y_score, dtype=np.float64)
    if len(scores) != len(targets):
        raise ValueError(
            f"y_true and y_score have different lengths: {len(targets)} and {len(scores)}."
        )
    check_finite_rows(
        scores, "y_score", "Remove them (e.g. unreadable images) before computing metrics."
    )
    return targets, scores


def _check_fraction(name, value):
    if not isinstance(value, Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}.")


def _check_bootstrap_params(n_bootstraps, confidence_level):
    if not isinstance(n_bootstraps, Integral) or isinstance(n_bootstraps, bool) \
            or n_bootstraps < 0:
        raise ValueError(f"n_bootstraps must be an int >= 0, got {n_bootstraps!r}.")
    if not isinstance(confidence_level, Real) or not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}.")
