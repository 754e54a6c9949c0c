"""LeaveOneGeneratorOut: folds that hold out one generator, usable by GridSearchCV."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_clipdet.evaluation import LeaveOneGeneratorOut


def _data():
    y = np.array([0] * 9 + [1] * 9)
    groups = np.array(["cam"] * 3 + ["phone"] * 3 + ["scan"] * 3
                      + ["sd14"] * 3 + ["mj"] * 3 + ["dalle"] * 3, dtype=object)
    return y, groups


def test_each_fold_holds_out_one_generator_and_tests_every_real_image_once():
    y, groups = _data()
    cv = LeaveOneGeneratorOut(random_state=0)
    folds = list(cv.split(np.zeros((len(y), 2)), y, groups))
    assert cv.get_n_splits(y=y, groups=groups) == len(folds) == 3
    real_tested = []
    for generator, (train, test) in zip(cv.generators(y, groups), folds):
        assert not set(train) & set(test)
        assert set(groups[test][y[test] == 1]) == {generator}
        assert generator not in set(groups[train])
        assert set(y[test]) == {0, 1}
        real_tested += test[y[test] == 0].tolist()
    assert sorted(real_tested) == list(range(9))


def test_real_cv_keeps_real_sources_together():
    y, groups = _data()
    cv = LeaveOneGeneratorOut(GroupKFold(3))
    for _, test in cv.split(np.zeros(len(y)), y, groups):
        real_sources = set(groups[test][y[test] == 0])
        assert len(real_sources) == 1  # one real source per fold, never split


def test_grid_search_selects_by_held_out_generators():
    rng = np.random.default_rng(0)
    y, groups = _data()
    X = rng.normal(size=(len(y), 4)) + y[:, None]
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, scoring="roc_auc",
                          cv=LeaveOneGeneratorOut(random_state=0)).fit(X, y, groups=groups)
    assert search.n_splits_ == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("change, message", [
    (lambda y, g: g.__setitem__(10, None), "have no group"),
    (lambda y, g: g.__setitem__(slice(9, 18), "sd14"), "at least 2 generators"),
])
def test_bad_groups_are_named(change, message):
    y, groups = _data()
    change(y, groups)
    with pytest.raises(ValueError, match=message):
        list(LeaveOneGeneratorOut().split(np.zeros(len(y)), y, groups))


def test_too_few_real_images_and_missing_groups_argument():
    y = np.array([0, 1, 1, 1])
    with pytest.raises(ValueError, match="cannot be split into 3 folds"):
        list(LeaveOneGeneratorOut().split(np.zeros(4), y, ["r", "a", "b", "c"]))
    with pytest.raises(ValueError, match="needs y and groups"):
        LeaveOneGeneratorOut().get_n_splits()
