"""Generalisation to unseen generators: leave one generator out."""

import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils import column_or_1d

from ._common import (
    binary_targets,
    check_finite_features,
    default_threshold,
    fit_generated_label,
    positive_scores,
    should_precompute,
    take,
)
from .metrics import detection_report
from .splitters import LeaveOneGeneratorOut

__all__ = ["cross_generator_report"]


def cross_generator_report(
    pipe,
    X,
    y,
    groups,
    *,
    real_cv=None,
    precompute_features="auto",
    threshold=None,
    fpr_targets=(0.01, 0.05),
    n_bootstraps=0,
    confidence_level=0.95,
    random_state=None,
    pos_label=None,
):
    """Train on all generators but one, test on the held-out generator: leave one group out.

    As in the paper's generalisation study, each fold trains a fresh clone of
    ``pipe`` on the generated images of every generator but one, plus real
    images, and tests it on the held-out generator's images plus real images.

    Real images belong to no generator, so they get their own split: they
    are cut into as many folds as there are generators (``real_cv``), and
    the fold of the k-th held-out generator tests on the k-th real fold and
    trains on the other real folds. Every real image is thus tested exactly
    once and never by a model that was trained on it, and the test set of a
    fold holds real images in the proportion of the whole data.

    Parameters
    ----------
    pipe : estimator
        The detector to evaluate (fitted or not; clones are fitted), e.g.
        :func:`~sklearn_clipdet.make_detector`, or a classifier when ``X``
        holds features.
    X : DataFrame or sequence
        All samples, as ``pipe`` takes them.
    y : array-like of shape (n_samples,)
        True labels.
    groups : array-like of shape (n_samples,)
        The generator of each generated image (e.g. the ``group`` column of
        :func:`~sklearn_clipdet.load_image_folder`). Values of real images
        are only passed to ``real_cv`` (as its ``groups``), so a
        :class:`~sklearn.model_selection.GroupKFold` can keep, say, real
        images of one source together.
    real_cv : cross-validator or None, default=None
        Splits the real images; it must give one split per generator. None
        means ``KFold(n_generators, shuffle=True, random_state=random_state)``.
        The folds are those of
        :class:`~sklearn_clipdet.evaluation.LeaveOneGeneratorOut`, which can
        also serve as ``cv`` of a grid search.
    precompute_features : "auto" or bool, default="auto"
        Encode every sample once with the feature steps (all steps but the
        last) and fit only the classifier in each fold. Correct only when
        the feature steps learn nothing from the training data; "auto" does
        it when every feature step is a :class:`~sklearn_clipdet.CLIPFeaturizer`.
        Otherwise every fold fits the whole pipeline (use the featurizer's
        ``cache_dir`` to avoid encoding again).
    threshold : float or None, default=None
        Threshold of the accuracy; None means 0.5 for classifiers with
        ``predict_proba``, else 0.
    fpr_targets : sequence of float, default=(0.01, 0.05)
        False-positive rates at which the true-positive rate is reported.
    n_bootstraps : int, default=0
        Bootstrap resamples of the intervals; 0 (the default) gives NaN bounds.
    confidence_level : float in (0, 1), default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling and the default ``real_cv``. All four are passed
        to :func:`~sklearn_clipdet.evaluation.detection_report`.
    pos_label : int, str or None, default=None
        Label of generated images, whose probability is the score; None means the
        label the fitted classifiers take as generated: the ``generated_label``
        parameter of the last step when it has one and it is set, else the
        second of the sorted labels of ``y`` (``classes_[1]``; 1 for 0/1 labels).

    Returns
    -------
    report : DataFrame
        Tidy table, one row per held-out generator and metric, with columns
        ``held_out``, ``metric``, ``value``, ``ci_low``, ``ci_high``,
        ``n_train``, ``n_test_generated`` and ``n_test_real``.

    Examples
    --------
    >>> from sklearn_clipdet import load_image_folder, make_detector
    >>> from sklearn_clipdet.evaluation import cross_generator_report
    >>> data = load_image_folder("data/")  # doctest: +SKIP
    >>> report = cross_generator_report(  # doctest: +SKIP
    ...     make_detector(cache_dir="cache/"), data[["image", "text"]], data["label"],
    ...     data["group"])
    >>> report.pivot(index="held_out", columns="metric", values="value")  # doctest: +SKIP
    """
    labels = column_or_1d(y)
    if pos_label is None:
        pos_label = fit_generated_label(pipe, labels)
    targets, pos_label = binary_targets(labels, pos_label)
    if not len(X) == len(targets) == len(groups):
        raise ValueError(
            f"X, y and groups have different lengths: {len(X)}, {len(targets)} and "
            f"{len(groups)}."
        )
    cv = LeaveOneGeneratorOut(real_cv, pos_label=pos_label, random_state=random_state)
    # Built before any image is encoded, so that bad groups fail fast.
    folds = list(zip(cv.generators(labels, groups), cv.split(targets, labels, groups)))

    precompute = should_precompute(pipe, precompute_features)
    if precompute:
        features = clone(pipe[:-1]).fit(X, labels).transform(X)
        check_finite_features(features, "X")
        model, inputs = pipe[-1], features
    else:
        model, inputs = pipe, X
    if threshold is None:
        threshold = default_threshold(model[-1] if isinstance(model, Pipeline) else model)

    tables = []
    for generator, (train, test) in folds:
        fitted = clone(model).fit(take(inputs, train), labels[train])
        scores = positive_scores(fitted, take(inputs, test), pos_label)
        table = detection_report(
            targets[test], scores, threshold=threshold, fpr_targets=fpr_targets,
            n_bootstraps=n_bootstraps, confidence_level=confidence_level,
            random_state=random_state,
        )
        table.insert(0, "held_out", generator)
        table["n_train"] = len(train)
        table["n_test_generated"] = int(targets[test].sum())
        table["n_test_real"] = int((~targets[test]).sum())
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
