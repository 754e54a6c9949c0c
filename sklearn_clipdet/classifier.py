"""RobustMLPClassifier: the method's MLP, objective and optimiser as a skorch net."""

import warnings
from numbers import Integral, Real
from types import MappingProxyType

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data
from skorch import NeuralNetBinaryClassifier
from skorch.dataset import Dataset
from skorch.utils import is_dataset, to_device

from ._classifier._batches import FeatureDataset, arrays_of
from ._classifier._checks import X_VALIDATION, fit_params_error, float32_rows
from ._classifier._params import SKORCH_OPTION_CONSTRAINTS, SkorchParamsMixin
from ._classifier._prediction import PredictionMixin
from ._classifier._state import FittedStateMixin
from ._classifier._training import TrainingInterrupted, seeded
from ._constants import AUTO_BATCH_STEPS, MAX_AUTO_BATCH, MIN_AUTO_BATCH
from ._utils._sklearn_compat import Interval, StrOptions
from .losses import LOSSES, DetectorLoss
from .modules import DetectorMLP, float64_copy
from .optim import frozen_batchnorm_stats

__all__ = ["PAPER_RECIPE", "RobustMLPClassifier"]

#: Parameters of :class:`RobustMLPClassifier` that reproduce the reference
#: training of arXiv 2404.12908 exactly, whatever the defaults become.
PAPER_RECIPE = MappingProxyType(
    {
        "hidden_layer_sizes": (1536, 1536, 1536),
        "dropout": 0.335,
        "negative_slope": 0.01,
        "batch_norm": True,
        "standardize": False,
        "loss": "cvar_auc",
        "alpha": 0.8,
        "gamma": 0.5,
        "auc_margin": 0.6,
        "auc_power": 2.0,
        "sam": True,
        "sam_rho": 0.05,
        "sam_adaptive": False,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "max_epochs": 32,
        "batch_size": 2048,
        "lr_schedule": "cosine",
        "lr_period": 8,
        "lr_min": 1e-5,
    }
)


class RobustMLPClassifier(SkorchParamsMixin, FittedStateMixin, PredictionMixin,
                          NeuralNetBinaryClassifier):
    """MLP detector trained with a CVaR (+ pairwise-AUC) loss under SAM.

    The method of "Robust CLIP-Based Detector for Exposing Diffusion
    Model-Generated Images" (arXiv 2404.12908): hidden blocks (Linear,
    BatchNorm1d, LeakyReLU, Dropout; the paper has three of 1536 units), one
    logit, the loss ``gamma * CVaR_alpha(BCE) + (1 - gamma) * AUC`` and
    Sharpness-Aware Minimisation around AdamW with cosine learning-rate
    annealing. ``RobustMLPClassifier(**PAPER_RECIPE)`` reproduces the
    reference network and training exactly (batch 2048, 32 epochs, a cosine
    period of 8 epochs, ...), see :data:`~sklearn_clipdet.PAPER_RECIPE`.

    The defaults differ from the paper where leaving one source out on real
    CLIP features said so (``benchmarks/bench_wild.py``, the README's
    results): on five photoreal sources, no hidden block (a standardised
    linear layer) trained with the CVaR of the cross-entropy under SAM
    scored a mean held-out AUC of 0.796, against 0.781 for a linear probe
    and less for the paper's network and loss. The pairwise-AUC term and
    the hidden blocks did not help there; they remain one parameter away.

    The estimator is a skorch :class:`~skorch.NeuralNetBinaryClassifier`, so
    skorch callbacks, ``train_split``, ``history`` and the ``iterator_train__*``
    options work, and it follows scikit-learn's conventions: any two class
    labels, ``classes_`` sorted, ``predict`` returns the original labels. The
    network is built at fit time for the number of input features.

    Training keeps the rows on ``device`` (copied once per call) and slices
    each batch from them, reshuffled every epoch; rows that do not fit in a
    CUDA device's free memory are streamed to it in chunks. Prediction gives
    each row the same score whatever else it is predicted with, and does not
    modify the estimator: several threads may predict with one fitted
    classifier at once.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=()
        Width of each hidden block; ``()`` (the default) is a linear layer on
        the (standardised) inputs, and then ``dropout``, ``negative_slope``
        and ``batch_norm`` have no effect. The paper's network is
        ``(1536, 1536, 1536)``.
    dropout : float in [0, 1), default=0.335
        Dropout probability after each hidden block.
    negative_slope : float, default=0.01
        LeakyReLU slope for negative inputs.
    batch_norm : bool, default=True
        Whether each hidden block uses BatchNorm1d. BatchNorm needs at least
        two rows per training batch, so ``batch_size`` must then be 2 or more;
        a trailing batch of a single row is skipped (a different row each
        epoch, since the order is reshuffled).
    standardize : bool, default=True
        Standardise each input feature with the mean and standard deviation of
        the training rows, as scikit-learn's ``StandardScaler`` would (the rows
        of the first ``fit`` or ``partial_fit`` call, without the validation
        rows of ``train_split``; stored with the network's weights). CLIP
        features have a few dimensions of much larger magnitude than the rest,
        which otherwise dominate; on real CLIP ViT-B/16 features it raised the
        AUC of detectors trained on one set and tested on another (see the
        README's results and ``benchmarks/bench_accuracy.py``). It assumes a
        feature's scale says nothing about its importance; where it does, set
        False (on ``make_classification(n_features=1536, n_informative=40)``,
        whose informative features have four times the spread of the rest, it
        costs 0.13 AUC after 10 epochs, as a ``StandardScaler`` costs
        scikit-learn's ``MLPClassifier`` 0.10; see
        ``benchmarks/bench_standardize.py``). The reference code does not
        standardise (``PAPER_RECIPE``).
    loss : {"cvar", "cvar_auc", "bce", "auc"}, default="cvar"
        Training objective. ``"cvar_auc"`` is the method's full objective;
        ``"cvar"`` (the default) is its CVaR term alone, which generalised
        better across sources; ``"bce"`` is the plain mean cross-entropy and
        ``"auc"`` the pairwise term alone.
    alpha : float in (0, 1], default=0.8
        CVaR level: the loss averages the worst ``alpha``-fraction of each batch.
    gamma : float in [0, 1], default=0.5
        Weight of the CVaR term against the AUC term (``loss="cvar_auc"`` only).
    auc_margin : float, default=0.6
        Margin of the pairwise AUC hinge.
    auc_power : float, default=2.0
        Exponent of the pairwise AUC hinge.
    sam : bool, default=True
        Train with Sharpness-Aware Minimisation; False uses plain AdamW.
    sam_rho : float, default=0.05
        SAM neighbourhood radius.
    sam_adaptive : bool, default=False
        Use adaptive SAM (neighbourhood scaled by weight magnitude).
    lr : float, default=1e-3
        AdamW learning rate (the start of the cosine schedule).
    weight_decay : float, default=0.01
        AdamW decoupled weight decay.
    max_epochs : int, default=32
        Number of passes over the training data per call to ``fit`` or
        ``partial_fit``.
    batch_size : int or "auto", default="auto"
        Mini-batch size for training (and prediction, where it changes only
        speed). "auto" sizes training to the data: ``n_samples // 8`` rows,
        at least 64 and at most the paper's 2048, so a set of a few hundred or
        thousand images gets about 8 optimiser steps per epoch (256 in all)
        instead of one or two, while very large sets train as in the paper
        and sets under 64 rows train in full batches. The AUC term compares
        all pairs within a batch, so small batches give a noisier objective.
    lr_schedule : {"cosine"} or None, default="cosine"
        ``"cosine"`` anneals the learning rate from ``lr`` to ``lr_min``
        (PyTorch's ``CosineAnnealingLR``, stepped once per epoch); None keeps
        it constant.
    lr_period : int or None, default=None
        Epochs the cosine takes from ``lr`` down to ``lr_min`` (its ``T_max``).
        None anneals once over ``max_epochs``. A shorter period continues the
        cosine past its minimum: the rate rises back to ``lr`` over the next
        ``lr_period`` epochs and so on, as in the reference code
        (``lr_period=max_epochs / 4``).
    lr_min : float, default=1e-5
        Lowest learning rate of the cosine schedule.
    threshold : float in [0, 1], default=0.5
        Probability of ``classes_[1]`` above which :meth:`predict` returns it.
    generated_label : str, int, float, bool or None, default=None
        The label of generated images, one of the two classes. It does not
        change training or the columns of :meth:`predict_proba` (always in
        ``classes_`` order); it is recorded as ``generated_label_`` for the
        evaluation tools and the command line, which score that class. None
        means ``classes_[1]`` (1 for 0/1 labels); with labels that are not
        numbers (e.g. "fake"/"real") ``fit`` then warns which label column 1
        of ``predict_proba`` is.
    callbacks : list of (str, skorch.callbacks.Callback) or None, default=None
        Extra skorch callbacks, e.g. early stopping or checkpoints. Scoring
        callbacks (``EpochScoring("accuracy")``, ...) compare ``predict`` with
        the labels as given.
    train_split : callable or None, default=None
        skorch's internal validation split, e.g. ``skorch.dataset.ValidSplit(5)``;
        None trains on all the data (scikit-learn's model selection tools then
        do the validation).
    warm_start : bool, default=False
        When True, ``fit`` on a fitted classifier continues training its
        network (as ``partial_fit`` does) instead of starting afresh.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and dropout, so that two fits
        give identical results. The global torch random state is left as it was.
    device : str or torch.device, default="cpu"
        Torch device for training and prediction, e.g. ``"cuda"``.
    verbose : int, default=0
        Print a per-epoch table when positive (coloured only on a terminal).
    **kwargs
        skorch's nested options: ``iterator_train__batch_size``,
        ``iterator_train__shuffle``, ``iterator_train__drop_last``,
        ``iterator_valid__batch_size`` and ``callbacks__<name>[__<param>]``.
        They are parameters like the others (kept by ``clone``). The network,
        loss and optimiser are set by the parameters above, so ``module__*``,
        ``criterion__*``, ``optimizer__*`` and other skorch components are
        refused with a message naming what to use.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two class labels, sorted. The logit and ``predict_proba[:, 1]``
        refer to ``classes_[1]``: with labels 0/1 that is 1 (generated); with
        "fake"/"real" it is "real".
    generated_label_ : object
        The label of generated images: ``generated_label``, or ``classes_[1]``.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when X was a DataFrame with string column names.
    module_ : DetectorMLP
        The trained network.
    history_ : skorch.history.History
        Per-epoch and per-batch training records.
    interrupted_ : bool
        True when the last training call was stopped by a KeyboardInterrupt:
        the weights are those of that moment, and ``save_detector`` refuses
        the classifier until it is trained again.

    Notes
    -----
    Each call to ``fit`` or ``partial_fit`` (and ``fit`` with ``warm_start``)
    trains ``max_epochs`` epochs under the whole learning-rate schedule, from
    ``lr``: further training is another run of the same schedule from the
    current weights and optimiser state.

    Changing a parameter of the network (``hidden_layer_sizes``, ``dropout``,
    ``negative_slope``, ``batch_norm``, ``standardize``) with ``set_params`` on a fitted
    classifier makes it unfitted again: its trained weights no longer match
    its parameters. Other parameters take effect at once (the loss, the
    optimiser, the schedule, ``lr``, ``threshold``, ``generated_label``).

    A ``KeyboardInterrupt`` during training is raised again after a warning
    that says how many epochs ran (skorch would end ``fit`` quietly). The
    classifier keeps the weights of that moment; callbacks' ``on_train_end``
    does not run.

    ``sample_weight`` is not supported: the CVaR and pairwise AUC terms rank
    the rows of a batch, and weights have no agreed meaning there. Resample
    the training rows instead.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn_clipdet import RobustMLPClassifier
    >>> X, y = make_classification(n_samples=200, n_features=20, random_state=0)
    >>> clf = RobustMLPClassifier(hidden_layer_sizes=(64,), batch_size=64,
    ...                           max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    _parameter_constraints = {
        "hidden_layer_sizes": [tuple, list],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "negative_slope": [Interval(Real, 0, None, closed="left")],
        "batch_norm": ["boolean"],
        "standardize": ["boolean"],
        "loss": [StrOptions(set(LOSSES))],
        "alpha": [Interval(Real, 0, 1, closed="right")],
        "gamma": [Interval(Real, 0, 1, closed="both")],
        "auc_margin": [Interval(Real, 0, None, closed="left")],
        "auc_power": [Interval(Real, 0, None, closed="neither")],
        "sam": ["boolean"],
        "sam_rho": [Interval(Real, 0, None, closed="left")],
        "sam_adaptive": ["boolean"],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "lr_schedule": [StrOptions({"cosine"}), None],
        "lr_period": [Interval(Integral, 1, None, closed="left"), None],
        "lr_min": [Interval(Real, 0, None, closed="left")],
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "generated_label": [str, Real, None],
        "callbacks": [list, None],
        "train_split": [callable, None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
        **SKORCH_OPTION_CONSTRAINTS,
    }

    def __init__(
        self,
        hidden_layer_sizes=(),
        *,
        dropout=0.335,
        negative_slope=0.01,
        batch_norm=True,
        standardize=True,
        loss="cvar",
        alpha=0.8,
        gamma=0.5,
        auc_margin=0.6,
        auc_power=2.0,
        sam=True,
        sam_rho=0.05,
        sam_adaptive=False,
        lr=1e-3,
        weight_decay=0.01,
        max_epochs=32,
        batch_size="auto",
        lr_schedule="cosine",
        lr_period=None,
        lr_min=1e-5,
        threshold=0.5,
        generated_label=None,
        callbacks=None,
        train_split=None,
        warm_start=False,
        random_state=None,
        device="cpu",
        verbose=0,
        **kwargs,
    ):
        super().__init__(
            module=DetectorMLP,
            criterion=DetectorLoss,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            callbacks=callbacks,
            threshold=threshold,
            warm_start=warm_start,
            verbose=verbose,
            device=device,
        )
        self._drop_skorch_state()
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.batch_norm = batch_norm
        self.standardize = standardize
        self.loss = loss
        self.alpha = alpha
        self.gamma = gamma
        self.auc_margin = auc_margin
        self.auc_power = auc_power
        self.sam = sam
        self.sam_rho = sam_rho
        self.sam_adaptive = sam_adaptive
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.lr_period = lr_period
        self.lr_min = lr_min
        self.generated_label = generated_label
        self.random_state = random_state
        # Stored as given, as skorch does; fit refuses what does not apply.
        vars(self).update(kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, **fit_params):
        """Train the network from scratch (or further, with ``warm_start=True``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows (float32 or float64 arrays, DataFrames). NaN and inf,
            also after conversion to float32, are rejected, naming the rows.
        y : array-like of shape (n_samples,)
            Labels of exactly two classes.
        **fit_params : dict
            Not supported (``sample_weight`` included): any raises TypeError.

        Returns
        -------
        self : RobustMLPClassifier
        """
        continuing = self.warm_start and self.initialized_
        X, y = self._validate_training_data(X, y, fit_params, reset=not continuing)
        with self._seeded(not continuing):
            if not continuing:
                self._initialize_network()
            self._train(X, y)
        return self

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training for ``max_epochs`` more epochs on (X, y).

        The learning-rate schedule runs again from ``lr`` (see Notes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.
        y : array-like of shape (n_samples,)
            Labels.
        classes : array-like of shape (2,), default=None
            Both class labels. Needed on the first call when ``y`` does not
            contain both; ignored afterwards.
        **fit_params : dict
            Not supported: any raises TypeError.

        Returns
        -------
        self : RobustMLPClassifier
        """
        first_call = not self.initialized_
        X, y = self._validate_training_data(X, y, fit_params, reset=first_call, classes=classes)
        with self._seeded(first_call):
            if first_call:
                self._initialize_network()
            self._train(X, y)
        return self

    def _initialize_network(self):
        """A new network, whose input standardisation the training rows will set.

        The rows are known after skorch's ``train_split`` (see
        :meth:`get_split_datasets`), so validation rows do not enter it.
        """
        self.initialize()
        self._standardization_pending = self.standardize

    def get_split_datasets(self, X, y=None, **fit_params):
        """skorch's training and validation split; a new network's input standardisation
        is set from the training part."""
        dataset_train, dataset_valid = super().get_split_datasets(X, y, **fit_params)
        if getattr(self, "_standardization_pending", False):
            self.module_.set_standardization(arrays_of(dataset_train)[0])
            self._standardization_pending = False
        return dataset_train, dataset_valid

    def _train(self, X, y):
        """skorch's training run (callbacks, history) on validated data."""
        self.interrupted_ = False
        if self.lr_schedule is None:  # a constant rate is lr, also after an annealed run
            for group in self.optimizer_.param_groups:
                group["lr"] = self.lr
        try:
            super().partial_fit(X, y)
        except TrainingInterrupted as stop:
            self.interrupted_ = True
            warnings.warn(
                f"Training was interrupted after {stop.epochs_done} of {stop.epochs} epochs "
                "(KeyboardInterrupt); the classifier keeps the weights of that moment and "
                "interrupted_ is True (save_detector refuses it).",
                UserWarning,
                stacklevel=3,
            )
            raise stop.interrupt from None
        finally:
            self._set_training(False)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's training loop; a KeyboardInterrupt ends it and is raised again.

        skorch ends ``fit`` quietly on a KeyboardInterrupt, which would leave a
        half-trained classifier looking like a trained one.
        """
        start = len(self.history)
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as interrupt:
            done = sum("train_batch_count" in row for row in list(self.history)[start:])
            raise TrainingInterrupted(interrupt, done, epochs or self.max_epochs) from None

    def _validate_training_data(self, X, y, fit_params, reset, classes=None):
        self._check_params(self.get_params(deep=False))
        if fit_params:
            raise fit_params_error(type(self).__name__, fit_params)
        X, y = validate_data(self, X, y, reset=reset, **X_VALIDATION)
        X = float32_rows(X)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is {y_type}; found labels {np.unique(y).tolist()}."
            )
        if reset:
            labels = np.unique(y if classes is None else classes)
            if len(labels) != 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of 2 classes; got {len(labels)} "
                    f"class: {labels.tolist()}. Pass both labels (real and generated) or, "
                    "for partial_fit, the `classes` argument."
                )
            self.generated_label_ = self._generated_label(self.generated_label, labels)
            self._classes = labels
        self._check_known_labels(y)
        return X, y

    def _seeded(self, active=True):
        """Seed torch from ``random_state`` without touching the global RNG."""
        return seeded(self.random_state, self.device, active)

    # -------------------------------------------------- skorch building blocks

    def get_dataset(self, X, y=None):
        """The rows with their labels as given and encoded for the loss."""
        if is_dataset(X):
            return X
        targets = None if y is None else (y == self.classes_[1]).astype(np.float32)
        return FeatureDataset(X, y, targets)

    def get_iterator(self, dataset, training=False):
        """Batches sliced from tensors on ``device`` (see :class:`DeviceBatches`).

        Training batches are reshuffled every epoch; with BatchNorm, a trailing
        batch of one row is skipped (BatchNorm cannot normalise it), a
        different row each epoch. A plain skorch ``Dataset`` (as from skorch's
        ``predefined_split``) is checked and converted first.
        """
        if isinstance(dataset, Dataset) and not isinstance(dataset, FeatureDataset):
            X = float32_rows(validate_data(self, dataset.X, reset=False, **X_VALIDATION))
            y = None if dataset.y is None else np.asarray(dataset.y)
            if y is not None:
                self._check_known_labels(y)
            dataset = self.get_dataset(X, y)
        prefix = "iterator_train" if training else "iterator_valid"
        options = {"batch_size": self.batch_size_for(len(dataset), training),
                   **self.get_params_for(prefix)}
        if training:
            options.setdefault("shuffle", True)
            options.setdefault(
                "drop_last", self.batch_norm and len(dataset) % options["batch_size"] == 1
            )
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, device=self.device, **options)

    def batch_size_for(self, n_samples, training=True):
        """The batch size for ``n_samples`` rows: ``batch_size``, or what "auto" makes of it.

        Parameters
        ----------
        n_samples : int
            Number of rows trained (or predicted) on.
        training : bool, default=True
            Training batches; prediction batches change only speed.

        Returns
        -------
        int
        """
        if self.batch_size != "auto":
            return self.batch_size
        if not training:
            return MAX_AUTO_BATCH  # prediction: the size changes speed only
        return min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, n_samples // AUTO_BATCH_STEPS))

    def train_step_single(self, batch, **fit_params):
        """Forward, loss and backward on one batch.

        In SAM's second pass (at the perturbed weights) BatchNorm running
        statistics are left unchanged, so they track the weights that are kept.
        """
        if getattr(self.optimizer_, "second_pass", False):
            with frozen_batchnorm_stats(self.module_):
                return super().train_step_single(batch, **fit_params)
        return super().train_step_single(batch, **fit_params)

    def forward_iter(self, X, training=False, device="cpu"):
        """Batches of module output, in the order of the rows of ``X``.

        In evaluation the output is computed in float64: a float32 matrix
        product rounds differently depending on how many rows it multiplies,
        while in float64 a row's score does not depend on the batch it is
        predicted in. The float64 network is a copy local to this call (see
        :func:`~sklearn_clipdet.modules.float64_copy`), so prediction leaves
        the estimator as it was and may run in several threads at once. With
        ``training=True`` the network itself runs in training mode (dropout on).
        """
        self.check_is_fitted()
        batches = self.get_iterator(self.get_dataset(X), training=False)  # not shuffled
        if training:
            for rows, _ in batches:
                yield to_device(self.evaluation_step((rows, None), training=True), device)
            return
        network = float64_copy(self.module_)
        dtype = next(network.parameters()).dtype
        for rows, _ in batches:
            with torch.no_grad():  # not across the yield: the caller's grad mode is its own
                logits = network(rows.to(dtype)).reshape(-1)
            yield to_device(logits, device)
