"""Input checks shared by the estimators and the evaluation tools."""

import numpy as np

_PREVIEW = 10  # how many items a message lists


def preview(items, limit=_PREVIEW):
    """``"[a, b, c, ...]"``: the first ``limit`` items, for error and warning messages."""
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def check_finite_rows(values, what, advice):
    """Raise a ValueError naming the rows of ``values`` (1-D or 2-D) that hold NaN or inf.

    Parameters
    ----------
    values : array-like of shape (n_samples,) or (n_samples, n_features)
        Values to check.
    what : str
        How the message names ``values``, e.g. "Input X".
    advice : str
        What the user can do, appended to the message.
    """
    values = np.asarray(values)
    finite = np.isfinite(values)
    if finite.ndim > 1:
        finite = finite.all(axis=tuple(range(1, finite.ndim)))
    bad = np.flatnonzero(~finite)
    if bad.size:
        raise ValueError(
            f"{what} contains NaN or inf in {bad.size} row(s): {preview(bad)}. {advice}"
        )


def unread_rows(X):
    """Mask of the rows of ``X`` that are NaN throughout: how a featurizer with
    ``on_error="nan"`` marks the images it could not read."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0 or not np.issubdtype(X.dtype, np.floating):
        return np.zeros(len(X), dtype=bool)
    return np.isnan(X).all(axis=1)
