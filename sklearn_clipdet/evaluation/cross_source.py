"""Generalisation to unseen sources: leave one source out, and what each source does to the rest.

A *source* is a data set with both classes, collected one way (a quiz game, a web scrape,
a benchmark). A detector trained on some sources and scored on another meets what users
meet: new generators, new cameras, new pipelines. The mean AUC over held-out sources is
the number that predicts detection in the wild; the AUC of a random split of the same
images does not (it rewards whatever the sources share).
"""

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils import check_random_state, column_or_1d

from ._common import (
    binary_targets,
    check_finite_features,
    fit_generated_label,
    positive_scores,
    should_precompute,
    take,
)
from .metrics import bootstrap_metric, stratified_resamples

__all__ = ["cross_source_report", "source_effects"]

MEAN_ROW = "mean"


def cross_source_report(
    pipe,
    X,
    y,
    sources,
    *,
    precompute_features="auto",
    n_bootstraps=1000,
    confidence_level=0.95,
    random_state=None,
    pos_label=None,
):
    """Train on every source but one, score the held-out source: leave one source out.

    Each fold fits a fresh clone of ``pipe`` on the samples of all sources but
    one and scores the held-out source's samples, which must hold both
    classes. The headline is the last row: the mean AUC over held-out sources,
    each source weighing the same whatever its size, so that a large source
    does not hide a small one the detector fails on.

    Parameters
    ----------
    pipe : estimator
        The detector to evaluate (fitted or not; clones are fitted), e.g.
        :func:`~sklearn_clipdet.make_detector`, or a classifier when ``X``
        holds features.
    X : DataFrame, array-like or sequence
        All samples, as ``pipe`` takes them.
    y : array-like of shape (n_samples,)
        True labels.
    sources : array-like of shape (n_samples,)
        The source of each sample; at least two sources, each with both classes.
    precompute_features : "auto" or bool, default="auto"
        Encode every sample once with the feature steps and fit only the
        classifier in each fold, as in
        :func:`~sklearn_clipdet.evaluation.cross_generator_report`.
    n_bootstraps : int, default=1000
        Stratified bootstrap resamples of each held-out source for the
        intervals; the mean row resamples every source at once. 0 gives NaN
        bounds.
    confidence_level : float in (0, 1), default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.
    pos_label : int, str or None, default=None
        Label of generated images, as in
        :func:`~sklearn_clipdet.evaluation.cross_generator_report`.

    Returns
    -------
    report : DataFrame
        One row per held-out source, then a row ``held_out="mean"``, with
        columns ``held_out``, ``auc``, ``ci_low``, ``ci_high``, ``n_train``,
        ``n_test_generated`` and ``n_test_real``.

    See Also
    --------
    source_effects : What adding each source to the training data does to the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_clipdet.evaluation import cross_source_report
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 60)
    >>> X = rng.normal(size=(120, 4)) + y[:, None]
    >>> sources = np.repeat(["a", "b", "c"], 40)
    >>> report = cross_source_report(LogisticRegression(), X, y, sources, random_state=0)
    >>> report["held_out"].tolist()
    ['a', 'b', 'c', 'mean']
    """
    folds = _Folds(pipe, X, y, sources, precompute_features, pos_label)
    rows, held_out_scores = [], []
    for source in folds.names:
        train, test = folds.without([source]), folds.rows_of(source)
        scores = folds.scores(train, test)
        held_out_scores.append((folds.targets[test], scores))
        auc, low, high = bootstrap_metric(
            roc_auc_score, folds.targets[test], scores, n_bootstraps=n_bootstraps,
            confidence_level=confidence_level, random_state=random_state, pos_label=True,
        )
        rows.append(folds.row(source, auc, low, high, train, test))
    low, high = mean_auc_interval(
        held_out_scores, n_bootstraps, confidence_level, random_state
    )
    rows.append({
        "held_out": MEAN_ROW,
        "auc": float(np.mean([row["auc"] for row in rows])),
        "ci_low": low,
        "ci_high": high,
        "n_train": np.nan,
        "n_test_generated": sum(row["n_test_generated"] for row in rows),
        "n_test_real": sum(row["n_test_real"] for row in rows),
    })
    return pd.DataFrame(rows)


def source_effects(
    pipe,
    X,
    y,
    sources,
    *,
    precompute_features="auto",
    n_bootstraps=1000,
    confidence_level=0.95,
    random_state=None,
    pos_label=None,
):
    """What training on each source does to detection on the other sources.

    For every source ``s`` and every other source ``t``, the AUC on ``t`` of a
    detector trained on all sources but ``t`` (so with ``s``) is compared with
    that of one trained on all sources but ``t`` and ``s``. A source that helps
    on one source and hurts on the others is not a source to train on: the
    per-source mean of the differences (rows with ``scored_on="mean"``) says
    which sources to keep. A source shared by both classes in one way (one
    pipeline, one content type per class) often misleads the rest.

    Parameters
    ----------
    pipe : estimator
        The detector to evaluate, as in :func:`cross_source_report`.
    X : DataFrame, array-like or sequence
        All samples, as ``pipe`` takes them.
    y : array-like of shape (n_samples,)
        True labels.
    sources : array-like of shape (n_samples,)
        The source of each sample; at least three sources, each with both
        classes.
    precompute_features : "auto" or bool, default="auto"
        Encode every sample once and fit only the classifier in each fold, as
        in :func:`cross_source_report`.
    n_bootstraps : int, default=1000
        Paired stratified bootstrap resamples of the scored source (both
        detectors score the same resampled rows). 0 gives NaN bounds.
    confidence_level : float in (0, 1), default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.
    pos_label : int, str or None, default=None
        Label of generated images, as in :func:`cross_source_report`.

    Returns
    -------
    effects : DataFrame
        Columns ``source``, ``scored_on``, ``auc_with``, ``auc_without``,
        ``delta`` (with minus without), ``ci_low`` and ``ci_high`` (of the
        delta); for each source, a last row ``scored_on="mean"`` averages over
        the scored sources, with an interval that resamples all of them.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_clipdet.evaluation import source_effects
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 60)
    >>> X = rng.normal(size=(120, 4)) + y[:, None]
    >>> sources = np.repeat(["a", "b", "c"], 40)
    >>> effects = source_effects(LogisticRegression(), X, y, sources, n_bootstraps=0)
    >>> effects.query("scored_on == 'mean'")["source"].tolist()
    ['a', 'b', 'c']
    """
    folds = _Folds(pipe, X, y, sources, precompute_features, pos_label)
    if len(folds.names) < 3:
        raise ValueError(
            f"source_effects needs at least 3 sources, got {len(folds.names)}: "
            f"{list(folds.names)}."
        )
    with_source = {
        target: folds.scores(folds.without([target]), folds.rows_of(target))
        for target in folds.names
    }
    rows = []
    for source in folds.names:
        pairs = []
        for target in folds.names:
            if target == source:
                continue
            test = folds.rows_of(target)
            without = folds.scores(folds.without([target, source]), test)
            pairs.append((folds.targets[test], with_source[target], without))
            rows.append(_effect_row(source, target, [pairs[-1]], n_bootstraps,
                                    confidence_level, random_state))
        rows.append(_effect_row(source, MEAN_ROW, pairs, n_bootstraps, confidence_level,
                                random_state))
    return pd.DataFrame(rows)


def mean_auc_interval(scored, n_bootstraps, confidence_level, random_state):
    """Bootstrap interval of the mean AUC over sets, each resampled (stratified) on its own.

    ``scored`` is a list of ``(targets, scores)`` pairs, one per set.
    """
    low, high = mean_auc_delta_interval(
        [(targets, scores, None) for targets, scores in scored],
        n_bootstraps, confidence_level, random_state,
    )
    return low, high


def mean_auc_delta_interval(scored, n_bootstraps, confidence_level, random_state):
    """Bootstrap interval of the mean over sets of ``AUC(scores) - AUC(baseline)``.

    ``scored`` holds ``(targets, scores, baseline)`` triples; a baseline of None
    counts as 0, which gives the interval of the mean AUC itself. Both scores
    of a set are resampled with the same rows (a paired bootstrap).
    """
    if n_bootstraps == 0:
        return np.nan, np.nan
    rng = check_random_state(random_state)
    resamples = [
        stratified_resamples(targets, n_bootstraps, rng) for targets, _, _ in scored
    ]
    samples = np.empty(n_bootstraps)
    for b in range(n_bootstraps):
        values = []
        for (targets, scores, baseline), rows in zip(scored, resamples):
            picked = next(rows)
            value = roc_auc_score(targets[picked], scores[picked])
            if baseline is not None:
                value -= roc_auc_score(targets[picked], baseline[picked])
            values.append(value)
        samples[b] = np.mean(values)
    tail = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def _effect_row(source, scored_on, pairs, n_bootstraps, confidence_level, random_state):
    with_auc = np.mean([roc_auc_score(t, s) for t, s, _ in pairs])
    without_auc = np.mean([roc_auc_score(t, b) for t, _, b in pairs])
    low, high = mean_auc_delta_interval(pairs, n_bootstraps, confidence_level, random_state)
    return {
        "source": source,
        "scored_on": scored_on,
        "auc_with": float(with_auc),
        "auc_without": float(without_auc),
        "delta": float(with_auc - without_auc),
        "ci_low": low,
        "ci_high": high,
    }


class _Folds:
    """The samples of each source, and detectors fitted on unions of sources (memoised)."""

    def __init__(self, pipe, X, y, sources, precompute_features, pos_label):
        labels = column_or_1d(y)
        sources = column_or_1d(sources)
        if not len(X) == len(labels) == len(sources):
            raise ValueError(
                f"X, y and sources have different lengths: {len(X)}, {len(labels)} and "
                f"{len(sources)}."
            )
        if pos_label is None:
            pos_label = fit_generated_label(pipe, labels)
        self.targets, pos_label = binary_targets(labels, pos_label)
        self.sources = sources
        self.names = list(dict.fromkeys(sources.tolist()))  # in order of first appearance
        if len(self.names) < 2:
            raise ValueError(f"Leave one source out needs 2 sources or more, got {self.names}.")
        for name in self.names:
            present = np.unique(self.targets[sources == name])
            if len(present) < 2:
                kind = "generated" if present[0] else "real"
                raise ValueError(
                    f"Source {name!r} holds only {kind} samples; each source needs both "
                    "classes to be scored on its own."
                )
        self.labels, self.pos_label = labels, pos_label
        if should_precompute(pipe, precompute_features):
            features = clone(pipe[:-1]).fit(X, labels).transform(X)
            check_finite_features(features, "X")
            self.model, self.inputs = pipe[-1], features
        else:
            self.model, self.inputs = pipe, X
        self._fitted = {}

    def rows_of(self, source):
        return np.flatnonzero(self.sources == source)

    def without(self, excluded):
        return np.flatnonzero(~np.isin(self.sources, excluded))

    def scores(self, train, test):
        key = tuple(sorted(set(self.sources[train])))
        if key not in self._fitted:
            self._fitted[key] = clone(self.model).fit(
                take(self.inputs, train), self.labels[train]
            )
        return positive_scores(self._fitted[key], take(self.inputs, test), self.pos_label)

    def row(self, source, auc, low, high, train, test):
        return {
            "held_out": source,
            "auc": auc,
            "ci_low": low,
            "ci_high": high,
            "n_train": len(train),
            "n_test_generated": int(self.targets[test].sum()),
            "n_test_real": int((~self.targets[test]).sum()),
        }
