"""CSV manifests of images: the reader behind :func:`sklearn_clipdet.datasets.load_image_csv`.

Kept apart from ``datasets.py`` (image folders and the D3 loader), which re-exports it.
"""

import os
from pathlib import Path

import pandas as pd

from .exceptions import ManifestRowError

__all__ = ["load_image_csv"]

_ON_ERROR = ("raise", "nan")


def load_image_csv(path, *, on_error="raise"):
    """Load a CSV manifest of images: one row per image, with its caption and label if any.

    The file has an ``image`` column of image paths, relative to the CSV file's
    folder (absolute paths are kept), and optionally ``text`` (the caption),
    ``label`` (for example 1 = generated, 0 = real) and any other columns. It is
    what ``clipdet`` reads when given a ``.csv`` file instead of a folder.

    Only empty cells count as missing: a caption "NA" or an image named "null"
    stays as it is.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    on_error : {"raise", "nan"}, default="raise"
        Rows without an image, or naming an image file that does not exist:
        "raise" refuses them with :class:`~sklearn_clipdet.exceptions.ManifestRowError`,
        which names their lines; "nan" keeps them (``image`` None for an empty
        cell), for a :class:`~sklearn_clipdet.CLIPFeaturizer` with
        ``on_error="nan"`` to give them NaN features.

    Returns
    -------
    frame : DataFrame
        The file's columns, one row per data row, in order: ``image`` (str, the
        path joined to the CSV file's folder, or None), ``text`` when the file
        has it (str, or None where the cell is empty), the other columns as
        pandas reads them. ``frame[["image", "text"]]`` feeds a detector.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty, not CSV, has no ``image`` column or no rows.
    ManifestRowError
        With ``on_error="raise"``, for rows without an image or naming images
        that do not exist (a subclass of ValueError).

    See Also
    --------
    sklearn_clipdet.datasets.load_image_folder : Images labelled by their folders.

    Examples
    --------
    >>> from sklearn_clipdet.datasets import load_image_csv
    >>> frame = load_image_csv("data.csv")  # doctest: +SKIP
    >>> X, y = frame[["image", "text"]], frame["label"]  # doctest: +SKIP
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}.")
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        data = pd.read_csv(path, dtype={"image": str, "text": str}, keep_default_na=False,
                           na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except (ValueError, UnicodeDecodeError) as exc:
        first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise ValueError(f"{path} cannot be read as CSV: {first_line}") from exc
    if "image" not in data:
        raise ValueError(f"{path} has no 'image' column (columns: {list(data.columns)})")
    if data.empty:
        raise ValueError(f"{path} has a header but no rows")
    lenient = on_error == "nan"
    images = [None if pd.isna(item) or not item.strip() else item for item in data["image"]]
    empty = [i for i, item in enumerate(images) if item is None]
    if empty and not lenient:
        raise ManifestRowError(path, empty, "have no image", "fill them in", lenient=True)
    images = [None if item is None else str(path.parent / item) for item in images]
    absent = [i for i, item in enumerate(images) if item is not None and not os.path.exists(item)]
    if absent and not lenient:
        raise ManifestRowError(
            path, absent, f"name images that do not exist (first: {images[absent[0]]})",
            f"correct the paths (relative to {path.parent})", lenient=True,
        )
    data["image"] = pd.Series(images, dtype=object)
    if "text" in data:
        data["text"] = pd.Series([None if pd.isna(text) else text for text in data["text"]],
                                 dtype=object)
    return data
