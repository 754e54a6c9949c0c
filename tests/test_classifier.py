import itertools
import math
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import EpochScoring, LRScheduler
from skorch.dataset import Dataset, ValidSplit
from skorch.helper import predefined_split

from sklearn_clipdet import PAPER_RECIPE, RobustMLPClassifier
from sklearn_clipdet.losses import DetectorLoss
from sklearn_clipdet.modules import DetectorMLP
from sklearn_clipdet.optim import SAM


def small(**params):
    defaults = dict(hidden_layer_sizes=(16,), batch_size=32, max_epochs=3, random_state=0)
    return RobustMLPClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    return X, y


def test_defaults_are_the_papers_training_with_the_measured_network_and_loss():
    clf = RobustMLPClassifier()
    params = clf.get_params()
    expected = dict(
        dropout=0.335, negative_slope=0.01,
        batch_norm=True, alpha=0.8, gamma=0.5, auc_margin=0.6,
        auc_power=2.0, sam=True, sam_rho=0.05, sam_adaptive=False, lr=1e-3,
        weight_decay=0.01, max_epochs=32, lr_schedule="cosine", lr_min=1e-5,
        # measured choices (benchmarks/bench_accuracy.py, bench_wild.py); PAPER_RECIPE
        # undoes them
        standardize=True, batch_size="auto", lr_period=None,
        hidden_layer_sizes=(), loss="cvar",
    )
    assert {k: params[k] for k in expected} == expected
    paper = RobustMLPClassifier(**PAPER_RECIPE).get_params()
    assert (paper["standardize"], paper["batch_size"], paper["lr_period"]) == (False, 2048, 8)


@pytest.mark.parametrize("n_samples, batch, steps_per_epoch", [
    (40, 40, 1),      # fewer than 64 rows: full batches
    (600, 75, 8),     # n // 8 rows: 8 optimiser steps per epoch
    (20000, 2048, 10),  # capped at the paper's 2048
])
def test_auto_batch_size_gives_about_eight_steps_per_epoch(n_samples, batch, steps_per_epoch):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(n_samples, 3)).astype(np.float32), np.tile([0, 1], n_samples // 2)
    clf = RobustMLPClassifier((4,), max_epochs=1, random_state=0).fit(X, y)
    batches = clf.history_[-1, "batches"]
    assert len(batches) == steps_per_epoch
    assert batches[0]["train_batch_size"] == batch


def test_standardize_makes_training_blind_to_the_scale_of_each_feature(data):
    X, y = data
    scales = np.logspace(-3, 3, X.shape[1])
    shifted = X * scales + 100.0
    plain = small(max_epochs=5).fit(X, y)
    rescaled = small(max_epochs=5).fit(shifted, y)
    np.testing.assert_allclose(rescaled.module_.input_mean.numpy(), shifted.mean(axis=0),
                               rtol=1e-5)
    # equal but for float32 rounding, which training amplifies a little
    np.testing.assert_allclose(rescaled.predict_proba(shifted), plain.predict_proba(X),
                               atol=5e-3)
    unstandardized = small(max_epochs=5, standardize=False).fit(shifted, y)
    difference = np.abs(unstandardized.predict_proba(shifted) - plain.predict_proba(X)).max()
    assert difference > 0.1


def test_network_optimiser_and_schedule_built_at_fit_time():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 12)), np.tile([0, 1], 20)
    linear = RobustMLPClassifier(max_epochs=1, batch_size=16, random_state=0).fit(X, y)
    assert len(linear.module_.hidden) == 0  # the default: one linear layer
    assert (linear.module_.output.in_features, linear.module_.output.out_features) == (12, 1)
    clf = RobustMLPClassifier(hidden_layer_sizes=PAPER_RECIPE["hidden_layer_sizes"],
                              max_epochs=1, batch_size=16, random_state=0).fit(X, y)

    layers = list(clf.module_.hidden)
    assert [type(layer).__name__ for layer in layers] == [
        "Linear", "BatchNorm1d", "LeakyReLU", "Dropout"
    ] * 3
    assert layers[0].in_features == 12  # built from n_features_in_, not a fixed 1536
    assert all(layer.out_features == 1536 for layer in layers[::4])
    assert layers[2].negative_slope == 0.01 and layers[3].p == 0.335
    assert (clf.module_.output.in_features, clf.module_.output.out_features) == (1536, 1)

    assert isinstance(clf.optimizer_, SAM) and isinstance(clf.optimizer_.base_optimizer,
                                                          torch.optim.AdamW)
    group = clf.optimizer_.param_groups[0]
    assert (group["rho"], group["weight_decay"], group["betas"]) == (0.05, 0.01, (0.9, 0.999))
    assert isinstance(clf.criterion_, DetectorLoss)
    assert (clf.criterion_.alpha, clf.criterion_.gamma) == (0.8, 0.5)
    scheduler = dict(clf.callbacks_)["lr_scheduler"]
    assert isinstance(scheduler, LRScheduler)
    assert scheduler.kwargs == {"T_max": 1, "eta_min": 1e-5, "last_epoch": -1}


def test_kaiming_uniform_initialisation():
    linear = DetectorMLP(512, hidden_layer_sizes=(256,)).hidden[0]
    gain = math.sqrt(2.0 / (1 + 0.01**2))
    bound = gain * math.sqrt(3.0 / 512)
    weight = linear.weight.detach()
    assert weight.abs().max() <= bound
    assert weight.abs().max() > 0.95 * bound  # uniform on the whole interval
    assert torch.count_nonzero(linear.bias) == 0


def test_cosine_schedule_reaches_lr_min(data):
    X, y = data
    clf = small(max_epochs=4, lr=1e-2, lr_min=1e-4).fit(X, y)
    lrs = clf.history[:, "event_lr"]
    assert lrs[0] == pytest.approx(1e-2)
    assert lrs == sorted(lrs, reverse=True)
    assert clf.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-4)
    constant = small(max_epochs=3, lr_schedule=None).fit(X, y)
    assert constant.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accepts_float_arrays_and_dataframes(data, dtype):
    X, y = data
    proba = small().fit(X.astype(dtype), y).predict_proba(X.astype(dtype))
    frame = pd.DataFrame(X.astype(dtype), columns=[f"f{i}" for i in range(X.shape[1])])
    clf = small().fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns)
    np.testing.assert_allclose(clf.predict_proba(frame), proba, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_named(data, bad):
    X, y = data
    X = X.copy()
    X[[5, 17], 2] = bad
    with pytest.raises(ValueError, match=r"2 row\(s\): \[5, 17\]"):
        small().fit(X, y)
    clf = small().fit(data[0], y)
    with pytest.raises(ValueError, match=r"\[5, 17\]"):
        clf.predict_proba(X)


def test_input_is_not_modified(data):
    X, y = data
    X32 = X.astype(np.float32)
    X_before, y_before = X32.copy(), y.copy()
    small().fit(X32, y)
    np.testing.assert_array_equal(X32, X_before)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize(
    "labels",
    [np.array(["real", "fake"]), np.array([False, True]), np.array([3, 7]), np.array([1, 0])],
)
def test_any_two_labels(data, labels):
    X, y01 = data
    y = labels[y01]
    clf = small(max_epochs=15, lr=1e-2).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    predicted = clf.predict(X)
    assert predicted.dtype == y.dtype and set(predicted) <= set(labels)
    assert (predicted == y).mean() > 0.8
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    decision = clf.decision_function(X)
    assert decision.shape == (len(X),)
    np.testing.assert_array_equal(predicted, clf.classes_[(decision > 0).astype(int)])
    # the score orders samples of classes_[1] above those of classes_[0]
    assert roc_auc_score(y == clf.classes_[1], proba[:, 1]) > 0.85


def test_one_class_and_multiclass_are_rejected(data):
    X, _ = data
    with pytest.raises(ValueError, match=r"2 classes; got 1 class: \['fake'\]"):
        small().fit(X, np.array(["fake"] * len(X)))
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        small().fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="Unknown label type"):
        small().fit(X, np.linspace(0, 1, len(X)))


def test_invalid_parameters_are_reported_at_fit(data):
    X, y = data
    clf = small(alpha=0.0)  # construction stores, never validates
    with pytest.raises(InvalidParameterError, match="alpha"):
        clf.fit(X, y)
    with pytest.raises(InvalidParameterError, match="loss"):
        small(loss="hinge").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        small(hidden_layer_sizes=(8, 0)).fit(X, y)


def test_random_state_makes_fit_deterministic_and_leaves_global_rng_alone(data):
    X, y = data
    state = torch.get_rng_state()
    clf = small(max_epochs=4).fit(X, y)
    assert torch.equal(state, torch.get_rng_state())
    first = clf.predict_proba(X)
    second = small(max_epochs=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other_seed = small(max_epochs=4, random_state=1).fit(X, y).predict_proba(X)
    assert not np.array_equal(first, other_seed)


def test_scores_do_not_depend_on_the_prediction_batch(data):
    X, y = data
    clf = small(hidden_layer_sizes=(64, 64)).fit(X, y)
    full = clf.decision_function(X)
    one_by_one = np.concatenate([clf.decision_function(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(full, one_by_one, rtol=1e-12, atol=1e-12)


def test_trailing_batch_of_one_sample_trains(data):
    X, y = data
    clf = small(batch_size=17).fit(X[:35], y[:35])  # 35 = 2 * 17 + 1
    assert len(clf.history[-1, "batches"]) == 2


def test_partial_fit_continues_training(data):
    X, y = data
    clf = small(max_epochs=2)
    clf.partial_fit(X[:60], y[:60], classes=[0, 1])
    clf.partial_fit(X[60:], y[60:])
    assert len(clf.history) == 4
    with pytest.raises(ValueError, match="3 features"):
        clf.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        clf.partial_fit(X, np.full(len(X), 2))


def test_ablation_variants_train(data):
    X, y = data
    for params in [
        dict(loss="bce", sam=False),
        dict(loss="cvar"),
        dict(loss="auc"),
        dict(sam_adaptive=True),
        dict(batch_norm=False),
    ]:
        clf = small(**params).fit(X, y)
        assert np.isfinite(clf.history[:, "train_loss"]).all(), params
        assert isinstance(clf.optimizer_, SAM) == params.get("sam", True)


def test_skorch_callbacks_and_validation_split(data):
    X, y = data
    clf = small(
        train_split=ValidSplit(4, stratified=True),
        callbacks=[("auc", EpochScoring("roc_auc", name="valid_auc", lower_is_better=False))],
    ).fit(X, y)
    assert 0.0 <= clf.history[-1, "valid_auc"] <= 1.0
    assert np.isfinite(clf.history[-1, "valid_loss"])


def test_verbose_prints_only_when_asked(data, capsys):
    X, y = data
    small().fit(X, y)
    assert capsys.readouterr().out == ""
    small(verbose=1).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


def test_clone_and_set_params(data):
    X, y = data
    clf = small(gamma=0.3)
    clf.set_params(gamma=0.7, sam_rho=0.1)
    copy = clone(clf)
    assert copy.get_params(deep=False) == clf.get_params(deep=False)
    copy.fit(X, y)
    assert (copy.criterion_.gamma, copy.optimizer_.param_groups[0]["rho"]) == (0.7, 0.1)
    assert "gamma=0.7" in repr(copy)


def test_grid_search_over_gamma_and_rho(data):
    X, y = data
    search = GridSearchCV(
        small(max_epochs=2),
        {"gamma": [0.3, 0.7], "sam_rho": [0.0, 0.05]},
        scoring="roc_auc",
        cv=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict_proba(X).shape == (len(X), 2)


def test_joblib_and_pickle_round_trip(data, tmp_path):
    X, y = data
    clf = small().fit(X, np.array(["real", "fake"])[y])
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))


def test_unpickled_classifier_keeps_training_like_the_original(data):
    # torch pickles an optimiser's defaults, state and groups only; SAM's wrapped AdamW
    # must survive, sharing its parameter groups and moments, for partial_fit to go on.
    X, y = data
    clf = small(max_epochs=2).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    assert again.optimizer_.param_groups is again.optimizer_.base_optimizer.param_groups
    assert again.optimizer_.param_groups[0]["params"][0] is next(again.module_.parameters())
    for model in (clf, again):  # partial_fit draws from the global RNG
        torch.manual_seed(0)
        model.partial_fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_batchnorm_statistics_follow_the_first_sam_pass_only(data):
    X, y = data
    clf = small(max_epochs=3, batch_size=30).fit(X, y)  # 120 rows: 4 batches an epoch
    batch_norm = clf.module_.hidden[1]
    assert batch_norm.num_batches_tracked.item() == 3 * 4  # twice that if both passes counted


def test_set_params_after_fit_rebuilds_what_it_configures(data):
    X, y = data
    clf = small().fit(X, y)
    clf.set_params(alpha=0.3, loss="bce", sam_rho=0.2, weight_decay=0.5)
    assert (clf.criterion_.loss, clf.criterion_.alpha) == ("bce", 0.3)
    group = clf.optimizer_.param_groups[0]
    assert (group["rho"], group["weight_decay"]) == (0.2, 0.5)
    clf.set_params(lr=0.05)
    assert clf.optimizer_.param_groups[0]["lr"] == 0.05
    clf.partial_fit(X, y)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_prediction_in_float64_leaves_no_state_behind(data):
    X, y = data
    clf = small().fit(X, y)
    before = set(vars(clf))
    clf.predict_proba(X)
    assert set(vars(clf)) == before


# --------------------------------------------------------- device-resident batches


def test_training_batches_are_sliced_from_tensors_and_reshuffled(data, monkeypatch):
    import skorch.dataset

    def per_sample(self, i):
        raise AssertionError("batches must not be collated from single samples")

    monkeypatch.setattr(skorch.dataset.Dataset, "__getitem__", per_sample)
    X, y = data
    clf = small().fit(X, y)
    clf.predict_proba(X)
    dataset = clf.get_dataset(X.astype(np.float32), y)
    iterator = clf.get_iterator(dataset, training=True)
    epochs = [torch.cat([rows for rows, _ in iterator]) for _ in range(2)]
    assert all(isinstance(batch, torch.Tensor) for batch in next(iter(iterator)))
    for rows in epochs:  # every row once per epoch
        assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, X.astype(np.float32)))
    assert not torch.equal(epochs[0], epochs[1])
    targets = torch.cat([t for _, t in clf.get_iterator(dataset, training=False)])
    np.testing.assert_array_equal(targets.numpy(), y.astype(np.float32))


def test_iterator_options_keep_working(data):
    X, y = data
    clf = small(batch_size=50, iterator_train__drop_last=True, iterator_valid__batch_size=7)
    clf.fit(X, y)  # 120 rows: two training batches of 50, the 20 left are dropped
    assert clf.history[-1, "train_batch_count"] == 2
    dataset = clf.get_dataset(X.astype(np.float32))
    assert len(clf.get_iterator(dataset)) == len(range(0, len(X), 7))
    unshuffled = small(iterator_train__shuffle=False).fit(X, y)
    batches = unshuffled.get_iterator(unshuffled.get_dataset(X.astype(np.float32), y), True)
    np.testing.assert_array_equal(next(iter(batches))[0].numpy(), X[:32].astype(np.float32))


def test_small_batches_and_a_trailing_single_row_under_batch_norm(data):
    X, y = data
    clf = small(batch_size=16, max_epochs=20, lr=1e-2).fit(X[:60], y[:60])
    assert clf.history[-1, "train_batch_count"] == 4  # 16 + 16 + 16 + 12
    assert roc_auc_score(y[60:], clf.predict_proba(X[60:])[:, 1]) > 0.85
    odd = small(batch_size=16, max_epochs=1).fit(X[:33], y[:33])  # 33 = 2 * 16 + 1
    assert odd.history[-1, "train_batch_count"] == 2


def test_batch_of_one_row_with_batch_norm_is_refused(data):
    X, y = data
    with pytest.raises(ValueError, match="batch_norm=True needs batch_size >= 2"):
        small(batch_size=1).fit(X, y)
    with pytest.raises(ValueError, match="batch_norm=True needs batch_size >= 2"):
        small(iterator_train__batch_size=1).fit(X, y)
    one_by_one = small(batch_size=1, batch_norm=False, max_epochs=1).fit(X[:20], y[:20])
    assert one_by_one.history[-1, "train_batch_count"] == 20


# -------------------------------------------------------------------- prediction


def test_concurrent_prediction_matches_serial_prediction(data):
    from concurrent.futures import ThreadPoolExecutor

    X, y = data
    clf = small(hidden_layer_sizes=(32, 32), batch_size=16, max_epochs=1).fit(X, y)
    expected = clf.predict_proba(X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: clf.predict_proba(X), range(4)))
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_interleaved_forward_iter_generators(data):
    X, y = data
    clf = small(batch_size=16).fit(X, y)
    X32 = X.astype(np.float32)
    first, second = clf.forward_iter(X32), clf.forward_iter(X32)
    pairs = []
    for pair in itertools.zip_longest(first, second):  # both run to their end
        assert torch.is_grad_enabled()  # the generators do not change the caller's mode
        pairs.append(pair)
    assert torch.is_grad_enabled()
    assert len(pairs) == len(range(0, len(X), 16))
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_float64_beyond_float32_range_is_refused(data):
    X, y = data
    huge = X * 1e39
    with pytest.raises(ValueError, match=r"converted to float32.*120 row\(s\)"):
        small().fit(huge, y)
    clf = small().fit(X, y)
    rows = X.copy()
    rows[[3, 9]] *= 1e39
    with pytest.raises(ValueError, match=r"converted to float32.*\[3, 9\]"):
        clf.predict_proba(rows)
    with pytest.raises(ValueError, match=r"converted to float32.*\[3, 9\]"):
        clf.partial_fit(rows, y)


# ------------------------------------------------------------ skorch semantics


@pytest.mark.parametrize("labels", [np.array([1, 2]), np.array(["fake", "real"])])
def test_scoring_callbacks_see_the_labels_as_given(data, labels):
    X, y01 = data
    y = labels[y01]
    valid = np.arange(len(X)) % 4 == 0
    clf = small(
        max_epochs=8, lr=1e-2, generated_label=labels[1],
        train_split=predefined_split(Dataset(X[valid], y[valid])),
        callbacks=[
            ("train_acc", EpochScoring("accuracy", name="train_acc", on_train=True,
                                       lower_is_better=False)),
            ("valid_acc", EpochScoring("accuracy", name="valid_acc", lower_is_better=False)),
        ],
    ).fit(X[~valid], y[~valid])
    assert clf.history[-1, "train_acc"] == (clf.predict(X[~valid]) == y[~valid]).mean()
    assert clf.history[-1, "valid_acc"] == (clf.predict(X[valid]) == y[valid]).mean()
    assert clf.history[-1, "valid_acc"] > 0.6
    assert np.isfinite(clf.history[-1, "valid_loss"])


def test_keyboard_interrupt_warns_and_propagates(data):
    from skorch.callbacks import Callback

    class Interrupt(Callback):
        """Ctrl-C at the end of the second epoch of each training call."""

        def on_train_begin(self, net, **kwargs):
            self.epochs = 0

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1
            if self.epochs == 2:
                raise KeyboardInterrupt

    X, y = data
    clf = small(max_epochs=5, callbacks=[("stop", Interrupt())])
    with pytest.warns(UserWarning, match="interrupted after 2 of 5 epochs"):
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X, y)
    assert len(clf.history) == 2
    with pytest.warns(UserWarning, match="interrupted after 2 of 5 epochs"):
        with pytest.raises(KeyboardInterrupt):
            clf.partial_fit(X, y)
    assert len(clf.history) == 4


def test_partial_fit_runs_the_schedule_again(data):
    X, y = data
    clf = small(max_epochs=3, lr=1e-2, lr_min=1e-4)
    clf.partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y)
    lrs = clf.history[:, "event_lr"]
    assert lrs[:3] == lrs[3:]
    assert max(lrs) == pytest.approx(1e-2)
    assert clf.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_lr_period_cycles_the_cosine(data):
    X, y = data
    X, y = X[:40], y[:40]  # one batch an epoch: the schedule is what is tested
    clf = small(max_epochs=8, lr=1e-2, lr_min=0.0, lr_period=2, batch_size=40).fit(X, y)
    lrs = clf.history[:, "event_lr"]  # the rate each epoch trained with
    np.testing.assert_allclose(lrs, np.array([2, 1, 0, 1, 2, 1, 0, 1]) * 0.5e-2, atol=1e-12)
    once = small(max_epochs=4, lr=1e-2, lr_min=0.0, batch_size=40).fit(X, y)
    assert once.history[:, "event_lr"] == sorted(once.history[:, "event_lr"], reverse=True)


def test_paper_recipe():
    from sklearn_clipdet import PAPER_RECIPE, make_detector

    assert dict(PAPER_RECIPE) == dict(
        hidden_layer_sizes=(1536, 1536, 1536), dropout=0.335, negative_slope=0.01,
        batch_norm=True, standardize=False, loss="cvar_auc", alpha=0.8, gamma=0.5, auc_margin=0.6,
        auc_power=2.0, sam=True, sam_rho=0.05, sam_adaptive=False, lr=1e-3,
        weight_decay=0.01, max_epochs=32, batch_size=2048, lr_schedule="cosine",
        lr_period=8, lr_min=1e-5,
    )
    params = RobustMLPClassifier(**PAPER_RECIPE).get_params()
    assert {key: params[key] for key in PAPER_RECIPE} == dict(PAPER_RECIPE)
    detector = make_detector(classifier_params=PAPER_RECIPE)
    assert detector[-1].lr_period == 8
    with pytest.raises(TypeError):
        PAPER_RECIPE["lr"] = 1.0  # a shared constant stays as published


def test_clone_keeps_nested_options():
    clf = small(iterator_train__drop_last=True)
    clf.set_params(iterator_valid__batch_size=5, callbacks__print_log=None)
    copy = clone(clf)
    params = copy.get_params(deep=False)
    assert params["iterator_train__drop_last"] is True
    assert params["iterator_valid__batch_size"] == 5
    assert params["callbacks__print_log"] is None


@pytest.mark.parametrize(
    "name, message",
    [
        ("module__dropout", "set by hidden_layer_sizes, dropout"),
        ("criterion__alpha", "set by loss, alpha"),
        ("optimizer__weight_decay", "AdamW .* set by lr, weight_decay"),
        ("optimizer", "AdamW"),
        ("iterator_train__num_workers", "not supported.*iterator_train__batch_size"),
        ("bogus", "Invalid parameter 'bogus'"),
    ],
)
def test_components_the_classifier_fixes_are_refused(data, name, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        small().set_params(**{name: 0.5})
    with pytest.raises(ValueError, match=message):
        small(**{name: 0.5}).fit(X, y)
    fitted = small(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=message):
        fitted.set_params(**{name: torch.optim.SGD})


@pytest.mark.parametrize(
    "params",
    [dict(threshold=np.nan), dict(threshold=5), dict(lr=-1), dict(alpha=0),
     dict(dropout=1.0), dict(callbacks="x"), dict(callbacks=["x"]),
     dict(hidden_layer_sizes=(8, -1)), dict(generated_label=3)],
)
def test_set_params_after_fit_validates(data, params):
    X, y = data
    clf = small(max_epochs=1).fit(X, y)
    before = clf.get_params(deep=False)
    expected = clf.predict_proba(X)
    with pytest.raises(ValueError):
        clf.set_params(**params)
    assert clf.get_params(deep=False) == before
    np.testing.assert_array_equal(clf.predict_proba(X), expected)


@pytest.mark.parametrize(
    "params", [dict(dropout=0.1), dict(batch_norm=False), dict(hidden_layer_sizes=(8,)),
               dict(negative_slope=0.2)],
)
def test_changing_the_network_unfits_the_classifier(data, tmp_path, params):
    from sklearn.exceptions import NotFittedError

    from sklearn_clipdet import save_detector

    X, y = data
    clf = small(max_epochs=1).fit(X, y)
    clf.set_params(**params)
    with pytest.raises(NotFittedError):
        clf.predict_proba(X)
    with pytest.raises(NotFittedError):
        save_detector(clf, tmp_path / "untrained.safetensors")
    assert clf.get_params(deep=False) == {**small(max_epochs=1).get_params(deep=False), **params}
    clf.fit(X, y)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_sample_weight_and_other_fit_params_are_refused(data):
    X, y = data
    with pytest.raises(TypeError, match="does not support sample_weight.*Resample"):
        small().fit(X, y, sample_weight=np.ones(len(y)))
    with pytest.raises(TypeError, match=r"takes X and y only; got \['extra'\]"):
        small().partial_fit(X, y, classes=[0, 1], extra=1)


def test_warm_start_continues_training(data):
    X, y = data
    clf = small(max_epochs=2, warm_start=True).fit(X, y)
    weights = clf.module_.output.weight.detach().clone()
    clf.fit(X, y)
    assert len(clf.history) == 4
    assert not torch.equal(weights, clf.module_.output.weight)
    cold = small(max_epochs=2).fit(X, y)
    cold.fit(X, y)
    assert len(cold.history) == 2


# ------------------------------------------------------------------ generated label


def test_generated_label_defaults_to_the_second_class(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small(max_epochs=1).fit(X, y).generated_label_ == 1
        assert small(max_epochs=1).fit(X, y == 1).generated_label_ is np.True_
        named = small(max_epochs=1, generated_label="fake").fit(X, np.array(["real", "fake"])[y])
    assert named.generated_label_ == "fake"
    assert list(named.classes_) == ["fake", "real"]  # columns stay in sorted order
    with pytest.warns(UserWarning, match=r"probability of 'real'.*generated_label='fake'"):
        default = small(max_epochs=1).fit(X, np.array(["real", "fake"])[y])
    assert default.generated_label_ == "real"
    with pytest.raises(ValueError, match=r"generated_label=2 is not one of the classes \[0, 1\]"):
        small(generated_label=2).fit(X, y)
    default.set_params(generated_label="fake")
    assert default.generated_label_ == "fake"


def test_epoch_table_has_no_colour_codes_off_a_terminal(data, capsys):
    X, y = data
    small(verbose=1, train_split=ValidSplit(4, stratified=True)).fit(X, y)
    out = capsys.readouterr().out
    assert "valid_loss" in out and "\x1b[" not in out


def test_forward_in_training_mode_keeps_the_row_order(data):
    X, y = data
    clf = small(dropout=0.0, batch_norm=False).fit(X, y)  # train mode changes nothing then
    X32 = X.astype(np.float32)
    np.testing.assert_allclose(clf.forward(X32, training=True).detach().numpy(),
                               clf.decision_function(X), rtol=1e-5, atol=1e-5)


def test_standardisation_comes_from_the_training_rows_only(data):
    from skorch.dataset import ValidSplit

    X, y = data
    clf = small(max_epochs=1, train_split=ValidSplit(4, stratified=True)).fit(X, y)
    train = clf.get_split_datasets(X.astype(np.float32), y)[0]  # the same split (no shuffle)
    rows = X[np.asarray(train.indices)]
    np.testing.assert_allclose(clf.module_.input_mean.numpy(), rows.mean(axis=0), rtol=1e-5)
    assert not np.allclose(clf.module_.input_mean.numpy(), X.mean(axis=0), rtol=1e-3)


def test_constant_rate_after_an_annealed_run_is_lr(data):
    X, y = data
    clf = small(max_epochs=3).fit(X, y)
    annealed = clf.optimizer_.param_groups[0]["lr"]
    clf.set_params(lr_schedule=None).partial_fit(X, y)
    assert annealed < clf.lr and clf.optimizer_.param_groups[0]["lr"] == clf.lr


def test_layer_sizes_given_as_a_list_keep_a_network_of_the_same_sizes():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), np.tile([0, 1], 20)
    clf = RobustMLPClassifier(hidden_layer_sizes=(8, 8), max_epochs=1, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(hidden_layer_sizes=[8, 8])
    np.testing.assert_array_equal(clf.predict_proba(X), before)  # still fitted, same weights
    clf.set_params(hidden_layer_sizes=[8, 4])
    assert not clf.initialized_
