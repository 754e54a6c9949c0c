"""Leave one source out, and the effect of each source on the others."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sklearn_clipdet.evaluation import cross_source_report, source_effects


def _sources(seed=0):
    """Three sources where feature 0 carries the label; source "c" flips it."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], 90)
    sources = np.repeat(["a", "b", "c"], 60)
    X = rng.normal(size=(180, 3))
    sign = np.where(sources == "c", -1.0, 1.0)
    X[:, 0] += 2.0 * sign * (y - 0.5)
    return X, y, sources


class _SourceSpy(ClassifierMixin, BaseEstimator):
    """Records the rows each fit saw (through feature 1, a row id)."""

    seen = []

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        type(self).seen.append(set(X[:, 1].astype(int)))
        return self

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-X[:, 0]))
        return np.column_stack([1 - p, p])


def test_each_source_is_scored_by_a_model_that_never_saw_it():
    X, y, sources = _sources()
    X[:, 1] = np.arange(len(y))
    _SourceSpy.seen = []
    report = cross_source_report(_SourceSpy(), X, y, sources, n_bootstraps=0)
    assert report["held_out"].tolist() == ["a", "b", "c", "mean"]
    for held_out, seen in zip("abc", _SourceSpy.seen):
        assert seen == set(np.flatnonzero(sources != held_out))
    # The scores are the spy's own, so each AUC is that of feature 0 on the held-out rows.
    for row in report.itertuples():
        if row.held_out != "mean":
            rows = sources == row.held_out
            assert row.auc == pytest.approx(roc_auc_score(y[rows], X[rows, 0]))
            assert row.n_train == (~rows).sum()
    assert report.iloc[-1]["auc"] == pytest.approx(report["auc"][:3].mean())


def test_the_mean_interval_covers_the_mean():
    X, y, sources = _sources()
    report = cross_source_report(LogisticRegression(), X, y, sources, n_bootstraps=200,
                                 random_state=0)
    mean = report.iloc[-1]
    assert mean.ci_low < mean.auc < mean.ci_high
    assert mean.n_test_generated == 90 and mean.n_test_real == 90


def test_a_source_that_contradicts_the_others_has_a_negative_effect():
    X, y, sources = _sources()
    effects = source_effects(LogisticRegression(), X, y, sources, n_bootstraps=100,
                             random_state=0)
    means = effects[effects.scored_on == "mean"].set_index("source")
    # "c" flips the label: training on it hurts "a" and "b"; "a" helps "b" (and vice versa).
    assert means.loc["c", "delta"] < 0 and means.loc["c", "ci_high"] < 0
    on_b = effects[(effects.source == "a") & (effects.scored_on == "b")].iloc[0]
    assert on_b.delta > 0
    assert on_b.delta == pytest.approx(on_b.auc_with - on_b.auc_without)


def test_bad_sources_are_refused_with_the_name():
    X, y, sources = _sources()
    with pytest.raises(ValueError, match="Source 'b' holds only real"):
        cross_source_report(LogisticRegression(), X, np.where(sources == "b", 0, y), sources)
    with pytest.raises(ValueError, match="2 sources or more"):
        cross_source_report(LogisticRegression(), X, y, np.repeat("a", len(y)))
    with pytest.raises(ValueError, match="at least 3 sources"):
        source_effects(LogisticRegression(), X[:120], y[:120], sources[:120])
    with pytest.raises(ValueError, match="different lengths"):
        cross_source_report(LogisticRegression(), X, y, sources[:10])
