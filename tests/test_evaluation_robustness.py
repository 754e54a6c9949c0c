"""robustness_report: metrics under perturbations, encoder cost, plots."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from sklearn_clipdet import CLIPFeaturizer, make_detector
from sklearn_clipdet.evaluation import (
    GaussianBlur,
    GaussianNoise,
    JPEGCompress,
    Resize,
    detection_report,
    plot_robustness,
    robustness_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_MLP = {"hidden_layer_sizes": (32,), "max_epochs": 10, "lr": 1e-2, "batch_size": 64}


def _images(n_samples=24, seed=0):
    """Random 48 px images with alternating labels: the tiny model's scores are far from
    perfect, so perturbations move the metrics."""
    rng = np.random.RandomState(seed)
    images = [rng.randint(0, 256, (48, 48, 3)).astype(np.uint8) for _ in range(n_samples)]
    return images, np.array([0, 1] * (n_samples // 2))


@pytest.fixture(scope="module")
def fitted(tiny_model_name):
    images, y = _images()
    X = pd.DataFrame({"image": images, "text": [f"picture {i % 3}" for i in range(len(y))]})
    pipe = make_detector(tiny_model_name, None, modalities="image+text", random_state=0,
                         featurizer_params={"num_workers": 0}, classifier_params=SMALL_MLP)
    return pipe.fit(X, y), X, y


@pytest.fixture
def count_encoded(monkeypatch):
    """Number of images passed through CLIPFeaturizer._encode_images since the fixture ran."""
    counter = {"calls": 0, "images": 0}
    original = CLIPFeaturizer._encode_images

    def counting(self, backbone, pixels):
        counter["calls"] += 1
        counter["images"] += len(pixels)
        return original(self, backbone, pixels)

    monkeypatch.setattr(CLIPFeaturizer, "_encode_images", counting)
    return counter


def _labels_the_perturbation_misranks(clean, perturbed):
    """Labels whose ROC AUC is 1 on the clean scores and below 1 on the perturbed ones.

    Take the pair of images ``(i, j)`` whose order the perturbation reverses by the widest
    margin (``i`` above ``j`` when clean, below it when perturbed) and label "generated" the
    images scored at least as high as ``i`` when clean. The clean scores then rank every
    generated image above every real one, while the perturbed ones misrank ``(i, j)``: the
    two AUCs differ whatever the model, so a report that scored the clean images in place of
    the perturbed ones cannot pass. (A tiny model's AUC on random images is close to 0.5 and
    moves in steps of 1/144, so with fixed labels the perturbed AUC can equal the clean one by
    chance, depending on the CPU and thread count that trained the model.)
    """
    reversal = np.minimum(clean[:, None] - clean[None, :], perturbed[None, :] - perturbed[:, None])
    i, j = np.unravel_index(np.argmax(reversal), reversal.shape)
    # Float rounding between encoding in chunks and all at once is ~1e-7.
    assert reversal[i, j] > 1e-4, "the perturbation did not change the ranking of the scores"
    return (clean >= clean[i]).astype(int)


def test_values_equal_scoring_the_perturbed_images(fitted):
    pipe, X, _ = fitted
    clean = pipe.predict_proba(X)[:, 1]
    perturbations = {"jpeg": JPEGCompress(30), "noise": GaussianNoise(60, random_state=0)}
    for name, perturbation in perturbations.items():
        perturbed = pipe.predict_proba(perturbation.transform(X))[:, 1]
        y = _labels_the_perturbation_misranks(clean, perturbed)
        report = robustness_report(pipe, X, y, {name: [perturbation]}, chunk_size=5)
        values = report.set_index(["perturbation", "metric"])["value"]
        for label, scores in [("none", clean), (name, perturbed)]:
            expected = detection_report(y, scores, n_bootstraps=0).set_index("metric")["value"]
            assert values[label].to_dict() == pytest.approx(expected.to_dict(), nan_ok=True)
        assert values["none", "roc_auc"] == 1.0
        assert values[name, "roc_auc"] < 1.0  # the report scored the perturbed images
        assert set(report.columns) >= {"perturbation", "level", "metric", "value"}
        levels = report.drop_duplicates("perturbation").set_index("perturbation")["level"]
        assert np.isnan(levels["none"]) and levels[name] == perturbation.level


def test_each_perturbed_image_is_encoded_once(fitted, count_encoded):
    pipe, X, y = fitted
    perturbations = {
        "blur": [GaussianBlur(0.0), GaussianBlur(1.0), GaussianBlur(2.0)],  # 0 is the identity
        "resize": [Resize(1.0), Resize(0.5)],
        "again": [GaussianBlur(2.0)],  # equal to a level above: reused
    }
    report = robustness_report(pipe, X, y, perturbations)
    # The clean images, then blur 1, blur 2 and resize 0.5.
    assert count_encoded["images"] == 4 * len(X)
    assert report.attrs["encoded_images"] == 4 * len(X)
    auc = report[report["metric"] == "roc_auc"]
    clean = auc.loc[auc["perturbation"] == "none", "value"].item()
    identity = auc[(auc["perturbation"] == "blur") & (auc["level"] == 0)]["value"].item()
    assert identity == clean
    blur2 = auc[(auc["perturbation"] == "blur") & (auc["level"] == 2)]["value"].item()
    assert auc.loc[auc["perturbation"] == "again", "value"].item() == blur2


def test_captions_are_passed_on(fitted):
    pipe, X, y = fitted
    assert pipe.steps[0][1].modalities == "image+text"
    # Scores change when the captions change, so the report must have used them.
    swapped = X.assign(text=X["text"].iloc[::-1].to_numpy())
    first = robustness_report(pipe, X, y, {"jpeg": [JPEGCompress(50)]})
    second = robustness_report(pipe, swapped, y, {"jpeg": [JPEGCompress(50)]})
    assert not np.allclose(first["value"], second["value"])


def test_plot_to_png_and_onto_given_axes(fitted, tmp_path):
    pipe, X, y = fitted
    path = tmp_path / "robustness.png"
    perturbations = {"jpeg": [JPEGCompress(90), JPEGCompress(40)],
                     "blur": [GaussianBlur(1.0), GaussianBlur(3.0)]}
    report = robustness_report(pipe, X, y, perturbations, n_bootstraps=20, random_state=0)
    plot_robustness(report, path=path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert report["ci_low"].notna().all()

    figure, axes = plt.subplots(1, 2)
    try:
        drawn = plot_robustness(report, metric="eer", ax=axes)
        assert list(drawn) == list(axes)
        assert axes[0].get_title() == "jpeg" and axes[0].get_ylabel() == "eer"
        assert axes[0].xaxis_inverted()  # lower quality is harsher: drawn to the right
        assert len(axes[1].lines) == 2  # the curve and the clean line
        with pytest.raises(ValueError, match="one Axes per perturbation"):
            plot_robustness(report, ax=axes[0])
        with pytest.raises(ValueError, match="no metric 'auc'"):
            plot_robustness(report, metric="auc")
    finally:
        plt.close(figure)


def test_on_sample_images(tiny_model_name, sample_samples):
    paths, labels = sample_samples
    chosen = [0, 1, 2, 8, 9, 10]
    X = [paths[i] for i in chosen]
    y = labels[chosen]
    pipe = make_detector(tiny_model_name, None, modalities="image", random_state=0,
                         classifier_params=SMALL_MLP).fit(X, y)
    report = robustness_report(pipe, X, y, {"resize": [Resize(0.1)]}, fpr_targets=(0.05,))
    assert len(report) == 2 * 5 and report["value"].notna().all()
    assert report.attrs == {"encoded_images": 12, "n_samples": 6}


def test_invalid_arguments(fitted, tiny_model_name):
    pipe, X, y = fitted
    with pytest.raises(TypeError, match="needs a Pipeline"):
        robustness_report(pipe[-1], X, y, {"jpeg": [JPEGCompress(50)]})
    with pytest.raises(TypeError, match="non-empty dict"):
        robustness_report(pipe, X, y, [JPEGCompress(50)])
    with pytest.raises(TypeError, match="not a transformer"):
        robustness_report(pipe, X, y, {"jpeg": [50]})
    with pytest.raises(ValueError, match="different lengths"):
        robustness_report(pipe, X, y[:-1], {"jpeg": [JPEGCompress(50)]})
    unfitted = make_detector(tiny_model_name, None)
    with pytest.raises(Exception, match="not fitted"):
        robustness_report(unfitted, X, y, {"jpeg": [JPEGCompress(50)]})


def test_pos_label_none_scores_the_classifiers_generated_label(tiny_model_name):
    images, y = _images(n_samples=12, seed=1)
    names = np.where(y == 1, "fake", "real")
    params = dict(SMALL_MLP, max_epochs=2)
    pipe = make_detector(tiny_model_name, None, modalities="image", random_state=0,
                         generated_label="fake", featurizer_params={"num_workers": 0},
                         classifier_params=params)
    pipe.fit(images, names)
    assert list(pipe[-1].classes_) == ["fake", "real"]  # sorted: "fake" is column 0
    assert pipe[-1].generated_label_ == "fake"

    # Evaluate on labels that the fitted model's P(fake) ranks perfectly: scoring the
    # generated label gives AUC 1, scoring column 1 (P(real)) would give 0.
    fake_probability = pipe.predict_proba(images)[:, 0]
    ranked = np.where(fake_probability > np.median(fake_probability), "fake", "real")
    report = robustness_report(pipe, images, ranked, {"blur": [GaussianBlur(1.0)]})
    auc = report.query("metric == 'roc_auc' and perturbation == 'none'")["value"].item()
    assert auc == pytest.approx(roc_auc_score(ranked == "fake", fake_probability)) == 1.0


class _Dropping:
    """A user's perturbation that loses images: none at all, or the last of each call."""

    def __init__(self, keep_none):
        self.keep_none = keep_none

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return [] if self.keep_none else list(X)[:-1]

    def get_params(self, deep=True):
        return {"keep_none": self.keep_none}


@pytest.mark.parametrize("keep_none", [True, False])
def test_a_perturbation_that_loses_images_is_refused(fitted, keep_none):
    """Its images would be paired with the wrong rows (or, with none, never end)."""
    pipe, X, y = fitted
    with pytest.raises(ValueError, match=r"returned \d+ images for \d+ .*one image per input"):
        robustness_report(pipe, X, y, {"dropping": [_Dropping(keep_none)]})
