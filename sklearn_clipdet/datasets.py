"""Load labelled real and generated images as DataFrames for the detector.

:func:`load_image_csv` reads a CSV manifest of images (paths, captions, labels) as
it is. The folder and D3 loaders return a :class:`pandas.DataFrame` with one row
per image and the columns

- ``image``: what :class:`~sklearn_clipdet.CLIPFeaturizer` reads (a file path
  for :func:`load_image_folder`, encoded bytes for :func:`load_d3`);
- ``text``: the caption or prompt, None when there is none;
- ``label``: 1 for a generated image, 0 for a real one;
- ``group``: where the image comes from (generator or sub-folder), for
  :class:`~sklearn.model_selection.GroupKFold` or
  :class:`~sklearn.model_selection.LeaveOneGroupOut`.

``X = frame[["image", "text"]]`` and ``y = frame["label"]`` feed a detector
pipeline directly.
"""

import functools
import io
import itertools
import numbers
import os
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pandas as pd

from ._images._reading import open_limited
from ._manifests import load_image_csv
from ._utils._validation import preview
from .exceptions import ManifestRowError, NoClassFolderError

__all__ = [
    "D3_DATASET_ID",
    "FAKE_FOLDER_NAMES",
    "IMAGE_EXTENSIONS",
    "REAL_FOLDER_NAMES",
    "ManifestRowError",
    "NoClassFolderError",
    "list_images",
    "load_d3",
    "load_image_csv",
    "load_image_folder",
]

#: File name extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

#: Folder names that mark real images (compared case-insensitively).
#: ``0_real`` is the CNNDetection / UnivFD convention, ``nature`` GenImage's.
REAL_FOLDER_NAMES = ("real", "0_real", "nature", "authentic", "original")

#: Folder names that mark generated images (compared case-insensitively).
#: ``1_fake`` is the CNNDetection / UnivFD convention, ``ai`` GenImage's.
FAKE_FOLDER_NAMES = ("fake", "1_fake", "ai", "generated", "synthetic", "ai_generated")

#: Hugging Face id of the ELSA D3 data set.
D3_DATASET_ID = "elsaEU/ELSA_D3"

_COLUMNS = ["image", "text", "label", "group"]
_D3_GENERATORS = 4  # image_gen0 .. image_gen3
_D3_TEXT_COLUMNS = ("positive_prompt", "original_prompt")
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


# --- image folders ---------------------------------------------------------------------------


def load_image_folder(
    root,
    *,
    captions=None,
    caption_columns=("file_name", "text"),
    extensions=IMAGE_EXTENSIONS,
    real_names=REAL_FOLDER_NAMES,
    fake_names=FAKE_FOLDER_NAMES,
    group_from="folder",
):
    """Load a folder of real and generated images, labelled by sub-folder name.

    Every image below ``root`` is labelled by the nearest class folder on its
    path: a folder named like one of ``real_names`` (label 0) or ``fake_names``
    (label 1). The supported layouts include::

        root/real/*.jpg, root/fake/*.png            (also ai/, generated/, ...)
        root/0_real/..., root/1_fake/...            (CNNDetection, UnivFD)
        root/fake/<generator>/*.png, root/real/<source>/*.jpg
        root/<generator>/[<category>/]0_real/..., root/<generator>/.../1_fake/...
        root/<generator>/train/nature/..., root/<generator>/train/ai/... (GenImage)

    Parameters
    ----------
    root : str or path-like
        Top folder of the data set.
    captions : str, path-like, DataFrame or None, default=None
        A CSV file (or a DataFrame) of captions, one row per image. Its
        ``caption_columns[0]`` column names the image, either by its path
        relative to ``root`` with ``/`` separators (``fake/sd14/001.png``) or by
        its bare file name (``001.png``) when that name is unique in the data
        set. Only empty cells count as missing captions. The file may lie inside
        ``root``: it is not an image, so it is ignored as a sample.
    caption_columns : tuple of (str, str), default=("file_name", "text")
        Names of the image column and the caption column of ``captions``. The
        default follows the ``metadata.csv`` convention of Hugging Face's
        ImageFolder.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name extensions read as images, case-insensitively. Other files,
        and hidden files and folders (names starting with ``.``), are ignored.
    real_names, fake_names : tuple of str
        Folder names (case-insensitive) that mark real and generated images.
    group_from : {"folder", "prefix"}, default="folder"
        How the ``group`` column is made:

        - "folder": when the class folder lies below a top-level folder
          (``root/<generator>/.../1_fake``), that top-level folder, for real and
          generated images alike, so each generator keeps its own real images;
          when the class folder is at the top (``root/fake/...``), the first
          folder below it (``root/fake/<generator>/x.png`` gives
          ``"<generator>"``), or the class folder's own name for images directly
          inside it (``root/real/x.jpg`` gives ``"real"``).
        - "prefix": the file name up to its first underscore
          (``diffusion1_3.jpg`` gives ``"diffusion1"``), or the whole stem if it
          has none; for data sets that encode the source in file names.

    Returns
    -------
    frame : DataFrame
        Columns ``image`` (absolute file path, str), ``text`` (str, or None
        where there is no caption), ``label`` (int, 1 = generated, 0 = real) and
        ``group`` (str), one row per image, sorted by path relative to ``root``.

    Raises
    ------
    FileNotFoundError
        If ``root`` or the captions file does not exist.
    ValueError
        If no class folder is found, a path holds both a real and a fake class
        folder, no image is found, or the captions have missing columns,
        duplicated or ambiguous image names.

    Warns
    -----
    UserWarning
        When images lie outside any class folder (they are left out), when only
        one class is found, when captions match no image, and when captions are
        given but some images have none (a caption's presence could then leak
        the label).

    Examples
    --------
    >>> frame = load_image_folder("data/")  # doctest: +SKIP
    >>> X, y, groups = frame[["image", "text"]], frame["label"], frame["group"]
    """
    if group_from not in ("folder", "prefix"):
        raise ValueError(f"group_from must be 'folder' or 'prefix', got {group_from!r}.")
    root = Path(os.path.abspath(os.fspath(root)))
    if not root.exists():
        raise FileNotFoundError(f"Image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"Not a folder: {root}")

    extensions = _dotted_extensions(extensions)
    class_of = {name.lower(): 0 for name in real_names}
    class_of.update({name.lower(): 1 for name in fake_names})

    relpaths = _find_images(root, extensions)
    rows, relkeys, unlabelled = [], [], []
    for relpath in relpaths:
        row = _label_image(relpath, class_of, group_from)
        if row is None:
            unlabelled.append(relpath.as_posix())
        else:
            rows.append((str(root.joinpath(*relpath.parts)), *row))
            relkeys.append(relpath.as_posix())

    if not rows:
        _raise_no_class_folder(root, relpaths, real_names, fake_names, extensions)
    if unlabelled:
        warnings.warn(
            f"{len(unlabelled)} images under {root} are in no class folder and were left out "
            f"(e.g. {preview(unlabelled, limit=3)}).",
            UserWarning,
            stacklevel=2,
        )
    frame = pd.DataFrame(rows, columns=["image", "label", "group"])
    frame.insert(1, "text", pd.Series([None] * len(frame), dtype=object))
    if captions is not None:
        frame["text"] = _match_captions(captions, caption_columns, relkeys, frame["label"])

    labels = set(frame["label"])
    if len(labels) == 1:
        only = "real" if labels == {0} else "generated"
        warnings.warn(
            f"Only {only} images were found under {root}; a detector needs both classes.",
            UserWarning,
            stacklevel=2,
        )
    frame["label"] = frame["label"].astype("int64")
    return frame


def _find_images(root, extensions):
    """Relative paths (PurePosixPath) of the image files below ``root``, sorted.

    Links are followed within ``root`` only: a file or folder whose real path lies
    outside it is skipped, with a warning that names them, so that a link in a data
    folder cannot make the walk read (or score) files elsewhere on disk.
    """
    real_root = os.path.realpath(root)

    def inside(path):
        real = os.path.realpath(path)
        return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)

    found, outside = [], []
    seen_dirs = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen_dirs:  # a symlink loop, or a folder already read via a link
            dirnames[:] = []
            continue
        seen_dirs.add(real_dir)
        relative_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        kept = []
        for name in dirnames:
            if name.startswith("."):
                continue
            if inside(os.path.join(dirpath, name)):
                kept.append(name)
            else:
                outside.append(relative_dir / name)
        dirnames[:] = sorted(kept)  # a folder reached twice keeps the same path everywhere
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(extensions):
                if inside(os.path.join(dirpath, name)):
                    found.append(relative_dir / name)
                else:
                    outside.append(relative_dir / name)
    if outside:
        warnings.warn(
            f"{len(outside)} links under {root} point outside it and were skipped: "
            f"{preview([path.as_posix() for path in sorted(outside)])}. Copy the files into "
            "the folder to read them.",
            UserWarning,
            stacklevel=3,
        )
    return sorted(found, key=lambda path: path.parts)


def _label_image(relpath, class_of, group_from):
    """``(label, group)`` of an image from its relative path, or None without class folder."""
    folders = relpath.parts[:-1]
    matches = [
        (i, class_of[name.lower()]) for i, name in enumerate(folders) if name.lower() in class_of
    ]
    if not matches:
        return None
    if len({label for _, label in matches}) > 1:
        raise ValueError(
            f"Image {relpath.as_posix()!r} is inside both a real and a fake class folder; "
            "rename one of them or pass real_names / fake_names."
        )
    index, label = matches[-1]
    if group_from == "prefix":
        group = relpath.stem.split("_", 1)[0]
    elif index > 0:
        group = folders[0]
    elif len(folders) > 1:
        group = folders[1]
    else:
        group = folders[0]
    return label, group


def list_images(root, *, extensions=IMAGE_EXTENSIONS):
    """The image files below ``root``, sorted, as absolute paths: for unlabelled images.

    Files are found as :func:`load_image_folder` finds them (by extension,
    case-insensitively; hidden files and folders are skipped), whatever
    folders they are in.

    Parameters
    ----------
    root : str or path-like
        Top folder.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name extensions read as images.

    Returns
    -------
    list of str
        Absolute paths of the image files, sorted.
    """
    root = Path(os.path.abspath(os.fspath(root)))
    if not root.is_dir():
        raise NotADirectoryError(f"Not a folder: {root}")
    return _absolute(root, _find_images(root, _dotted_extensions(extensions)))


def _dotted_extensions(extensions):
    """Extensions as lower-case ``.ext`` strings (one string or a sequence given)."""
    if isinstance(extensions, str):
        extensions = (extensions,)
    return tuple("." + ext.lower().lstrip(".") for ext in extensions)


def _absolute(root, relpaths):
    return [str(root.joinpath(*relpath.parts)) for relpath in relpaths]


def _raise_no_class_folder(root, relpaths, real_names, fake_names, extensions):
    if not relpaths:
        raise ValueError(f"No images found under {root} (extensions {', '.join(extensions)}).")
    folders = sorted({path.parts[0] for path in relpaths if len(path.parts) > 1})
    found = ", ".join(folders[:20]) if folders else "none (images lie directly in the folder)"
    raise NoClassFolderError(
        f"No class folder found under {root}. Top-level folders with images: {found}. "
        f"Accepted names for real images: {', '.join(real_names)}; for generated images: "
        f"{', '.join(fake_names)} (case-insensitive, at any depth). "
        "Pass real_names / fake_names for other names.",
        _absolute(root, relpaths),
    )


def _match_captions(captions, caption_columns, relkeys, labels):
    """Captions aligned with the images given by their relative paths (None where absent)."""
    table = _read_captions(captions, caption_columns)
    name_column, text_column = caption_columns

    by_path = {key: i for i, key in enumerate(relkeys)}
    name_counts = Counter(PurePosixPath(key).name for key in relkeys)
    by_name = {PurePosixPath(key).name: i for i, key in enumerate(relkeys)}

    texts = [None] * len(relkeys)
    matched_by = {}
    unmatched = []
    for raw_name, text in zip(table[name_column], table[text_column]):
        key = str(raw_name).strip().replace("\\", "/").removeprefix("./")
        if key in by_path:
            index = by_path[key]
        elif "/" not in key and name_counts.get(key, 0) > 1:
            raise ValueError(
                f"Caption file name {key!r} matches {name_counts[key]} images; "
                "use the path relative to the image folder instead."
            )
        elif "/" not in key and key in by_name:
            index = by_name[key]
        else:
            unmatched.append(key)
            continue
        if index in matched_by:
            raise ValueError(
                f"Two captions for the image {relkeys[index]!r} "
                f"(rows named {matched_by[index]!r} and {key!r})."
            )
        matched_by[index] = key
        texts[index] = None if pd.isna(text) else str(text)

    if unmatched:
        warnings.warn(
            f"{len(unmatched)} of {len(table)} captions match no image and were ignored "
            f"(e.g. {preview(unmatched, limit=3)}).",
            UserWarning,
            stacklevel=3,
        )
    missing = [i for i, text in enumerate(texts) if text is None]
    if missing:
        n_fake = int(sum(labels.iloc[i] for i in missing))
        warnings.warn(
            f"{len(missing)} of {len(texts)} images have no caption ({len(missing) - n_fake} real, "
            f"{n_fake} generated); if one class has captions more often, their presence "
            "leaks the label.",
            UserWarning,
            stacklevel=3,
        )
    return pd.Series(texts, dtype=object)


def _read_captions(captions, caption_columns):
    if isinstance(captions, pd.DataFrame):
        table, source = captions, "captions DataFrame"
    else:
        path = Path(os.fspath(captions))
        if not path.is_file():
            raise FileNotFoundError(f"Captions file not found: {path}")
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        source = f"captions file {path}"
    missing = [column for column in caption_columns if column not in table.columns]
    if missing:
        raise ValueError(
            f"The {source} lacks the column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(repr, map(str, table.columns)))}. Name the image and caption "
            "columns with caption_columns=(image_column, caption_column)."
        )
    return table


# --- ELSA D3 ---------------------------------------------------------------------------------


def load_d3(
    split="train",
    n_samples=None,
    *,
    streaming=True,
    real_images="download",
    generated_text="positive_prompt",
    download_timeout=10.0,
    n_download_threads=8,
    **load_kwargs,
):
    """Load samples of the ELSA D3 data set from the Hugging Face hub.

    D3 (``elsaEU/ELSA_D3``) pairs LAION images with images that four diffusion
    models made from their captions. Each D3 record gives one real image (only
    as the URL of the LAION original, which may no longer be reachable), its
    caption (``original_prompt``), the generation prompt (``positive_prompt``)
    and up to four generated images (``image_gen0`` .. ``image_gen3``) with the
    generator names (``model_gen0`` .. ``model_gen3``).

    Needs the network and the optional dependency ``datasets``
    (``pip install "sklearn-clipdet[d3]"``).

    Parameters
    ----------
    split : {"train", "validation"}, default="train"
        Split of D3 to read.
    n_samples : int or None, default=None
        Number of D3 records to read; each gives up to five rows (one real,
        four generated). None reads the whole split.
    streaming : bool, default=True
        Stream the records instead of downloading the whole split first
        (several hundred GB).
    real_images : {"download", "url", "skip"} or callable, default="download"
        How real images are obtained:

        - "download": fetch each URL (``n_download_threads`` at a time, each
          with ``download_timeout`` seconds); the image column holds the bytes.
        - "url": keep the URL string in the image column. The featurizer
          cannot read URLs: fetch them before featurizing.
        - "skip": leave real images out (only generated rows are returned).
        - a callable ``f(url)`` returning the image (bytes, PIL image or array)
          or None, called in threads like "download".

        Real images that cannot be fetched (None, an exception, or bytes that
        are not an image) are left out with a warning giving the count.
    generated_text : {"positive_prompt", "original_prompt"}, default="positive_prompt"
        Text of the generated images. Real images always carry their LAION
        caption (``original_prompt``); with "positive_prompt" the two classes
        carry differently made texts, which can leak the label. With
        "original_prompt" both classes share the same caption.
    download_timeout : float, default=10.0
        Seconds allowed to each real-image download.
    n_download_threads : int, default=8
        Threads fetching real images.
    **load_kwargs
        Passed to :func:`datasets.load_dataset` (e.g. ``cache_dir``,
        ``revision``, ``token``).

    Returns
    -------
    frame : DataFrame
        Columns ``image`` (encoded image bytes; URL strings for real images with
        ``real_images="url"``), ``text`` (str), ``label`` (int, 1 = generated,
        0 = real), ``group`` (the generator name from ``model_genK``, or
        ``"real"``) and ``id`` (the D3 record id, shared by a real image and the
        images generated from its caption: group by it to keep a prompt's
        images in one fold). Rows follow the stream: for each record, the real
        image first, then ``image_gen0`` .. ``image_gen3``.

    Warns
    -----
    UserWarning
        When real images could not be fetched, or records lack generated images.

    Examples
    --------
    >>> frame = load_d3("validation", n_samples=100)  # doctest: +SKIP
    >>> frame.groupby("group")["label"].agg(["count", "mean"])  # doctest: +SKIP
    """
    if generated_text not in _D3_TEXT_COLUMNS:
        raise ValueError(
            f"generated_text must be one of {_D3_TEXT_COLUMNS}, got {generated_text!r}."
        )
    if not (real_images in ("download", "url", "skip") or callable(real_images)):
        raise ValueError(
            f"real_images must be 'download', 'url', 'skip' or a callable, got {real_images!r}."
        )
    if n_samples is not None and (
        not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1
    ):
        raise ValueError(f"n_samples must be a positive int or None, got {n_samples!r}.")

    records = itertools.islice(_open_d3(split, streaming, load_kwargs), n_samples)
    rows, n_missing_generated = _d3_rows(
        records, generated_text, include_real=real_images != "skip"
    )
    if n_missing_generated:
        warnings.warn(
            f"{n_missing_generated} generated images were absent from the D3 records read.",
            UserWarning,
            stacklevel=2,
        )
    if real_images == "download":
        rows = _fetch_real_images(
            rows, functools.partial(_fetch_url, timeout=download_timeout), n_download_threads
        )
    elif callable(real_images):
        rows = _fetch_real_images(rows, real_images, n_download_threads)
    frame = pd.DataFrame(rows, columns=[*_COLUMNS, "id"])
    frame["label"] = frame["label"].astype("int64")
    return frame


def _open_d3(split, streaming, load_kwargs):
    """The D3 split as a (streamed) ``datasets`` data set with undecoded images."""
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "load_d3 needs the Hugging Face 'datasets' library: pip install \"sklearn-clipdet[d3]\""
        ) from error

    dataset = datasets.load_dataset(D3_DATASET_ID, split=split, streaming=streaming, **load_kwargs)
    needed = [
        "id",
        "original_prompt",
        "positive_prompt",
        "url",
        *(f"model_gen{k}" for k in range(_D3_GENERATORS)),
        *(f"image_gen{k}" for k in range(_D3_GENERATORS)),
    ]
    if dataset.column_names is not None:
        missing = [column for column in needed if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"The D3 data set lacks the expected column(s) {', '.join(missing)}; "
                f"it has {', '.join(dataset.column_names)}."
            )
        dataset = dataset.select_columns(needed)
    for k in range(_D3_GENERATORS):
        # keep the encoded bytes: smaller than decoded images, and hashable for the cache
        dataset = dataset.cast_column(f"image_gen{k}", datasets.Image(decode=False))
    return dataset


def _d3_rows(records, generated_text, include_real):
    """Rows ``[image, text, label, group, id]`` of D3 records; real images as URLs."""
    rows = []
    n_missing = 0
    for record in records:
        if include_real:
            rows.append([record["url"], record["original_prompt"], 0, "real", record["id"]])
        for k in range(_D3_GENERATORS):
            image = _encoded_image(record[f"image_gen{k}"])
            if image is None:
                n_missing += 1
                continue
            group = record[f"model_gen{k}"] or f"image_gen{k}"
            rows.append([image, record[generated_text], 1, group, record["id"]])
    return rows, n_missing


def _encoded_image(value):
    """Bytes (or a local path) of an undecoded ``datasets.Image`` value, None if absent."""
    if value is None:
        return None
    if value.get("bytes"):
        return value["bytes"]
    return value.get("path") or None


def _fetch_real_images(rows, fetch, n_threads):
    """Replace the URLs of real rows by fetched images; drop those that fail, with a warning."""
    real = [i for i, row in enumerate(rows) if row[2] == 0]
    if not real:
        return rows

    def fetch_one(url):
        try:
            return fetch(url), None
        except Exception as error:  # noqa: BLE001 - any failure drops the image, reported below
            return None, f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=max(1, n_threads)) as executor:
        results = list(executor.map(fetch_one, [rows[i][0] for i in real]))

    failed, reasons = set(), []
    for i, (image, reason) in zip(real, results):
        if image is None:
            failed.add(i)
            reasons.append(f"{rows[i][0]} ({reason or 'nothing returned'})")
        else:
            rows[i][0] = image
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(real)} real images could not be fetched and were left out "
            f"(e.g. {preview(reasons, limit=2)}).",
            UserWarning,
            stacklevel=3,
        )
    return [row for i, row in enumerate(rows) if i not in failed]


def _fetch_url(url, timeout=10.0):
    """Download an image; raise if the answer is not an image."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")  # never file://, ftp://, ...
    request = urllib.request.Request(url, headers={"User-Agent": "sklearn-clipdet"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read(_MAX_DOWNLOAD_BYTES + 1)
    if len(data) > _MAX_DOWNLOAD_BYTES:
        raise ValueError(f"larger than {_MAX_DOWNLOAD_BYTES} bytes")
    try:
        with open_limited(io.BytesIO(data), None) as image:  # raster formats only
            image.verify()
    except Exception as error:
        raise ValueError(f"the answer is not an image ({len(data)} bytes)") from error
    return data
