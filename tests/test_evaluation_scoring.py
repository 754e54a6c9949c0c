"""score_images: a detector's scores of every image, NaN for those it could not read."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_clipdet import CLIPFeaturizer, make_detector
from sklearn_clipdet.evaluation import score_images

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_images"


@pytest.fixture(scope="module")
def detector_and_images(tiny_model_name, tmp_path_factory):
    images = sorted(str(p) for p in (SAMPLE_DIR / "train").rglob("*.jpg"))
    labels = np.array([int("ai" in p.split("/")[-2]) for p in images])
    detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                             random_state=0, featurizer_params={"on_error": "nan"},
                             classifier_params={"hidden_layer_sizes": (4,), "max_epochs": 2})
    detector.fit(images, labels)
    broken = tmp_path_factory.mktemp("broken") / "broken.jpg"
    broken.write_bytes(b"not an image")
    return detector, images, str(broken)


def test_unreadable_images_get_nan_and_the_others_their_scores(detector_and_images):
    detector, images, broken = detector_and_images
    X = pd.DataFrame({"image": [images[0], broken, images[1], None]})
    with pytest.warns(UserWarning, match="could not be read"):
        scores, labels = score_images(detector, X, return_labels=True)
    expected = detector.predict_proba(X.iloc[[0, 2]])[:, 1]
    np.testing.assert_allclose(scores[[0, 2]], expected, rtol=1e-6)
    assert np.isnan(scores[[1, 3]]).all()
    assert labels.dtype == object and pd.isna(labels[[1, 3]]).all()
    np.testing.assert_array_equal(labels[[0, 2]].astype(int), detector.predict(X.iloc[[0, 2]]))


def test_all_readable_scores_equal_predict_proba(detector_and_images):
    detector, images, _ = detector_and_images
    np.testing.assert_allclose(score_images(detector, images),
                               detector.predict_proba(images)[:, 1], rtol=1e-6)


def test_any_pipeline_of_a_featurizer_and_a_classifier(tiny_model_name, detector_and_images):
    """A scikit-learn classifier without generated_label_: the score of label 1."""
    _, images, _ = detector_and_images
    labels = np.array([int("ai" in p.split("/")[-2]) for p in images])
    pipeline = make_pipeline(CLIPFeaturizer(tiny_model_name, None, modalities="image"),
                             LogisticRegression()).fit(images, labels)
    np.testing.assert_allclose(score_images(pipeline, images),
                               pipeline.predict_proba(images)[:, 1], rtol=1e-6)


def test_a_lone_classifier_is_refused(detector_and_images):
    detector, images, _ = detector_and_images
    with pytest.raises(TypeError, match="Pipeline of a featurizer and a classifier"):
        score_images(detector[-1], images)


def test_rows_partly_nan_or_inf_are_refused_by_their_index(detector_and_images):
    """Only rows NaN throughout are unread images; others are damaged features."""
    from sklearn.pipeline import Pipeline

    detector, images, _ = detector_and_images
    features = detector[:-1].transform(images[:4])
    features[1] = np.nan
    features[2, 0] = np.nan
    on_features = Pipeline([("features", "passthrough"), ("classifier", detector[-1])])
    with pytest.raises(ValueError, match=r"1 row\(s\): \[2\]"):
        score_images(on_features, features)
    features[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"1 row\(s\): \[2\]"):
        score_images(on_features, features)
    features[2, 0] = 0.0
    scores = score_images(on_features, features)
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2, 3]]).all()
