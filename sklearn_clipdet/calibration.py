"""A decision threshold with a stated false-positive rate, set on the user's own real photos.

A score needs a threshold, and calling a real photograph generated is the costly mistake.
Given ``n`` images the user knows are real, split-conformal calibration takes as threshold
the ``k``-th smallest of their scores, ``k = ceil((n + 1) * (1 - fpr))``: a new real image
exchangeable with them (taken the same way, of the same kind) then scores above it with
probability at most ``fpr``. The guarantee holds on average over calibration sets, for real
images like the calibration ones; it says nothing about generated images (the detection
rate) or about real images of another kind.
"""

import copy
import math
from numbers import Real

import numpy as np

from ._utils._sklearn_compat import Interval, validate_params

__all__ = ["calibrate", "conformal_threshold", "min_real_images"]


@validate_params(
    {"fpr": [Interval(Real, 0, 1, closed="neither")]}, prefer_skip_nested_validation=True
)
def min_real_images(fpr):
    """The fewest real images that can support a threshold with false-positive rate ``fpr``.

    Parameters
    ----------
    fpr : float in (0, 1)
        The false-positive rate to guarantee.

    Returns
    -------
    int
        ``ceil((1 - fpr) / fpr)``: 19 for 0.05, 99 for 0.01.

    Examples
    --------
    >>> from sklearn_clipdet.calibration import min_real_images
    >>> min_real_images(0.05), min_real_images(0.01)
    (19, 99)
    """
    return math.ceil((1 - fpr) / fpr - 1e-9)


@validate_params(
    {"real_scores": ["array-like"], "fpr": [Interval(Real, 0, 1, closed="neither")]},
    prefer_skip_nested_validation=True,
)
def conformal_threshold(real_scores, fpr):
    """The split-conformal threshold of the scores of real images.

    Parameters
    ----------
    real_scores : array-like of shape (n,)
        Scores (higher means generated) of images known to be real.
    fpr : float in (0, 1)
        The false-positive rate to guarantee: at most this fraction of new real
        images like these score above the threshold.

    Returns
    -------
    float
        The ``ceil((n + 1) * (1 - fpr))``-th smallest score; call an image
        generated when its score is strictly above it.

    Raises
    ------
    ValueError
        When a score is not finite, or ``n`` is too small for ``fpr`` (see
        :func:`min_real_images`).

    Examples
    --------
    >>> from sklearn_clipdet.calibration import conformal_threshold
    >>> conformal_threshold([0.1, 0.4, 0.2, 0.3] * 5, fpr=0.1)
    0.4
    """
    scores = np.sort(np.asarray(real_scores, dtype=np.float64).ravel())
    if not np.isfinite(scores).all():
        bad = np.flatnonzero(~np.isfinite(np.asarray(real_scores, dtype=np.float64).ravel()))
        raise ValueError(
            f"The scores of real images {bad[:10].tolist()} are not finite (unreadable "
            "images?); drop them before calibrating."
        )
    n = len(scores)
    needed = min_real_images(fpr)
    if n < needed:
        raise ValueError(
            f"A false-positive rate of {fpr} needs at least {needed} real images, got {n}: "
            f"with n real images the smallest rate that can be guaranteed is 1/(n+1) = "
            f"{1 / (n + 1):.3g}. Add real images or allow a higher rate."
        )
    rank = math.ceil((n + 1) * (1 - fpr) - 1e-9)
    return float(scores[rank - 1])


def calibrate(detector, real_images, *, fpr=0.01):
    """A copy of ``detector`` that calls generated only what scores above real photos' threshold.

    Scores ``real_images`` (all known to be real) and sets the classifier's
    ``threshold`` to :func:`conformal_threshold` of their scores, so that
    ``predict`` has a false-positive rate of at most ``fpr`` on real images
    like them. ``predict_proba`` is unchanged. The threshold is an ordinary
    parameter of the classifier: :func:`~sklearn_clipdet.save_detector`,
    :func:`~sklearn_clipdet.load_detector` and ``clone`` keep it.

    Parameters
    ----------
    detector : Pipeline
        A fitted detector whose last step is a
        :class:`~sklearn_clipdet.RobustMLPClassifier` (it is not modified).
    real_images : DataFrame or sequence
        Images known to be real, as the detector takes them; every one must be
        readable.
    fpr : float in (0, 1), default=0.01
        The false-positive rate to guarantee.

    Returns
    -------
    Pipeline
        The calibrated copy; its classifier's ``threshold`` is the threshold.

    Examples
    --------
    >>> from sklearn_clipdet.calibration import calibrate
    >>> from sklearn_clipdet.pretrained import load_pretrained
    >>> detector = calibrate(load_pretrained(), my_real_photos, fpr=0.05)  # doctest: +SKIP
    >>> detector[-1].threshold  # doctest: +SKIP
    """
    min_real_images(fpr)  # checks fpr before any image is read
    head = detector[-1]
    generated = getattr(head, "generated_label_", None)
    if generated is not None and generated != head.classes_[1]:
        raise ValueError(
            f"The detector's generated label {str(generated)!r} is classes_[0], but its threshold "
            f"applies to the probability of classes_[1] ({str(head.classes_[1])!r}); retrain it "
            "with labels where the generated one sorts last (e.g. 0 real, 1 generated)."
        )
    scores = detector.predict_proba(real_images)[:, 1]
    threshold = conformal_threshold(scores, fpr)
    calibrated = copy.deepcopy(detector)
    calibrated[-1].set_params(threshold=threshold)
    return calibrated
