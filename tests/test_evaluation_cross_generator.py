"""cross_generator_report: leave one generator out, with a separate split of the real images."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from sklearn_clipdet import load_image_folder, make_detector
from sklearn_clipdet.evaluation import cross_generator_report

SMALL_MLP = {"hidden_layer_sizes": (32,), "max_epochs": 2, "lr": 1e-2, "batch_size": 64}
FITS = []  # (train ids, test ids) of every fold of the recording classifier


class RecordingClassifier(LogisticRegression):
    """Logistic regression that records which samples (column 0 = id) it trains and scores."""

    def fit(self, X, y):
        FITS.append([set(X[:, 0].astype(int)), set()])
        return super().fit(X[:, 1:], y)

    def predict_proba(self, X):
        FITS[-1][1] |= set(X[:, 0].astype(int))
        return super().predict_proba(X[:, 1:])


def _synthetic(n_real=20, per_generator=5, generators=("a", "b", "c", "d")):
    rng = np.random.RandomState(0)
    groups = ["photo"] * n_real + [g for g in generators for _ in range(per_generator)]
    y = np.r_[np.zeros(n_real, int), np.ones(len(groups) - n_real, int)]
    X = np.column_stack([np.arange(len(y)), rng.normal(size=len(y)) + y])
    return X, y, np.array(groups, dtype=object)


def test_folds_hold_out_one_generator_and_never_test_on_trained_real_images():
    FITS.clear()
    X, y, groups = _synthetic()
    report = cross_generator_report(RecordingClassifier(), X, y, groups, random_state=0)
    assert report["held_out"].unique().tolist() == ["a", "b", "c", "d"]
    assert len(FITS) == 4
    real = set(range(20))
    tested_real = []
    for generator, (train, test) in zip("abcd", FITS):
        own = {i for i in range(20, 40) if groups[i] == generator}
        assert own == test - real  # the whole held-out generator is tested...
        assert not own & train  # ...and none of it was trained on
        assert len(train - real) == 15
        assert not (test & real) & train  # real test images were not trained on
        assert len(train & real) + len(test & real) == 20
        tested_real += sorted(test & real)
    assert sorted(tested_real) == list(range(20))  # each real image tested exactly once
    rows = report[report["metric"] == "roc_auc"]
    assert (rows["n_test_generated"] == 5).all() and rows["n_test_real"].sum() == 20
    assert (rows["n_train"] == 15 + 20 - rows["n_test_real"]).all()


def test_real_cv_receives_the_groups_of_real_images():
    FITS.clear()
    X, y, groups = _synthetic()
    groups[:20] = [f"source{i % 4}" for i in range(20)]
    cross_generator_report(RecordingClassifier(), X, y, groups, real_cv=GroupKFold(4))
    for _, test in FITS:
        sources = {groups[i] for i in test if i < 20}
        assert len(sources) == 1  # GroupKFold kept each real source in one fold
    with pytest.raises(ValueError, match="one per generator"):
        cross_generator_report(RecordingClassifier(), X, y, groups, real_cv=GroupKFold(3))


def test_errors():
    X, y, groups = _synthetic(generators=("a",))
    with pytest.raises(ValueError, match="at least 2 generators"):
        cross_generator_report(LogisticRegression(), X, y, groups)
    X, y, groups = _synthetic()
    groups[25] = None
    with pytest.raises(ValueError, match=r"no group \(generator\), rows \[25\]"):
        cross_generator_report(LogisticRegression(), X, y, groups)
    X, y, groups = _synthetic(n_real=3)
    with pytest.raises(ValueError, match="3 real images cannot be split into 4 folds"):
        cross_generator_report(LogisticRegression(), X, y, groups)


def test_on_the_sample_images_generators(tiny_model_name, sample_dir):
    data = load_image_folder(sample_dir, group_from="prefix")
    pipe = make_detector(tiny_model_name, None, modalities="image", random_state=0,
                         classifier_params=SMALL_MLP)
    X = data[["image"]]
    report = cross_generator_report(pipe, X, data["label"], data["group"], random_state=0,
                                    n_bootstraps=20)
    auc = report[report["metric"] == "roc_auc"].set_index("held_out")
    assert list(auc.index) == ["diffusion1", "diffusion2", "diffusion3", "diffusion4", "gan"]
    assert auc["n_test_generated"].tolist() == [1, 2, 1, 2, 2]
    assert auc["n_test_real"].sum() == 8
    assert auc["value"].between(0, 1).all() and (auc["ci_low"] <= auc["value"]).all()

    # Encoding once and fitting only the classifier gives what fitting the whole
    # pipeline in every fold gives (the featurizer learns nothing).
    kept = ~data["group"].isin(["diffusion1", "diffusion2"])
    subset = data[kept].groupby("group").head(3).reset_index(drop=True)
    kwargs = dict(random_state=0)
    fast = cross_generator_report(pipe, subset[["image"]], subset["label"], subset["group"],
                                  **kwargs)
    slow = cross_generator_report(pipe, subset[["image"]], subset["label"], subset["group"],
                                  precompute_features=False, **kwargs)
    pd.testing.assert_frame_equal(fast, slow)


class LabelledClassifier(LogisticRegression):
    """Logistic regression with the ``generated_label`` parameter of RobustMLPClassifier."""

    def __init__(self, generated_label=None):
        super().__init__()
        self.generated_label = generated_label


def test_pos_label_none_is_the_label_the_classifier_takes_as_generated():
    X, y, groups = _synthetic()
    X = X[:, 1:]
    expected = cross_generator_report(LogisticRegression(), X, y, groups, random_state=0)
    # A classifier's generated_label parameter names it, even when it sorts first.
    fake = np.where(y == 1, "fake", "real")
    report = cross_generator_report(LabelledClassifier("fake"), X, fake, groups, random_state=0)
    pd.testing.assert_frame_equal(report, expected)


def test_labels_of_words_need_pos_label_unless_the_classifier_names_its_generated_label():
    from sklearn_clipdet.evaluation._common import generated_label

    X, y, groups = _synthetic()
    names = np.where(y == 1, "fake", "real")
    with pytest.raises(ValueError, match="pass pos_label"):
        cross_generator_report(LogisticRegression(), X[:, 1:], names, groups)
    with pytest.raises(ValueError, match="pass pos_label"):
        generated_label(LogisticRegression().fit(X[:, 1:], names))
    report = cross_generator_report(LogisticRegression(), X[:, 1:], names, groups,
                                    pos_label="fake", random_state=0)
    pd.testing.assert_frame_equal(
        report, cross_generator_report(LogisticRegression(), X[:, 1:], y, groups, random_state=0))
    assert generated_label(LogisticRegression().fit(X[:, 1:], y)) == 1
