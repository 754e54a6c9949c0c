"""Scores of a detector for every input row, NaN where the featurizer could not read the image."""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .._utils._validation import check_finite_rows, unread_rows
from ._common import generated_label, positive_scores

__all__ = ["score_images"]


def score_images(detector, X, *, return_labels=False):
    """Probability that each image is generated; NaN for images that could not be read.

    A featurizer with ``on_error="nan"`` gives unreadable images a row of NaN
    features. :class:`~sklearn_clipdet.RobustMLPClassifier` scores such rows
    NaN itself, but most classifiers refuse them, so ``detector.predict_proba(X)``
    fails on the first unreadable image. This function featurizes ``X`` once,
    scores the readable rows with any classifier and leaves NaN for the others:
    every input gets one output, in order.

    Parameters
    ----------
    detector : Pipeline
        A fitted pipeline whose last step is a binary classifier, such as
        :func:`~sklearn_clipdet.make_detector` or
        :func:`~sklearn_clipdet.load_detector` gives.
    X : DataFrame or sequence
        The samples, as the pipeline's first step takes them.
    return_labels : bool, default=False
        Also return the classifier's predicted label of each row.

    Returns
    -------
    scores : ndarray of shape (n_samples,)
        The probability (for a classifier without ``predict_proba``, the
        decision value) of the generated label: the classifier's
        ``generated_label_``, else 1. NaN for rows whose features are NaN
        throughout; a row only partly NaN or inf raises a ValueError naming it.
    labels : ndarray of shape (n_samples,), dtype object
        Only with ``return_labels=True``: the predicted label of each row
        (the classifier's ``predict``), NaN for rows without a score.

    Examples
    --------
    >>> from sklearn_clipdet.evaluation import score_images
    >>> detector[0].set_params(on_error="nan")  # doctest: +SKIP
    >>> scores = score_images(detector, ["a.jpg", "broken.jpg"])  # doctest: +SKIP
    >>> scores  # doctest: +SKIP
    array([0.93,  nan])
    """
    if not isinstance(detector, Pipeline) or len(detector.steps) < 2:
        raise TypeError(
            "detector must be a Pipeline of a featurizer and a classifier, got "
            f"{type(detector).__name__}."
        )
    classifier = detector[-1]
    check_is_fitted(classifier)
    features = np.asarray(detector[:-1].transform(X))
    scores = np.full(len(features), np.nan)
    labels = np.full(len(features), np.nan, dtype=object)
    readable = ~unread_rows(features)
    check_finite_rows(np.where(readable[:, None], features, 0), "The features of X,",
                      "Only rows NaN throughout (unread images) are given a NaN score.")
    if readable.any():
        scores[readable] = positive_scores(classifier, features[readable],
                                           generated_label(classifier))
        if return_labels:
            labels[readable] = classifier.predict(features[readable])
    return (scores, labels) if return_labels else scores
