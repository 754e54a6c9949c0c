"""on_error="nan" through a pipeline: NaN scores and labels for the images that could
not be read, scores for the rest (issue 19 item 10)."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_clipdet import RobustMLPClassifier, make_detector

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_images"


@pytest.fixture(scope="module")
def images_and_broken(tmp_path_factory):
    images = sorted(str(p) for p in (SAMPLE_DIR / "train").rglob("*.jpg"))
    broken = tmp_path_factory.mktemp("broken") / "broken.jpg"
    broken.write_bytes(b"not an image")
    return images, str(broken)


@pytest.fixture(scope="module")
def lenient_detector(tiny_model_name, images_and_broken):
    images, _ = images_and_broken
    labels = np.array([int("ai" in p.split("/")[-2]) for p in images])
    detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                             random_state=0, featurizer_params={"on_error": "nan"},
                             classifier_params={"hidden_layer_sizes": (4,), "max_epochs": 2})
    return detector.fit(images, labels)


def test_the_pipeline_scores_what_it_read_and_gives_nan_for_the_rest(lenient_detector,
                                                                     images_and_broken):
    images, broken = images_and_broken
    X = [images[0], broken, images[1]]
    with pytest.warns(UserWarning, match="could not be read"):
        proba = lenient_detector.predict_proba(X)
    assert proba.shape == (3, 2)
    assert np.isnan(proba[1]).all()
    np.testing.assert_allclose(proba[[0, 2]], lenient_detector.predict_proba(X[::2]),
                               rtol=1e-6)
    with pytest.warns(UserWarning, match="could not be read"):
        labels = lenient_detector.predict(X)
    assert labels.dtype == float and np.isnan(labels[1])
    np.testing.assert_array_equal(labels[[0, 2]], lenient_detector.predict(X[::2]))
    with pytest.warns(UserWarning, match="could not be read"):
        logits = lenient_detector.decision_function(X)
    assert np.isnan(logits[1]) and np.isfinite(logits[[0, 2]]).all()


def test_all_readable_rows_keep_the_label_dtype(lenient_detector, images_and_broken):
    images, _ = images_and_broken
    assert lenient_detector.predict(images[:3]).dtype == lenient_detector.classes_.dtype


@pytest.fixture(scope="module")
def string_classifier():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "generated", "real")
    return RobustMLPClassifier(max_epochs=2, random_state=0).fit(X, y), X


def test_string_labels_become_object_with_nan(string_classifier):
    classifier, X = string_classifier
    X = X[:4].copy()
    X[2] = np.nan
    before = X.copy()
    labels = classifier.predict(X)
    assert labels.dtype == object and pd.isna(labels[2])
    assert set(labels[[0, 1, 3]]) <= {"generated", "real"}
    np.testing.assert_array_equal(X, before)  # the user's rows are not modified


def test_rows_partly_nan_or_inf_are_still_refused_by_their_index(string_classifier):
    classifier, X = string_classifier
    X = X[:5].copy()
    X[1] = np.nan  # an unread image: scored NaN
    X[3, 2] = np.nan  # damaged features: refused
    with pytest.raises(ValueError, match=r"1 row\(s\): \[3\]"):
        classifier.predict_proba(X)
    X[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"\[3\]"):
        classifier.predict_proba(X)


def test_training_still_refuses_unread_rows(string_classifier):
    classifier, X = string_classifier
    X = X.copy()
    X[5] = np.nan
    y = np.where(X[:, 0] > 0, "generated", "real")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"\[5\]"):
            RobustMLPClassifier(max_epochs=1).fit(X, y)


def test_score_refuses_unread_rows_by_index(string_classifier):
    classifier, X = string_classifier
    y = np.where(X[:, 0] > 0, "generated", "real")
    assert 0 <= classifier.score(X, y) <= 1
    X = X.copy()
    X[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"2 row\(s\) NaN throughout .*\[3, 7\]"):
        classifier.score(X, y)
