"""Training that diverges fails clearly, and diverged weights are never saved."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from sklearn_clipdet import RobustMLPClassifier, save_detector
from sklearn_clipdet.exceptions import TrainingDivergedError


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("params", [
    dict(hidden_layer_sizes=(16,), loss="cvar_auc", auc_power=50.0),
    dict(hidden_layer_sizes=(16,), sam_rho=1e30),
])
def test_diverging_training_raises_naming_the_epoch(data, params):
    X, y = data
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch \d+.*Lower lr"):
        RobustMLPClassifier(max_epochs=5, random_state=0, **params).fit(X, y)


def test_a_loss_that_is_never_finite_warns(data):
    X, y = data
    clf = RobustMLPClassifier(loss="cvar_auc", auc_margin=1e30, max_epochs=2, sam=False,
                              random_state=0)
    with pytest.warns(UserWarning, match="not finite in any of the 2 epochs"):
        clf.fit(X, y)


def test_finite_training_neither_warns_nor_raises(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RobustMLPClassifier(max_epochs=2, random_state=0).fit(X, y)


def test_non_finite_weights_are_not_saved(data, tmp_path):
    X, y = data
    clf = RobustMLPClassifier(max_epochs=1, random_state=0).fit(X, y)
    with torch.no_grad():
        clf.module_.output.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite.*diverged"):
        save_detector(clf, tmp_path / "broken.safetensors")
    assert not (tmp_path / "broken.safetensors").exists()
