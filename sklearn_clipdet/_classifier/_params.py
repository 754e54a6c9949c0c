"""The bridge between skorch's parameter names and the classifier's flat parameters.

skorch configures a net through its components (``module__*``,
``optimizer__*``, ...) and records every public attribute as a parameter;
:class:`~sklearn_clipdet.RobustMLPClassifier` fixes those components and
exposes flat parameters (``dropout``, ``sam_rho``, ...) instead, the way
scikit-learn lists them. :class:`SkorchParamsMixin` holds what makes the two
agree: the fixed components, the parameter names, ``set_params`` and its
effect on a fitted classifier, and the components built from the flat
parameters (network, loss, optimiser, callbacks).
"""

from numbers import Integral
from types import MappingProxyType

import torch
from sklearn.base import BaseEstimator
from skorch.callbacks import EpochTimer, PassthroughScoring
from torch.optim.lr_scheduler import CosineAnnealingLR

from .._utils._sklearn_compat import Interval
from ..losses import DetectorLoss
from ..modules import DetectorMLP
from ..optim import SAM
from ._batches import DeviceBatches, FeatureDataset
from ._callbacks import DivergenceCheck, PrintLog, RestartingLRScheduler
from ._checks import check_param_name, check_params

__all__ = ["SKORCH_OPTION_CONSTRAINTS", "SkorchParamsMixin"]

#: skorch's nested options that apply to the classifier's batches, with their constraints.
SKORCH_OPTION_CONSTRAINTS = {
    "iterator_train__batch_size": [Interval(Integral, 1, None, closed="left")],
    "iterator_train__shuffle": ["boolean"],
    "iterator_train__drop_last": ["boolean"],
    "iterator_valid__batch_size": [Interval(Integral, 1, None, closed="left")],
}

# Parameters of each component: a new value on a fitted classifier rebuilds it (the
# network's make the classifier unfitted).
_NETWORK_PARAMS = {"hidden_layer_sizes", "dropout", "negative_slope", "batch_norm", "standardize"}
_CRITERION_PARAMS = {"loss", "alpha", "gamma", "auc_margin", "auc_power"}
_OPTIMIZER_PARAMS = {"sam", "sam_rho", "sam_adaptive", "weight_decay"}
_SCHEDULE_PARAMS = {"lr_schedule", "lr_period", "lr_min", "max_epochs"}
# skorch __init__ arguments that the classifier fixes (class attributes below).
_SKORCH_FIXED = (
    "module", "criterion", "optimizer", "dataset", "iterator_train", "iterator_valid",
    "predict_nonlinearity", "compile", "use_caching", "torch_load_kwargs",
)


class SkorchParamsMixin:
    """Flat scikit-learn parameters on a skorch net whose components are fixed.

    Put it before the skorch net class in the bases. The class using it
    defines ``_parameter_constraints``, ``_generated_label`` and skorch's
    ``_initialize_*`` methods.
    """

    # skorch's components, fixed here: class attributes rather than
    # parameters, so that get_params lists what the classifier lets one set.
    module = DetectorMLP
    criterion = DetectorLoss
    optimizer = torch.optim.AdamW
    dataset = FeatureDataset
    iterator_train = DeviceBatches
    iterator_valid = DeviceBatches
    predict_nonlinearity = "auto"
    compile = False
    torch_load_kwargs = None
    # Scoring callbacks predict afresh and compare with the dataset's labels as
    # given; skorch's cached outputs would come with the encoded targets.
    use_caching = False
    # skorch's __init__ also records its bookkeeping state; scikit-learn expects
    # __init__ to store parameters only, so the unfitted values live here until
    # ``initialize`` sets them on the instance.
    initialized_ = False
    history_ = None
    virtual_params_ = MappingProxyType({})

    def _drop_skorch_state(self):
        """Remove what skorch's ``__init__`` stored besides the parameters (see above)."""
        for name in _SKORCH_FIXED + ("history_", "initialized_", "virtual_params_"):
            vars(self).pop(name, None)

    def _get_param_names(self):
        """The parameters of __init__, and the nested options set on this instance.

        skorch would list every public attribute, including the fixed module
        and optimiser; scikit-learn lists the signature only, so that ``clone``
        would drop ``iterator_train__drop_last`` and the like.
        """
        own = BaseEstimator._get_param_names.__func__(type(self))
        extra = [
            name for name in vars(self)
            if name not in own and not name.startswith("_") and not name.endswith("_")
        ]
        return sorted(own + extra)

    __repr__ = BaseEstimator.__repr__

    def set_params(self, **params):
        """Set parameters.

        Before fit they are stored only, and checked by ``fit``. On a fitted
        classifier they are checked at once (an invalid value raises and
        changes nothing), then the components they configure are rebuilt:
        the loss for ``loss``, ``alpha``, ...; the optimiser for ``sam``,
        ``weight_decay``, ...; the schedule for ``max_epochs``, ``lr_period``,
        ...; ``lr`` is set on the live optimiser. A new value of a network
        parameter (``hidden_layer_sizes``, ``dropout``, ``negative_slope``,
        ``batch_norm``, ``standardize``) makes the classifier unfitted, since its trained
        weights no longer fit its parameters.

        Parameters
        ----------
        **params : dict
            Parameter names (as :meth:`get_params` lists them, or skorch's
            nested options) and their new values.

        Returns
        -------
        self : RobustMLPClassifier
        """
        if not self.initialized_:
            known = self.get_params(deep=True)
            for name in params:
                if name not in known:
                    check_param_name(name, self._parameter_constraints, type(self).__name__)
            return self._store_params(params)

        current = self.get_params(deep=False)
        self._check_params({**current, **params})
        if "generated_label" in params:
            generated_label = self._generated_label(params["generated_label"], self.classes_)
        network_changed = any(
            name in _NETWORK_PARAMS and _network_value(name, params[name])
            != _network_value(name, current[name])
            for name in params
        )
        self._store_params(params)
        if network_changed:
            self._forget_training()
            return self
        if _CRITERION_PARAMS.intersection(params):
            self._initialize_criterion()
        if _OPTIMIZER_PARAMS.intersection(params):
            self._initialize_optimizer()
        if _SCHEDULE_PARAMS.intersection(params):
            self._initialize_callbacks()
        if "generated_label" in params:
            self.generated_label_ = generated_label
        return self

    def _store_params(self, params):
        iterator = {
            name: value for name, value in params.items()
            if name.startswith(("iterator_train__", "iterator_valid__"))
        }
        vars(self).update(iterator)  # skorch would rebuild a module for these
        others = {name: value for name, value in params.items() if name not in iterator}
        if not self.initialized_:  # store only; skorch would build the callbacks
            BaseEstimator.set_params(self, **{k: v for k, v in others.items() if "__" not in k})
            others = {name: value for name, value in others.items() if "__" in name}
        # skorch sets lr on the live optimiser, and callbacks__* on the callbacks.
        return super().set_params(**others) if others else self

    def _forget_training(self):
        """Return to the state of a new, unfitted classifier with the same parameters."""
        fresh = type(self)(**self.get_params(deep=False))
        vars(self).clear()
        vars(self).update(vars(fresh))

    def _check_params(self, params):
        check_params(params, self._parameter_constraints, type(self).__name__)

    # ------------------------------------ skorch components from the flat parameters

    @property
    def _default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("divergence_check", DivergenceCheck()),
        ]
        if self.lr_schedule is not None:  # "cosine", the one schedule; checked in fit
            scheduler = RestartingLRScheduler(
                policy=CosineAnnealingLR,
                T_max=self.max_epochs if self.lr_period is None else self.lr_period,
                eta_min=self.lr_min,
            )
            callbacks.append(("lr_scheduler", scheduler))
        callbacks.append(("print_log", PrintLog()))
        return callbacks

    def _network_params(self):
        """The arguments of :class:`DetectorMLP` besides ``n_features``."""
        return dict(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            dropout=self.dropout,
            negative_slope=self.negative_slope,
            batch_norm=self.batch_norm,
            standardize=self.standardize,
        )

    def initialize_module(self):
        """Build the MLP for ``n_features_in_`` inputs."""
        self.module_ = DetectorMLP(n_features=self.n_features_in_, **self._network_params())
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
        # foreach: one fused update over all tensors, also on CPUs (torch uses it on GPUs).
        adamw = dict(lr=self.lr, betas=(0.9, 0.999), weight_decay=self.weight_decay, foreach=True)
        if self.sam:
            self.optimizer_ = SAM(
                params, torch.optim.AdamW, rho=self.sam_rho, adaptive=self.sam_adaptive, **adamw
            )
        else:
            self.optimizer_ = torch.optim.AdamW(params, **adamw)
        return self


def _network_value(name, value):
    """A network parameter as the network sees it: a list of layer sizes equals the tuple."""
    if name == "hidden_layer_sizes" and isinstance(value, (list, tuple)):
        return tuple(value)
    return value
