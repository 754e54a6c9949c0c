"""Loss landscapes around a fitted RobustMLPClassifier (Li et al., NeurIPS 2018).

The loss is evaluated at ``w + a * d1 + b * d2`` for random directions ``d1``,
``d2`` in weight space, scaled filter by filter to the norms of the trained
weights ("filter normalisation"), so that the surfaces of different networks
can be compared. Flat minima, which Sharpness-Aware Minimisation seeks, give
wide basins.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted
from torch.func import functional_call

from ._common import new_figure, save_figure

__all__ = ["LossLandscape", "loss_landscape", "plot_loss_landscape"]


@dataclass(frozen=True)
class LossLandscape:
    """Loss values on a line and on a plane through the trained weights.

    What :func:`loss_landscape` returns; its fields are its parameters.

    Parameters
    ----------
    coordinates : ndarray of shape (n_points,)
        Step sizes along each direction, from ``-span`` to ``span``.
    losses_1d : ndarray of shape (n_points,)
        Loss at ``w + coordinates[i] * d1``.
    losses_2d : ndarray of shape (n_points, n_points)
        Loss at ``w + coordinates[i] * d1 + coordinates[j] * d2`` in ``[i, j]``.
    center_loss : float
        Loss at the trained weights.
    """

    coordinates: np.ndarray
    losses_1d: np.ndarray
    losses_2d: np.ndarray
    center_loss: float


def loss_landscape(clf, X, y, *, n_points=21, span=1.0, batch_size=None, random_state=None):
    """Compute 1-D and 2-D filter-normalised loss surfaces around a fitted classifier.

    The loss is the classifier's own training objective (``criterion_``, e.g.
    CVaR + AUC), with the network in evaluation mode (dropout off, BatchNorm
    using its running statistics) and in float64. The classifier is not
    modified: the shifted weights are passed to the network functionally.

    Parameters
    ----------
    clf : RobustMLPClassifier
        A fitted classifier (it has ``module_``, ``criterion_`` and ``classes_``).
    X : array-like of shape (n_samples, n_features)
        Feature rows, e.g. the training features.
    y : array-like of shape (n_samples,)
        Their labels (from ``clf.classes_``).
    n_points : int, default=21
        Grid points per direction; the 2-D surface costs ``n_points ** 2``
        forward passes over ``X``.
    span : float, default=1.0
        The grid covers ``[-span, span]`` along each direction. A step of 1
        moves every filter by its own norm.
    batch_size : int or None, default=None
        Samples per loss evaluation, in the order of ``X``; None uses the
        classifier's training batch size for ``len(X)`` rows
        (``clf.batch_size_for(len(X))``, which resolves ``"auto"``), so the
        loss is the objective as trained. The CVaR and AUC terms are batch objectives (the AUC term
        compares all pairs in a batch: its cost grows with the square of the
        batch size); batch losses are averaged weighted by their size.
        ``len(X)`` evaluates the objective on the whole data at once.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions. The same seed gives the same directions for
        networks of the same shape (before filter normalisation), which makes
        surfaces comparable.

    Returns
    -------
    landscape : LossLandscape
        The grid: step sizes, the losses along one direction and on the plane
        of two, and the loss at the trained weights.

    Notes
    -----
    Each direction is drawn from a standard normal distribution; for every
    weight matrix each row (one output unit's filter) is rescaled to the norm
    of the same row of the trained weights. Biases and BatchNorm parameters
    get a zero direction, as in Li et al.'s ``ignore="biasbn"`` setting.
    """
    check_is_fitted(clf, "module_")
    if not isinstance(n_points, Integral) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2, got {n_points!r}.")
    if not isinstance(span, Real) or span <= 0:
        raise ValueError(f"span must be a positive float, got {span!r}.")
    if batch_size is not None and (not isinstance(batch_size, Integral) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}.")
    module = clf.module_
    device = next(module.parameters()).device
    features, targets = _check_data(clf, X, y, device)
    weights = {name: p.detach().to(torch.float64) for name, p in module.named_parameters()}
    buffers = {
        name: b.detach().to(torch.float64) if b.is_floating_point() else b.detach()
        for name, b in module.named_buffers()
    }
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    generator = torch.Generator().manual_seed(seed)
    first = _filter_normalized_direction(weights, generator)
    second = _filter_normalized_direction(weights, generator)
    # The CVaR and AUC terms depend on the batch: by default, the training batches' size.
    size = clf.batch_size_for(len(features)) if batch_size is None else batch_size

    def loss_at(a, b):
        state = {name: w + a * first[name] + b * second[name] for name, w in weights.items()}
        state.update(buffers)
        total = 0.0
        for start in range(0, len(features), size):
            rows = slice(start, start + size)
            logits = functional_call(module, state, (features[rows],)).reshape(-1)
            total += float(clf.criterion_(logits, targets[rows])) * len(logits)
        return total / len(features)

    coordinates = np.linspace(-span, span, n_points)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            center = loss_at(0.0, 0.0)
            line = np.array([loss_at(a, 0.0) for a in coordinates])
            plane = np.array([[loss_at(a, b) for b in coordinates] for a in coordinates])
    finally:
        module.train(was_training)
    return LossLandscape(coordinates, line, plane, center)


def plot_loss_landscape(
    clf,
    X,
    y,
    *,
    n_points=21,
    span=1.0,
    batch_size=None,
    random_state=None,
    ax=None,
    path=None,
    label=None,
    levels=15,
):
    """Compute the loss landscape of a fitted classifier and draw it.

    The left panel is the 1-D curve, the right one the contours of the 2-D
    surface. To compare two classifiers (e.g. trained with and without SAM),
    call it twice with the same ``random_state``, the same 1-D Axes and
    different 2-D Axes (and the same ``levels``).

    Parameters
    ----------
    clf : RobustMLPClassifier
        A fitted classifier, see :func:`loss_landscape`.
    X : array-like of shape (n_samples, n_features)
        Feature rows, e.g. the training features.
    y : array-like of shape (n_samples,)
        Their labels (from ``clf.classes_``).
    n_points : int, default=21
        Grid points per direction.
    span : float, default=1.0
        The grid covers ``[-span, span]`` along each direction.
    batch_size : int or None, default=None
        Samples per loss evaluation, see :func:`loss_landscape`.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions.
    ax : pair of matplotlib Axes or None, default=None
        ``(ax_1d, ax_2d)``; None makes a new figure.
    path : str, path-like or None, default=None
        Write the figure to this file (PNG by its extension).
    label : str or None, default=None
        Legend label of the curve and title of the contour plot.
    levels : int or array-like, default=15
        Contour levels, passed to :meth:`matplotlib.axes.Axes.contour`.

    Returns
    -------
    landscape : LossLandscape
        The computed grid values.
    """
    landscape = loss_landscape(
        clf, X, y, n_points=n_points, span=span, batch_size=batch_size,
        random_state=random_state,
    )
    own_figure = ax is None
    if own_figure:
        figure, (ax_1d, ax_2d) = new_figure(2, (4.2, 3.6), interactive=path is None)
    else:
        ax_1d, ax_2d = ax
        figure = ax_2d.figure
    name = label or type(clf).__name__
    ax_1d.plot(landscape.coordinates, landscape.losses_1d, label=name)
    ax_1d.set_xlabel("step along d1 (filter-normalised)")
    ax_1d.set_ylabel("loss")
    ax_1d.legend(fontsize="small")
    ax_1d.grid(alpha=0.3)
    contours = ax_2d.contour(
        landscape.coordinates, landscape.coordinates, landscape.losses_2d.T, levels=levels
    )
    ax_2d.clabel(contours, fontsize="x-small")
    ax_2d.plot([0], [0], marker="*", color="black")
    ax_2d.set_xlabel("d1")
    ax_2d.set_ylabel("d2")
    ax_2d.set_title(name)
    ax_2d.set_aspect("equal")
    if path is not None:
        save_figure(figure, path, close=own_figure)
    return landscape


def _filter_normalized_direction(weights, generator):
    direction = {}
    for name, w in weights.items():
        if w.dim() <= 1:
            direction[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64).to(w.device)
        rows_w = w.reshape(len(w), -1).norm(dim=1)
        rows_d = d.reshape(len(d), -1).norm(dim=1)
        scale = rows_w / rows_d.clamp_min(1e-12)
        direction[name] = d * scale.reshape(-1, *([1] * (w.dim() - 1)))
    return direction


def _check_data(clf, X, y, device):
    X = check_array(X, dtype=np.float64)
    if X.shape[1] != clf.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but the classifier was fitted on {clf.n_features_in_}."
        )
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}.")
    unknown = np.setdiff1d(y, clf.classes_)
    if unknown.size:
        raise ValueError(
            f"y holds labels {unknown.tolist()} that are not in classes_ {clf.classes_.tolist()}."
        )
    encoded = np.searchsorted(clf.classes_, y).astype(np.float64)
    return (torch.as_tensor(X, device=device),
            torch.as_tensor(encoded, device=device))
