"""Helpers shared by the evaluation modules: sample selection, scores, figures."""

import os

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .._optional import import_optional
from .._validation import check_finite_rows


def take(X, indices):
    """Rows ``indices`` of a DataFrame, Series, array or sequence, keeping the container type
    (a list for other sequences)."""
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.iloc[indices]
    if isinstance(X, np.ndarray):
        return X[indices]
    if isinstance(indices, slice):
        return list(X[indices])
    return [X[i] for i in indices]


def check_pipeline(pipe, name):
    """Raise unless ``pipe`` is a Pipeline of feature steps followed by a classifier."""
    if not isinstance(pipe, Pipeline) or len(pipe.steps) < 2:
        raise TypeError(
            f"{name} needs a Pipeline of a featurizer and a classifier (as made by "
            f"make_detector), got {type(pipe).__name__}."
        )


def positive_scores(estimator, X, pos_label):
    """Scores of ``pos_label`` by a fitted classifier: its probability when the estimator has
    ``predict_proba``, else its (signed) decision function."""
    classes = list(estimator.classes_)
    if pos_label not in classes:
        raise ValueError(
            f"The classifier was trained on labels {classes}, which do not include "
            f"pos_label={pos_label!r}."
        )
    column = classes.index(pos_label)
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(X))[:, column].astype(np.float64)
    decision = np.asarray(estimator.decision_function(X), dtype=np.float64).reshape(-1)
    return decision if column == 1 else -decision


def default_threshold(estimator):
    """0.5 for probabilities, 0 for decision values (see :func:`positive_scores`)."""
    return 0.5 if hasattr(estimator, "predict_proba") else 0.0


def check_finite_features(features, what):
    """Raise a ValueError naming the rows of ``features`` that hold NaN (unreadable images)."""
    check_finite_rows(
        features, f"The features of {what}",
        "They come from images the featurizer could not read; remove them first.",
    )


def new_figure(n_panels, panel_size, *, interactive, **subplot_kw):
    """A figure with ``n_panels`` side by side; returns ``(figure, axes)``, axes a 1-D array.

    Interactive figures come from pyplot (so they show in notebooks); the
    others are bare :class:`~matplotlib.figure.Figure` objects, which need no
    GUI backend and no global state.
    """
    size = (panel_size[0] * n_panels, panel_size[1])
    if interactive:
        plt = import_optional("matplotlib.pyplot", extra="plot", purpose="Plotting")
        figure, axes = plt.subplots(1, n_panels, figsize=size, squeeze=False, **subplot_kw)
    else:
        figure_module = import_optional("matplotlib.figure", extra="plot", purpose="Plotting")
        figure = figure_module.Figure(figsize=size)
        axes = figure.subplots(1, n_panels, squeeze=False, **subplot_kw)
    figure.set_layout_engine("constrained")
    return figure, axes[0]


def save_figure(figure, path, *, close):
    """Write ``figure`` to ``path`` (format from the extension); close it if asked."""
    figure.savefig(os.fspath(path), dpi=120)
    if close:
        import matplotlib.pyplot as plt

        plt.close(figure)  # a no-op for figures not made by pyplot
