"""Distance from the training data: about 1 for training-like rows, more for others."""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_clipdet import RobustMLPClassifier
from sklearn_clipdet.evaluation import training_distance


def test_training_rows_are_at_one_and_far_rows_further():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=5.0, scale=3.0, size=(300, 10))
    y = np.tile([0, 1], 150)
    detector = make_pipeline(FunctionTransformer(),
                             RobustMLPClassifier(max_epochs=1, random_state=0)).fit(X, y)
    distance = training_distance(detector, X)
    assert np.mean(distance ** 2) == pytest.approx(1.0, rel=1e-4)
    far = training_distance(detector, X + 30.0)
    assert np.all(far > 5 * np.median(distance))
    with_nan = training_distance(detector, np.vstack([X[:2], np.full((1, 10), np.nan)]))
    assert np.isnan(with_nan[2]) and np.isfinite(with_nan[:2]).all()


def test_a_classifier_without_standardisation_is_refused():
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.tile([0, 1], 20)
    detector = make_pipeline(FunctionTransformer(), RobustMLPClassifier(
        standardize=False, max_epochs=1, random_state=0)).fit(X, y)
    with pytest.raises(ValueError, match="standardises its inputs"):
        training_distance(detector, X)
