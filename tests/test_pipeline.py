"""The whole detector: featurizer + classifier in one scikit-learn Pipeline."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    cross_val_predict,
    cross_validate,
)
from sklearn.pipeline import Pipeline

from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier, make_detector
from sklearn_clipdet._clip._backbone import clear_backbone_cache

SMALL_CLASSIFIER = dict(hidden_layer_sizes=(32,), batch_size=64, max_epochs=5, lr=1e-2)


def tiny_detector(model_name, **params):
    return make_detector(
        model_name, None, modalities="image", device="cpu", random_state=0,
        classifier_params=SMALL_CLASSIFIER, **params,
    )


def test_make_detector_defaults_are_the_shipped_detectors_recipe():
    """Without arguments: the backbone and views the shipped detector was trained with, and
    the classifier's own defaults (the measured ones), not the paper's recipe."""
    import json

    from safetensors import safe_open

    from sklearn_clipdet import PAPER_RECIPE
    from sklearn_clipdet._clip._image_layers import AUTO_DEPTHS
    from sklearn_clipdet.pretrained import PRETRAINED_DETECTOR

    with safe_open(str(PRETRAINED_DETECTOR), framework="pt") as file:
        shipped = json.loads(file.metadata()["sklearn_clipdet"])["featurizer"]
    detector = make_detector()
    assert isinstance(detector, Pipeline)
    assert [name for name, _ in detector.steps] == ["clipfeaturizer", "robustmlpclassifier"]
    featurizer, classifier = detector[0], detector[1]
    for name in ["model_name", "pretrained", "views", "n_tiles", "layer_output", "normalize"]:
        assert getattr(featurizer, name) == shipped[name], name
    # "auto" reads the shipped blocks (6, 8 and 10) of ViT-B/16's 12
    assert featurizer.image_layers == "auto"
    assert [max(1, round(f * 12)) for f in AUTO_DEPTHS] == shipped["image_layers"]
    assert featurizer.modalities == "image+text"
    assert isinstance(classifier, RobustMLPClassifier)
    defaults = RobustMLPClassifier().get_params(deep=False)
    assert classifier.get_params(deep=False) == {**defaults, "device": classifier.device}
    assert any(classifier.get_params()[key] != value for key, value in PAPER_RECIPE.items())


def test_make_detector_passes_settings_to_each_step(tmp_path):
    detector = make_detector(
        "ViT-B-32", "laion2b_s34b_b79k", modalities="image", cache_dir=tmp_path,
        device="cpu", random_state=3,
        featurizer_params={"batch_size": 8}, classifier_params={"gamma": 0.7},
    )
    params = detector.get_params()
    assert params["clipfeaturizer__batch_size"] == 8
    assert params["clipfeaturizer__cache_dir"] == tmp_path
    assert params["robustmlpclassifier__gamma"] == 0.7
    assert params["robustmlpclassifier__random_state"] == 3
    assert params["robustmlpclassifier__device"] == "cpu"


def test_make_detector_records_the_generated_label(tiny_model_name, sample_samples):
    paths, y = sample_samples
    labels = np.array(["real", "fake"])[y]
    detector = tiny_detector(tiny_model_name, generated_label="fake")
    assert detector[-1].generated_label == "fake"
    detector.fit(paths, labels)
    assert detector[-1].generated_label_ == "fake"


def test_featurizer_params_override_the_arguments():
    detector = make_detector("ViT-B-32", "openai", featurizer_params={"model_name": "RN50"})
    assert detector[0].model_name == "RN50" and detector[0].pretrained == "openai"


def test_fit_and_predict_on_sample_images(tiny_model_name, sample_samples):
    paths, y = sample_samples
    detector = tiny_detector(tiny_model_name).fit(paths, y)
    proba = detector.predict_proba(paths)
    assert proba.shape == (len(paths), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(detector.predict(paths)) <= {0, 1}


def _count_encoded_images(monkeypatch):
    counter = {"images": 0, "calls": 0}
    original = CLIPFeaturizer._encode_images

    def counting(self, backbone, pixels):
        counter["images"] += len(pixels)
        counter["calls"] += 1
        return original(self, backbone, pixels)

    monkeypatch.setattr(CLIPFeaturizer, "_encode_images", counting)
    return counter


def test_grid_search_with_cache_encodes_each_image_once(
    tiny_model_name, sample_samples, tmp_path, monkeypatch
):
    paths, y = sample_samples
    X = pd.DataFrame({"image": paths})
    counter = _count_encoded_images(monkeypatch)
    search = GridSearchCV(
        tiny_detector(tiny_model_name, cache_dir=tmp_path / "cache"),
        {"robustmlpclassifier__gamma": [0.3, 0.7], "robustmlpclassifier__sam_rho": [0.0, 0.05]},
        scoring="roc_auc",
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    assert counter["images"] == len(set(paths))
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()

    # Without the cache every fit, every scoring and the refit encode again.
    counter["images"] = 0
    GridSearchCV(
        tiny_detector(tiny_model_name),
        {"robustmlpclassifier__gamma": [0.3, 0.7]},
        scoring="roc_auc",
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    # 2 candidates x 3 folds x (train + test) + the final refit on everything
    assert counter["images"] == 2 * 3 * len(paths) + len(paths)


def test_cross_validate_and_cross_val_predict(tiny_model_name, sample_samples, tmp_path):
    paths, y = sample_samples
    detector = tiny_detector(tiny_model_name, cache_dir=tmp_path)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_validate(detector, paths, y, cv=cv, scoring=["roc_auc", "accuracy"])
    assert len(scores["test_roc_auc"]) == 3
    proba = cross_val_predict(detector, paths, y, cv=cv, method="predict_proba")
    assert proba.shape == (len(paths), 2)


def test_joblib_round_trip_holds_no_clip_weights(
    tiny_model_name, tiny_model_dir, sample_samples, tmp_path
):
    paths, y = sample_samples
    detector = tiny_detector(tiny_model_name).fit(paths, y)
    expected = detector.predict_proba(paths)
    path = tmp_path / "detector.joblib"
    joblib.dump(detector, path)

    weights_size = (tiny_model_dir / "open_clip_model.safetensors").stat().st_size
    assert path.stat().st_size < weights_size / 4
    assert len(pickle.dumps(detector[0])) < 4096  # the featurizer pickles its settings only

    clear_backbone_cache()  # the loaded pipeline must load the backbone again
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(paths), expected)


def test_the_papers_recipe_is_one_switch_away():
    from sklearn_clipdet import PAPER_RECIPE

    paper = make_detector(recipe="paper", classifier_params={"max_epochs": 4})
    assert (paper[0].image_layers, paper[0].normalize) == ("final", False)
    params = paper[-1].get_params()
    assert {k: params[k] for k in PAPER_RECIPE if k != "max_epochs"} == {
        k: v for k, v in PAPER_RECIPE.items() if k != "max_epochs"}
    assert params["max_epochs"] == 4  # classifier_params override the recipe
    default = make_detector()
    assert (default[0].image_layers, default[-1].batch_size) == ("auto", "auto")
    with pytest.raises(ValueError, match="recipe"):
        make_detector(recipe="reference")
