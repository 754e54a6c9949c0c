"""RobustMLPClassifier: the method's MLP, objective and optimiser as a skorch net."""

from contextlib import contextmanager
from numbers import Integral, Real
from types import MappingProxyType

import numpy as np
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNetBinaryClassifier
from skorch.callbacks import EpochTimer, LRScheduler, PassthroughScoring, PrintLog
from skorch.utils import to_numpy, to_tensor
from torch.func import functional_call
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import Dataset

from ._validation import check_finite_rows
from .losses import LOSSES, DetectorLoss
from .modules import DetectorMLP
from .optim import SAM, frozen_batchnorm_stats


class RobustMLPClassifier(NeuralNetBinaryClassifier):
    """MLP detector trained with a CVaR + pairwise-AUC loss under SAM.

    The defaults reproduce "Robust CLIP-Based Detector for Exposing Diffusion
    Model-Generated Images" (arXiv 2404.12908): three hidden blocks of 1536
    units (Linear, BatchNorm1d, LeakyReLU 0.01, Dropout 0.335), one logit, the
    loss ``gamma * CVaR_alpha(BCE) + (1 - gamma) * AUC`` and Sharpness-Aware
    Minimisation around AdamW with cosine learning-rate annealing.

    The estimator is a skorch :class:`~skorch.NeuralNetBinaryClassifier`, so
    skorch callbacks work, and it follows scikit-learn's conventions: any two
    class labels, ``classes_`` sorted, ``predict`` returns the original labels.
    The network is built at fit time for the number of input features.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(1536, 1536, 1536)
        Width of each hidden block.
    dropout : float in [0, 1), default=0.335
        Dropout probability after each hidden block.
    negative_slope : float, default=0.01
        LeakyReLU slope for negative inputs.
    batch_norm : bool, default=True
        Whether each hidden block uses BatchNorm1d.
    loss : {"cvar_auc", "bce", "cvar", "auc"}, default="cvar_auc"
        Training objective. ``"cvar_auc"`` is the method's; the others are
        single terms for ablations (``"bce"`` is the plain mean cross-entropy).
    alpha : float in (0, 1], default=0.8
        CVaR level: the loss averages the worst ``alpha``-fraction of each batch.
    gamma : float in [0, 1], default=0.5
        Weight of the CVaR term against the AUC term.
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
        Number of passes over the training data.
    batch_size : int, default=2048
        Mini-batch size for training and prediction. The AUC term compares all
        pairs within a batch, so small batches give a noisier objective.
    lr_schedule : {"cosine"} or None, default="cosine"
        ``"cosine"`` anneals the learning rate from ``lr`` to ``lr_min`` over
        ``max_epochs``; None keeps it constant.
    lr_min : float, default=1e-5
        Final learning rate of the cosine schedule.
    threshold : float in [0, 1], default=0.5
        Probability of ``classes_[1]`` above which :meth:`predict` returns it.
    callbacks : list of (str, skorch.callbacks.Callback) or None, default=None
        Extra skorch callbacks, e.g. early stopping or checkpoints.
    train_split : callable or None, default=None
        skorch's internal validation split, e.g. ``skorch.dataset.ValidSplit(5)``;
        None trains on all the data (scikit-learn's model selection tools then
        do the validation).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and dropout, so that two fits
        give identical results. The global torch random state is left as it was.
    device : str or torch.device, default="cpu"
        Torch device for training and prediction, e.g. ``"cuda"``.
    verbose : int, default=0
        Print a per-epoch log when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two class labels, sorted. The logit and ``predict_proba[:, 1]``
        refer to ``classes_[1]``: with labels 0/1 that is 1 (generated); with
        "fake"/"real" it is "real".
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when X was a DataFrame with string column names.
    module_ : DetectorMLP
        The trained network.
    history_ : skorch.history.History
        Per-epoch and per-batch training records.

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
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine"}), None],
        "lr_min": [Interval(Real, 0, None, closed="left")],
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "callbacks": [list, None],
        "train_split": [callable, None],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
    }

    # skorch's __init__ also records its bookkeeping state; scikit-learn expects
    # __init__ to store parameters only, so the unfitted values live here until
    # ``initialize`` sets them on the instance.
    initialized_ = False
    history_ = None
    virtual_params_ = MappingProxyType({})

    def __init__(
        self,
        hidden_layer_sizes=(1536, 1536, 1536),
        *,
        dropout=0.335,
        negative_slope=0.01,
        batch_norm=True,
        loss="cvar_auc",
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
        batch_size=2048,
        lr_schedule="cosine",
        lr_min=1e-5,
        threshold=0.5,
        callbacks=None,
        train_split=None,
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        super().__init__(
            module=DetectorMLP,
            criterion=DetectorLoss,
            optimizer=torch.optim.AdamW,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            callbacks=callbacks,
            threshold=threshold,
            verbose=verbose,
            device=device,
        )
        for name in ("history_", "initialized_", "virtual_params_"):
            vars(self).pop(name)
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.batch_norm = batch_norm
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
        self.lr_min = lr_min
        self.random_state = random_state

    # Parameters are those of __init__, as in scikit-learn (skorch would list
    # every public attribute, including the fixed module and optimiser).
    _get_param_names = classmethod(BaseEstimator._get_param_names.__func__)
    __repr__ = BaseEstimator.__repr__

    def set_params(self, **params):
        """Set parameters; before fit they are stored only and checked by ``fit``.

        Once the net is initialised, the components a parameter configures are
        rebuilt (the network for ``hidden_layer_sizes``, ``dropout``, ...; the
        loss for ``loss``, ``alpha``, ...; the optimiser for ``sam``,
        ``weight_decay``, ...), and ``lr`` is set on the live optimiser.
        """
        if self.initialized_:
            super().set_params(**params)
            # Rebuild what the new values configure, as skorch does for module__ params.
            if _MODULE_PARAMS.intersection(params):
                self._initialize_module()
                self._initialize_optimizer()
            if _CRITERION_PARAMS.intersection(params):
                self._initialize_criterion()
            if _OPTIMIZER_PARAMS.intersection(params):
                self._initialize_optimizer()
            for group in self.optimizer_.param_groups:
                # Lets the running learning-rate schedule go on with a rebuilt optimiser.
                group.setdefault("initial_lr", self.lr)
            return self
        plain = {key: value for key, value in params.items() if "__" not in key}
        BaseEstimator.set_params(self, **plain)
        nested = {key: value for key, value in params.items() if "__" in key}
        return super().set_params(**nested) if nested else self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    @property
    def classes_(self):
        if not hasattr(self, "_classes"):
            raise AttributeError(f"{type(self).__name__} has no classes_ before fit.")
        return self._classes

    @property
    def _default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
        ]
        if self.lr_schedule is not None:  # "cosine", the one schedule; checked in fit
            scheduler = LRScheduler(
                policy=CosineAnnealingLR, T_max=self.max_epochs, eta_min=self.lr_min
            )
            callbacks.append(("lr_scheduler", scheduler))
        callbacks.append(("print_log", PrintLog()))
        return callbacks

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, **fit_params):
        """Train the network from scratch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows (float32 or float64 arrays, DataFrames). NaN and inf
            are rejected.
        y : array-like of shape (n_samples,)
            Labels of exactly two classes.
        **fit_params : dict
            Passed to skorch's training loop.

        Returns
        -------
        self : RobustMLPClassifier
        """
        X, y_encoded = self._validate_training_data(X, y, reset=True)
        with self._seeded():
            self.initialize()
            # skorch's partial_fit runs the training loop on the validated data.
            super().partial_fit(X, y_encoded, **fit_params)
        return self

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training for ``max_epochs`` more epochs on (X, y).

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
            Passed to skorch's training loop.

        Returns
        -------
        self : RobustMLPClassifier
        """
        first_call = not self.initialized_
        X, y_encoded = self._validate_training_data(X, y, reset=first_call, classes=classes)
        with self._seeded(first_call):
            if first_call:
                self.initialize()
            super().partial_fit(X, y_encoded, **fit_params)
        return self

    def _validate_training_data(self, X, y, reset, classes=None):
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), type(self).__name__
        )
        sizes = self.hidden_layer_sizes
        if not all(isinstance(s, Integral) and s > 0 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must hold positive integers, got {sizes!r}."
            )
        X, y = validate_data(self, X, y, reset=reset, **_X_VALIDATION)
        _check_finite_rows(X)
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
            self._classes = labels
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"y holds labels {unknown.tolist()} that are not in classes_ "
                f"{self.classes_.tolist()}."
            )
        y_encoded = np.searchsorted(self.classes_, y).astype(np.float32)
        return np.require(X, np.float32, ["C", "W"]), y_encoded

    @contextmanager
    def _seeded(self, active=True):
        """Seed torch from ``random_state`` without touching the global RNG."""
        if self.random_state is None or not active:
            yield
            return
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        device = torch.device(self.device)
        cuda = [] if device.type != "cuda" else [
            device.index if device.index is not None else torch.cuda.current_device()
        ]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            yield

    # -------------------------------------------------- skorch building blocks

    def initialize_module(self):
        """Build the MLP for ``n_features_in_`` inputs."""
        self.module_ = DetectorMLP(
            n_features=self.n_features_in_,
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            dropout=self.dropout,
            negative_slope=self.negative_slope,
            batch_norm=self.batch_norm,
        )
        return self

    def initialize_criterion(self):
        """Build the objective selected by ``loss``."""
        self.criterion_ = DetectorLoss(
            loss=self.loss,
            alpha=self.alpha,
            gamma=self.gamma,
            margin=self.auc_margin,
            power=self.auc_power,
        )
        return self

    def initialize_optimizer(self, triggered_directly=None):
        """AdamW, wrapped in SAM unless ``sam=False``."""
        params = [p for _, p in self.get_all_learnable_params()]
        adamw = dict(lr=self.lr, betas=(0.9, 0.999), weight_decay=self.weight_decay)
        if self.sam:
            self.optimizer_ = SAM(
                params, torch.optim.AdamW, rho=self.sam_rho, adaptive=self.sam_adaptive, **adamw
            )
        else:
            self.optimizer_ = torch.optim.AdamW(params, **adamw)
        return self

    def train_step_single(self, batch, **fit_params):
        """Forward, loss and backward on one batch.

        In SAM's second pass (at the perturbed weights) BatchNorm running
        statistics are left unchanged, so they track the weights that are kept.
        """
        if getattr(self.optimizer_, "second_pass", False):
            with frozen_batchnorm_stats(self.module_):
                return super().train_step_single(batch, **fit_params)
        return super().train_step_single(batch, **fit_params)

    def get_iterator(self, dataset, training=False):
        """Shuffle training batches; skip a trailing batch of one sample.

        BatchNorm cannot normalise a batch of one sample. Since the batches are
        reshuffled every epoch, the skipped sample differs from epoch to epoch.
        """
        if not training:
            return super().get_iterator(dataset, training=False)
        kwargs = {"shuffle": True, "batch_size": self.batch_size}
        kwargs.update(self.get_params_for("iterator_train"))
        size = kwargs["batch_size"]
        kwargs.setdefault("drop_last", self.batch_norm and len(dataset) % size == 1)
        return self.iterator_train(dataset, **kwargs)

    def infer(self, x, **fit_params):
        """Module output; in evaluation mode computed in float64.

        A float32 matrix product rounds differently depending on how many rows
        it multiplies, so a sample's score would change with the batch it is
        predicted in. Evaluating in float64 makes scores batch-independent.
        """
        if self.module_.training:
            return super().infer(x, **fit_params)
        state = getattr(self, "_eval_weights", None) or _float64_state(self.module_)
        if state is None:  # no float64 on this device (Apple MPS)
            return super().infer(x, **fit_params)
        x = to_tensor(x, device=self.device).double()
        return functional_call(self.module_, state, (x,), fit_params).reshape(-1)

    def forward_iter(self, X, training=False, device="cpu"):
        """Batches of module output; the float64 weights are made once per call."""
        if training:
            yield from super().forward_iter(X, training=training, device=device)
            return
        self._eval_weights = _float64_state(self.module_)
        try:
            yield from super().forward_iter(X, training=training, device=device)
        finally:
            del self._eval_weights

    # --------------------------------------------------------------- prediction

    def decision_function(self, X):
        """Logit of ``classes_[1]`` for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if not isinstance(X, Dataset):  # skorch's scoring callbacks pass Datasets
            X = validate_data(self, X, reset=False, **_X_VALIDATION)
            _check_finite_rows(X)
            X = np.require(X, np.float32, ["C"])
        logits = self.forward(X, training=False)
        return to_numpy(logits).astype(np.float64).reshape(-1)

    def predict_proba(self, X):
        """Class probabilities, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        ndarray of shape (n_samples, 2)
        """
        positive = expit(self.decision_function(X))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        positive = self.predict_proba(X)[:, 1] > self.threshold
        return self.classes_[positive.astype(np.intp)]


_X_VALIDATION = dict(dtype=(np.float32, np.float64), ensure_all_finite=False)
_MODULE_PARAMS = {"hidden_layer_sizes", "dropout", "negative_slope", "batch_norm"}
_CRITERION_PARAMS = {"loss", "alpha", "gamma", "auc_margin", "auc_power"}
_OPTIMIZER_PARAMS = {"sam", "sam_rho", "sam_adaptive", "weight_decay"}


def _float64_state(module):
    """The module's parameters and buffers in float64, or None where float64 is missing."""
    if next(module.parameters()).device.type == "mps":
        return None
    return {
        name: tensor.double() if tensor.is_floating_point() else tensor
        for name, tensor in module.state_dict().items()
    }


def _check_finite_rows(X):
    check_finite_rows(
        X, "Input X", "Remove or impute these rows (a featurizer with on_error='nan' marks "
        "failed images this way)."
    )
