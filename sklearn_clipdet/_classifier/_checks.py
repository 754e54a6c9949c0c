"""Checks of RobustMLPClassifier's parameters, input rows and saved weights."""

from numbers import Integral

import numpy as np
import torch
from skorch.callbacks import Callback

from .._utils._sklearn_compat import validate_parameter_constraints
from .._utils._validation import check_finite_rows

__all__ = [
    "X_VALIDATION", "check_param_name", "check_params", "check_state", "fit_params_error",
    "float32_rows", "positive_int",
]

# What configures each skorch component that the classifier fixes.
REPLACEMENTS = {
    "module": "the network is set by hidden_layer_sizes, dropout, negative_slope, "
    "batch_norm and standardize.",
    "criterion": "the loss is set by loss, alpha, gamma, auc_margin and auc_power.",
    "optimizer": "training uses AdamW (inside SAM when sam=True), set by lr, weight_decay, "
    "sam, sam_rho and sam_adaptive.",
    "iterator_train": "batches are sliced from tensors on the device; set batch_size or "
    "iterator_train__batch_size, __shuffle, __drop_last.",
    "iterator_valid": "batches are sliced from tensors on the device; set batch_size or "
    "iterator_valid__batch_size.",
    "dataset": "the rows are held in the classifier's own dataset.",
}


def check_params(params, constraints, owner):
    """Raise for a parameter in ``params`` with an invalid name or value.

    Parameters
    ----------
    params : dict
        All the classifier's parameters (``get_params(deep=False)``), with any
        new values.
    constraints : dict
        The classifier's ``_parameter_constraints``, nested options included.
    owner : str
        The class name, for messages.
    """
    for name in params:
        check_param_name(name, constraints, owner)
    validate_parameter_constraints(constraints, params, caller_name=owner)
    sizes = params["hidden_layer_sizes"]
    if not all(positive_int(size) for size in sizes):
        raise ValueError(f"hidden_layer_sizes must hold positive integers, got {sizes!r}.")
    for item in params["callbacks"] or []:
        callback = item[1] if isinstance(item, (tuple, list)) and len(item) == 2 else item
        if not (isinstance(callback, Callback)
                or isinstance(callback, type) and issubclass(callback, Callback)):
            raise ValueError(
                f"callbacks must hold skorch callbacks or (name, callback) pairs; got {item!r}."
            )
    train_batch = params.get("iterator_train__batch_size", params["batch_size"])
    if params["batch_norm"] and train_batch != "auto" and train_batch < 2:
        raise ValueError(
            f"A training batch of {train_batch} row cannot be normalised: batch_norm=True "
            "needs batch_size >= 2 (or iterator_train__batch_size >= 2). Use a larger "
            "batch or batch_norm=False."
        )


def check_param_name(name, constraints, owner):
    """Raise a ValueError for a name that is not a parameter, naming what to use instead.

    Accepted: the names in ``constraints`` and skorch's ``callbacks__*`` options.
    """
    component, _, option = name.partition("__")
    if name in constraints or (component == "callbacks" and option):
        return
    if component in ("iterator_train", "iterator_valid") and option:
        options = [key for key in constraints if key.startswith(component)]
        raise ValueError(
            f"{name} is not supported: {owner} slices its batches from tensors on the "
            f"device rather than through a DataLoader. Its {component} options are "
            f"{', '.join(options)}."
        )
    if component in REPLACEMENTS:
        raise ValueError(f"{name} is not a parameter of {owner}: {REPLACEMENTS[component]}")
    raise ValueError(
        f"Invalid parameter {name!r} for {owner}. Valid parameters are: "
        f"{sorted(p for p in constraints if '__' not in p)}, and skorch's "
        "iterator_train__*, iterator_valid__* and callbacks__* options."
    )


def positive_int(value):
    """Whether ``value`` is an integer (not a bool) above 0."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value > 0


def fit_params_error(owner, fit_params):
    """The TypeError for fit parameters, which the classifier does not take."""
    if "sample_weight" in fit_params:
        return TypeError(
            f"{owner} does not support sample_weight: the CVaR and pairwise AUC terms rank "
            "the rows of a batch, and weights have no agreed meaning there. Resample the "
            "training rows instead (e.g. sklearn.utils.resample)."
        )
    return TypeError(f"{owner}.fit takes X and y only; got {sorted(fit_params)}.")


#: How the classifier's ``validate_data`` reads feature rows: float32 or float64 as given,
#: NaN and inf left for :func:`float32_rows` to name by row.
X_VALIDATION = dict(dtype=(np.float32, np.float64), ensure_all_finite=False)


def float32_rows(X):
    """``X`` as C-ordered float32, after checking that no row holds NaN or inf, before
    or after the conversion."""
    with np.errstate(over="ignore"):
        rows = np.require(X, np.float32, ["C", "W"])
    if not np.isfinite(rows).all():  # NaN and inf survive the cast: name the culprits
        check_finite_rows(
            X, "Input X", "Remove or impute these rows. (A row NaN throughout, how a "
            "featurizer with on_error='nan' marks an image it could not read, is predicted "
            "as NaN, but cannot be trained on.)"
        )
        check_finite_rows(
            rows, "Input X, converted to float32,", "The classifier computes in float32, "
            "whose range ends near 3.4e38: rescale these features."
        )
    return rows


def check_state(state_dict, spec):
    """Raise a ValueError unless ``state_dict`` holds exactly the tensors ``spec`` describes
    (see :func:`~sklearn_clipdet.modules.state_spec`), all finite."""
    missing = sorted(set(spec) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(spec))
    if missing or unexpected:
        raise ValueError(
            f"the weights do not fit the configured network (missing {missing}, "
            f"unexpected {unexpected})."
        )
    wrong = [
        f"{name} {tuple(state_dict[name].shape)} {state_dict[name].dtype}"
        for name, (shape, dtype) in spec.items()
        if tuple(state_dict[name].shape) != shape or state_dict[name].dtype != dtype
    ]
    if wrong:
        raise ValueError(
            f"weights of unexpected shape or dtype for the configured network: {wrong}."
        )
    broken = [
        name for name, tensor in state_dict.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if broken:
        raise ValueError(f"weights holding NaN or inf: {broken}.")
    # Buffers that divide: a zero scale or negative variance gives NaN scores for every row.
    unusable = [
        name for name, tensor in state_dict.items()
        if (name.endswith("input_scale") and not (tensor > 0).all())
        or (name.endswith("running_var") and not (tensor >= 0).all())
    ]
    if unusable:
        raise ValueError(f"scales or variances that are not positive: {unusable}.")
