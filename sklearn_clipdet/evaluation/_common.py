"""Helpers shared by the evaluation modules (and the command line): labels, samples, scores,
figures."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.pipeline import Pipeline
from sklearn.utils import column_or_1d

from .._utils._files import atomic_write
from .._utils._optional import import_optional
from .._utils._validation import check_finite_rows


def binary_targets(y_true, pos_label=None):
    """Return ``(targets, pos_label)``: True for samples of the generated class, and its label.

    Raises a ValueError unless ``y_true`` holds exactly two labels and
    ``pos_label`` is one of them; None means 1 and needs 0/1, -1/1 or boolean
    labels.
    """
    y = column_or_1d(y_true, warn=True)
    labels = pd.unique(y)
    if len(labels) != 2:
        raise ValueError(
            f"y must hold exactly two classes (real and generated); found {len(labels)}: "
            f"{sorted(labels.tolist(), key=str)}."
        )
    if pos_label is None:
        if not set(labels.tolist()) <= {0, 1, -1} or 1 not in labels.tolist():
            raise ValueError(
                f"y has labels {sorted(labels.tolist(), key=str)}; pass pos_label, the "
                "label of generated images."
            )
        pos_label = 1
    if pos_label not in labels.tolist():
        raise ValueError(
            f"pos_label={pos_label!r} is not one of the labels "
            f"{sorted(labels.tolist(), key=str)}."
        )
    return np.asarray(y == pos_label, dtype=bool), pos_label


def generated_label(classifier):
    """The label of generated images for a fitted classifier.

    Its ``generated_label_`` when it has one (:class:`~sklearn_clipdet.RobustMLPClassifier`),
    else 1 (or True) for classifiers of 0/1, -1/1 or boolean labels; other labels raise a
    ValueError that asks for ``pos_label``, since nothing says which one is generated.
    """
    label = getattr(classifier, "generated_label_", None)
    if label is not None:
        return label
    return binary_targets(classifier.classes_, None)[1]


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


def split_images(X, image_column="image"):
    """Return ``(images, rebuild)``: the images of ``X`` as a list, and a function that
    puts a list of new images back into a container shaped like ``X`` (never ``X`` itself).
    """
    if isinstance(X, pd.DataFrame):
        if image_column not in X.columns:
            raise ValueError(
                f"X has no column {image_column!r} (columns: {list(X.columns)}); "
                "set image_column."
            )

        def rebuild_frame(new_images):
            out = X.copy()
            out[image_column] = pd.Series(_object_array(new_images), index=X.index, dtype=object)
            return out

        return X[image_column].tolist(), rebuild_frame
    if isinstance(X, pd.Series):
        return X.tolist(), lambda new: pd.Series(
            _object_array(new), index=X.index, name=X.name, dtype=object
        )
    if isinstance(X, (str, bytes, os.PathLike, Image.Image)) or not hasattr(X, "__len__"):
        raise TypeError(
            "X must be a DataFrame or a sequence of images (wrap a single image in a list), "
            f"got {type(X).__name__}."
        )
    if isinstance(X, np.ndarray) and X.dtype != object:
        if not (X.dtype == np.uint8 and X.ndim == 4):
            raise ValueError(
                f"A numeric array X must be a (n, H, W, C) uint8 stack of images, got dtype "
                f"{X.dtype} and shape {X.shape}; pass a list of arrays instead."
            )
    return list(X), list


def _object_array(items):
    # Filled one by one: numpy would otherwise turn PIL images into pixel arrays.
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


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
    """Write ``figure`` to ``path`` (format from the extension, e.g. ".png"); close it if asked.

    The file is written whole or not at all (:func:`~sklearn_clipdet._utils._files.atomic_write`).
    """
    image_format = Path(path).suffix.lstrip(".").lower() or None
    atomic_write(path, lambda tmp: figure.savefig(tmp, format=image_format, dpi=120))
    if close:
        import matplotlib.pyplot as plt

        plt.close(figure)  # a no-op for figures not made by pyplot


def fit_generated_label(pipe, labels):
    """The ``generated_label_`` that fitting ``pipe`` on ``labels`` gives its classifier."""
    classifier = pipe[-1] if isinstance(pipe, Pipeline) else pipe
    params = classifier.get_params(deep=False)
    if params.get("generated_label") is not None:
        return params["generated_label"]
    classes = np.unique(labels)
    if "generated_label" in params and len(classes) == 2:
        return classes[1]  # RobustMLPClassifier's rule; its fit warns for labels of words
    return None  # binary_targets takes 1 for 0/1 labels and asks for pos_label otherwise


def should_precompute(pipe, precompute_features):
    if precompute_features not in ("auto", True, False):
        raise ValueError(
            f"precompute_features must be 'auto', True or False, got {precompute_features!r}."
        )
    if not isinstance(pipe, Pipeline) or len(pipe.steps) < 2:
        if precompute_features is True:
            raise ValueError("precompute_features=True needs a Pipeline with feature steps.")
        return False
    if precompute_features == "auto":
        from ..featurizer import CLIPFeaturizer  # torch: only when asked

        return all(isinstance(step, CLIPFeaturizer) for _, step in pipe.steps[:-1])
    return precompute_features
