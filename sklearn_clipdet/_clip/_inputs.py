"""The featurizer's input: which samples are images and which are captions."""

import os
import warnings

import numpy as np
import pandas as pd
from PIL import Image

from .._images._reading import is_missing
from .._utils._validation import preview

__all__ = ["fill_missing_texts", "split_input"]


def split_input(featurizer, X):
    """Return ``(images, texts)`` of a featurizer's input ``X``: sequences, or None for a
    modality not given."""
    wants_image = "image" in featurizer.modalities
    wants_text = "text" in featurizer.modalities
    if isinstance(X, pd.DataFrame):
        images = texts = None
        if wants_image:
            if featurizer.image_column not in X.columns:
                raise ValueError(
                    f"X has no column {featurizer.image_column!r} (columns: {list(X.columns)}); "
                    "set image_column."
                )
            images = _column(X, featurizer.image_column, "image_column")
        if wants_text:
            if featurizer.text_column in X.columns:
                texts = _column(X, featurizer.text_column, "text_column")
            elif featurizer.default_text is None:
                raise ValueError(
                    f"X has no column {featurizer.text_column!r} (columns: {list(X.columns)}); "
                    "set text_column, default_text, or modalities='image'."
                )
        return images, texts
    if isinstance(X, (str, bytes, os.PathLike, Image.Image)) or not hasattr(X, "__len__"):
        raise TypeError(
            "X must be a DataFrame or a sequence of samples (wrap a single image or text "
            f"in a list), got {type(X).__name__}."
        )
    if isinstance(X, np.ndarray) and X.dtype == object and X.ndim != 1:
        if X.ndim != 2 or X.shape[1] != 1:
            raise ValueError(
                f"An object array X must hold one sample a row, with shape (n,) or (n, 1); got "
                f"shape {X.shape}. For images with captions pass a DataFrame with columns "
                f"{featurizer.image_column!r} and {featurizer.text_column!r}."
            )
        X = X[:, 0]  # one column, as df[["image"]].to_numpy() or a ColumnTransformer gives
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.dtype == np.uint8 and X.ndim == 4:
            X = list(X)  # a stack of (H, W, C) images
        elif X.ndim != 1:
            raise ValueError(
                f"A numeric array X must be a (n, H, W, C) uint8 stack of images, got dtype "
                f"{X.dtype} and shape {X.shape}; pass a list of arrays instead."
            )
    samples = X.tolist() if isinstance(X, (pd.Series, pd.Index)) else X
    if featurizer.modalities == "text":
        return None, samples
    if wants_text and featurizer.default_text is None:
        raise ValueError(
            "X is a plain sequence, so it has no captions, but modalities="
            f"{featurizer.modalities!r} asks for text; pass a DataFrame with a "
            f"{featurizer.text_column!r} column, set default_text, or use modalities='image'."
        )
    return samples, None


def _column(X, name, parameter):
    """Column ``name`` of DataFrame ``X`` as a list; one column, or a ValueError saying why not."""
    column = X[name]
    if isinstance(column, pd.DataFrame):  # duplicate names, or a level of MultiIndex columns
        raise ValueError(
            f"X has {column.shape[1]} columns under {name!r} ({list(column.columns)}), where "
            f"{parameter} must name exactly one: rename the duplicates, or, with MultiIndex "
            f"columns, set {parameter} to the full tuple of one column."
        )
    return column.tolist()


def fill_missing_texts(featurizer, texts, n_samples):
    """``texts`` (None: no captions) with ``default_text`` for the missing ones; a warning
    gives their count."""
    texts = [None] * n_samples if texts is None else list(texts)
    missing = []
    for i, text in enumerate(texts):
        if is_missing(text) or (isinstance(text, str) and not text.strip()):
            missing.append(i)
        elif not isinstance(text, str):
            raise TypeError(f"The text of sample {i} must be a str, got {type(text).__name__}.")
    if not missing:
        return texts
    if featurizer.default_text is None:
        raise ValueError(
            f"{len(missing)} of {n_samples} samples have no text (rows {preview(missing)}); "
            "set default_text to caption them, or use modalities='image'."
        )
    warnings.warn(
        f"default_text {featurizer.default_text!r} used for {len(missing)} of {n_samples} samples "
        "without text.",
        UserWarning,
        stacklevel=4,
    )
    for i in missing:
        texts[i] = featurizer.default_text
    return texts
