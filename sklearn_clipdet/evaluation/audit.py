"""Shortcut audit: can trivial properties of the images or captions tell the classes apart?

A detector can score perfectly on a data set whose real and generated images
differ in size, file format, JPEG quality or caption style, without looking at
content. :func:`audit_shortcuts` trains small cross-validated models on such
properties alone; a high AUC means the data set offers that shortcut.
"""

import functools
import io
import struct
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from PIL import ExifTags, Image
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from .._images import is_missing, load_source, open_limited, sample_errors
from ..exceptions import ShortcutWarning
from ._common import binary_targets, split_images

__all__ = ["ShortcutWarning", "audit_shortcuts", "estimate_jpeg_quality", "image_properties"]

_ORIENTATION = ExifTags.Base.Orientation
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SMALL = 10_000  # below this many samples the models run single-threaded (threads cost more)
_SINGLE_PROPERTIES = ["width", "height", "area", "aspect_ratio", "file_size", "bytes_per_pixel",
                      "jpeg_quality", "has_exif"]


def image_properties(X, *, image_column="image"):
    """Trivial properties of each image, read from the file header (pixels are not decoded).

    Parameters
    ----------
    X : DataFrame or sequence of images
        Images (file paths, bytes, PIL images or uint8 arrays), or a
        DataFrame whose ``image_column`` holds them.
    image_column : str, default="image"
        Column holding the images when ``X`` is a DataFrame.

    Returns
    -------
    properties : DataFrame
        One row per image with ``width`` and ``height`` (as displayed, after
        the EXIF orientation), ``area`` (pixels), ``aspect_ratio``
        (width / height), ``file_size`` (bytes of the encoded file; NaN for
        in-memory images), ``bytes_per_pixel``, ``format`` (e.g. "JPEG";
        "in-memory" for PIL images without one, "array" for arrays),
        ``jpeg_quality`` (:func:`estimate_jpeg_quality`; NaN for other
        formats) and ``has_exif``.

    Raises
    ------
    sklearn_clipdet.exceptions.ImageDecodeError
        If an image cannot be read; the message names its index.
    """
    images, _ = split_images(X, image_column)
    rows = []
    for index, item in enumerate(images):
        with sample_errors(index, item):
            rows.append(_properties(load_source(item)))
    columns = ["width", "height", "area", "aspect_ratio", "file_size", "bytes_per_pixel",
               "format", "jpeg_quality", "has_exif"]
    index = X.index if isinstance(X, (pd.DataFrame, pd.Series)) else None
    return pd.DataFrame(rows, columns=columns, index=index)


def estimate_jpeg_quality(image):
    """Estimate the quality setting a JPEG was saved with, from its quantisation tables.

    The luminance table is compared with the tables libjpeg writes for each
    quality 1..100 (the IJG scaling of the standard table); the closest one
    gives the estimate. Cameras and editors with their own tables get the
    nearest IJG quality.

    Parameters
    ----------
    image : PIL.Image.Image, bytes or str
        An opened JPEG image, its bytes, or its path.

    Returns
    -------
    quality : float
        Estimated quality in [1, 100]; NaN when the image is not a JPEG.

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=42)
    >>> estimate_jpeg_quality(buffer.getvalue())
    42.0
    """
    if not isinstance(image, Image.Image):
        source = load_source(image)
        image = open_limited(io.BytesIO(source), None) if isinstance(source, bytes) else None
        if image is None:
            return np.nan
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return np.nan
    luminance = np.asarray(tables[0], dtype=np.float64)
    distances = np.abs(_ijg_luminance_tables() - luminance).sum(axis=1)
    return float(np.argmin(distances) + 1)


def audit_shortcuts(
    X,
    y,
    *,
    image_column="image",
    text_column="text",
    cv=5,
    threshold=0.8,
    random_state=0,
    pos_label=None,
):
    """Cross-validated AUC of small models that see only trivial properties of each sample.

    Each property (pixel width, height, area, aspect ratio, file size, bytes
    per pixel, file format, JPEG quality, EXIF presence, all of them
    together, and, when ``X`` has captions, the caption text, its length and
    whether there is one) gets its own model: gradient-boosted trees for
    image properties, TF-IDF + logistic regression for caption text. An AUC
    near 0.5 means the property carries no label information; an AUC at or
    above ``threshold`` is flagged and a :class:`ShortcutWarning` is issued.

    Parameters
    ----------
    X : DataFrame or sequence of images
        Images, or a DataFrame with an ``image_column`` and optionally a
        ``text_column`` of captions.
    y : array-like of shape (n_samples,)
        True labels.
    image_column, text_column : str, default="image", "text"
        Columns of a DataFrame ``X``.
    cv : int or cross-validation splitter, default=5
        An int gives a shuffled :class:`~sklearn.model_selection.StratifiedKFold`
        with that many folds (fewer if a class is smaller).
    threshold : float in (0.5, 1], default=0.8
        AUC from which a property is flagged.
    random_state : int, RandomState instance or None, default=0
        Seeds the folds and the models.
    pos_label : int, str or None, default=None
        Label of generated images; None means 1.

    Returns
    -------
    audit : DataFrame
        One row per property with ``property``, ``auc`` (mean over the
        folds), ``auc_std``, ``median_real`` and ``median_generated`` (for
        single numeric properties), ``flagged`` and ``note`` (why a row has
        no AUC, or that a property is constant).

    Warns
    -----
    ShortcutWarning
        When any property is flagged.

    Examples
    --------
    >>> from sklearn_clipdet import load_image_folder
    >>> from sklearn_clipdet.evaluation import audit_shortcuts
    >>> data = load_image_folder("data/")  # doctest: +SKIP
    >>> audit_shortcuts(data, data["label"])  # doctest: +SKIP
    """
    targets, _ = binary_targets(y, pos_label)
    if len(targets) != len(X):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(targets)}.")
    if not isinstance(threshold, Real) or not 0.5 < threshold <= 1:
        raise ValueError(f"threshold must be in (0.5, 1], got {threshold!r}.")
    splitter = _splitter(cv, targets, random_state)
    properties = image_properties(X, image_column=image_column).reset_index(drop=True)
    format_columns = pd.get_dummies(properties["format"], prefix="format", dtype=float)
    everything = pd.concat(
        [properties.drop(columns="format").astype(float), format_columns], axis=1
    )
    with threadpool_limits(1 if len(targets) < _SMALL else None):
        rows = [
            _audit_numeric(name, properties[[name]], targets, splitter, random_state,
                           medians=True)
            for name in _SINGLE_PROPERTIES
        ]
        rows.append(_audit_numeric("format", format_columns, targets, splitter, random_state))
        rows.append(_audit_numeric("all_image_properties", everything, targets, splitter,
                                   random_state))
        if isinstance(X, pd.DataFrame) and text_column in X.columns:
            rows += _audit_captions(X[text_column].tolist(), targets, splitter, random_state)

    audit = pd.DataFrame(rows, columns=["property", "auc", "auc_std", "median_real",
                                        "median_generated", "note"])
    audit.insert(5, "flagged", audit["auc"] >= threshold)
    flagged = audit[audit["flagged"]]
    if not flagged.empty:
        found = ", ".join(f"{p} (AUC {a:.2f})" for p, a in zip(flagged["property"],
                                                               flagged["auc"]))
        warnings.warn(
            f"Trivial properties separate real from generated images: {found}. A detector "
            "can score well on this data without looking at image content; match these "
            "properties between the classes (resize, re-encode, neutral captions) before "
            "trusting its results.",
            ShortcutWarning,
            stacklevel=2,
        )
    return audit


# --- image properties ----------------------------------------------------------------------


def _properties(source):
    file_size = np.nan
    quality = np.nan
    if isinstance(source, bytes):
        file_size = float(len(source))
        image = open_limited(io.BytesIO(source), None)  # header only: no pixel limit needed
        image_format = image.format or "unknown"
    elif isinstance(source, Image.Image):
        image = source
        image_format = image.format or "in-memory"
    else:  # uint8 array
        height, width = source.shape[:2]
        return _row(width, height, file_size, "array", quality, False)
    if image_format == "JPEG":
        quality = estimate_jpeg_quality(image)
    exif = _header_exif(image, source if isinstance(source, bytes) else None)
    width, height = image.size
    if exif.get(_ORIENTATION, 1) in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return _row(width, height, file_size, image_format, quality, len(exif) > 0)


def _header_exif(image, data):
    """The EXIF of an opened image, read without decoding its pixels.

    PIL's PNG reader decodes the whole image to look for an eXIf chunk after the
    pixel data; that chunk is looked for in ``data``, the file's bytes, instead
    (a caller's PNG opened but not decoded gives what its header holds).
    """
    if image.format != "PNG" or "exif" in image.info:
        return image.getexif()  # read from the header by every other format
    header = Image.Image()  # an empty image holding the header's info: PIL's EXIF rules
    header.info = dict(image.info)
    trailing = _png_exif_chunk(data) if data is not None else None
    if trailing is not None:
        header.info["exif"] = trailing
    return header.getexif()


def _png_exif_chunk(data):
    """The content of the eXIf chunk of a PNG file's bytes, or None, found by walking the
    chunks' lengths (the pixel data is skipped, not read)."""
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"eXIf":
            return data[position + 8:position + 8 + length]
        if kind == b"IEND":
            return None
        position += 12 + length  # length and type, the data, its CRC
    return None


def _row(width, height, file_size, image_format, quality, has_exif):
    area = float(width * height)
    return [float(width), float(height), area, width / height, file_size, file_size / area,
            image_format, quality, float(has_exif)]


@functools.cache
def _ijg_luminance_tables():
    """Row q-1: the luminance quantisation table PIL/libjpeg writes at quality q."""
    tables = []
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.new("L", (8, 8)).save(buffer, "JPEG", quality=quality)
        tables.append(Image.open(buffer).quantization[0])
    return np.asarray(tables, dtype=np.float64)


# --- models --------------------------------------------------------------------------------


def _splitter(cv, targets, random_state):
    if not isinstance(cv, Integral) or isinstance(cv, bool):
        return cv
    smallest = int(min(targets.sum(), (~targets).sum()))
    if smallest < 2:
        raise ValueError(
            f"Cross-validation needs at least 2 samples of each class; the smaller class has "
            f"{smallest}."
        )
    return StratifiedKFold(min(int(cv), smallest), shuffle=True, random_state=random_state)


def _audit_numeric(name, values, targets, splitter, random_state, medians=False):
    values = values.astype(float)
    if medians:  # of a single numeric property, per class
        column = values.iloc[:, 0]
        medians = [column[~targets].median(), column[targets].median()]
    else:
        medians = [np.nan, np.nan]
    if values.isna().all().all():
        return [name, np.nan, np.nan, *medians, "not available for these inputs "
                "(in-memory images have no file; only JPEGs have a quality)"]
    # A property no image has (JPEG quality in a set of PNGs) says nothing; the model cannot
    # bin a column of NaN alone.
    values = values.loc[:, ~values.isna().all()]
    if len(values.drop_duplicates()) <= 1:
        return [name, 0.5, 0.0, *medians, "same value for every image"]
    model = HistGradientBoostingClassifier(
        max_iter=50, max_depth=3, min_samples_leaf=5, random_state=random_state
    )
    scores = cross_val_score(model, values.to_numpy(), targets, cv=splitter, scoring="roc_auc")
    return [name, scores.mean(), scores.std(), *medians, ""]


def _audit_captions(texts, targets, splitter, random_state):
    present = np.array([not is_missing(t) and str(t).strip() != "" for t in texts])
    if not present.any():
        return [["caption_text", np.nan, np.nan, np.nan, np.nan, "no captions in the data"]]
    documents = [str(t) if p else "" for t, p in zip(texts, present)]
    lengths = pd.DataFrame({"caption_length": [len(d.split()) for d in documents]})
    rows = []
    if not present.all():
        rows.append(_audit_numeric(
            "caption_present", pd.DataFrame({"present": present}), targets, splitter,
            random_state, medians=True,
        ))
    text_model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(max_iter=1000, random_state=random_state),
    )
    try:
        scores = cross_val_score(
            clone(text_model), np.asarray(documents, dtype=object), targets, cv=splitter,
            scoring="roc_auc", error_score="raise",
        )
        rows.append(["caption_text", scores.mean(), scores.std(), np.nan, np.nan, ""])
    except ValueError as exc:  # e.g. a fold whose captions hold no word
        rows.append(["caption_text", np.nan, np.nan, np.nan, np.nan,
                     f"text model failed: {exc}"])
    rows.append(_audit_numeric("caption_length", lengths, targets, splitter, random_state,
                               medians=True))
    return rows
