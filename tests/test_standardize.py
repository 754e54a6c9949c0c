"""standardize=True is a StandardScaler inside the network (issue 19 item 11).

On ``make_classification(n_features=1536, n_informative=40)`` it cost 0.10 AUC.
The cause is the data, not the implementation: the 42 informative and redundant
features have several times the spread of the 1,494 noise features, so their
scale carries the signal, and standardising removes it. Adam moves every weight
by about ``lr`` a step, so before convergence a feature's reach grows with its
scale: the gap shrinks with training (0.13 AUC after 10 epochs, 0.05 after 100)
but stays, as it does for scikit-learn's ``MLPClassifier`` (0.10) and
``LogisticRegression`` (0.03) behind a ``StandardScaler``
(``python benchmarks/bench_standardize.py`` prints these). These tests pin
both halves: the internal standardisation is exactly an external
``StandardScaler``, and on inputs that really are standardised it changes nothing.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_clipdet import RobustMLPClassifier


@pytest.fixture(scope="module")
def issue_task():
    X, y = make_classification(n_samples=5000, n_features=1536, n_informative=40,
                               random_state=0)
    return X.astype(np.float32), y


def _auc(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X[:4000], y[:4000])
    return roc_auc_score(y[4000:], model.predict_proba(X[4000:])[:, 1])


def _classifier(standardize):
    return RobustMLPClassifier(hidden_layer_sizes=(), max_epochs=3, batch_size=256,
                               random_state=0, standardize=standardize)


def test_the_issue_task_carries_its_signal_in_the_feature_scale(issue_task):
    X, y = issue_task
    spread = X.std(axis=0)
    wide = spread > 1.5
    assert 35 <= wide.sum() <= 50
    assert np.median(spread[wide]) > 3 * np.median(spread[~wide])
    # The wide features alone separate the classes; the narrow ones do not.
    assert _auc(LogisticRegression(max_iter=2000), X[:, wide], y) > 0.9
    assert _auc(LogisticRegression(max_iter=2000), X[:, ~wide], y) < 0.6


def test_standardize_is_an_external_standard_scaler(issue_task):
    X, y = issue_task
    inside = _classifier(True)
    outside = make_pipeline(StandardScaler(), _classifier(False))
    assert _auc(inside, X, y) == pytest.approx(_auc(outside, X, y), abs=1e-6)
    np.testing.assert_allclose(inside.predict_proba(X[4000:]),
                               outside.predict_proba(X[4000:]), atol=1e-5)
    scaler = outside[0]
    np.testing.assert_allclose(inside.module_.input_mean.numpy(), scaler.mean_, atol=1e-5)
    np.testing.assert_allclose(inside.module_.input_scale.numpy(), scaler.scale_, rtol=1e-5)


def test_standardize_changes_nothing_on_standardised_inputs(issue_task):
    X, y = issue_task
    X = StandardScaler().fit_transform(X).astype(np.float32)
    assert _auc(_classifier(True), X, y) == pytest.approx(_auc(_classifier(False), X, y),
                                                          abs=0.005)
