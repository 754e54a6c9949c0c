"""The data argument of a command: a folder or a CSV manifest, read and checked."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import CommandError
from ._run import first_line


def read_data(source, *, need_labels, on_error):
    """The samples of a folder or CSV file, checked: images named, labels 0/1 of both classes.

    ``on_error`` is the command's --on-error ("raise" or "nan"), or None for a
    command without it.
    """
    from ..datasets import ManifestRowError, NoClassFolderError, load_image_csv, load_image_folder

    path = Path(source)
    if path.is_dir():
        with warnings.catch_warnings():
            # The labels are checked below, where the command needs them.
            warnings.filterwarnings("ignore", message="Only (real|generated) images were found")
            try:
                data = load_image_folder(path)
            except NoClassFolderError as exc:
                if need_labels:
                    raise CommandError(first_line(exc)) from exc
                # Images to score or featurize need no labels: every image of the folder.
                data = pd.DataFrame({"image": exc.images})
            except (ValueError, OSError) as exc:
                raise CommandError(first_line(exc)) from exc
    elif path.is_file() and path.suffix.lower() == ".csv":
        try:
            data = load_image_csv(path, on_error=on_error or "raise")
        except ManifestRowError as exc:
            lenient = (" or pass --on-error nan to give them an empty score"
                       if exc.lenient and on_error else "")
            raise rows_error(path, exc.rows, exc.problem, exc.advice + lenient) from None
        except (ValueError, OSError) as exc:
            raise CommandError(first_line(exc)) from exc
    else:
        raise CommandError(f"{source} is neither a folder of images nor a .csv file")
    if need_labels:
        _check_labels(data, source)
    return data


def rows_error(source, rows, problem, advice):
    """A CommandError naming the CSV lines of ``rows`` (the header is line 1)."""
    from .._utils._validation import preview

    lines = preview(row + 2 for row in rows)
    return CommandError(f"{source}: {len(rows)} row(s) {problem}: lines {lines}; {advice}")


def _check_labels(data, source):
    if "label" not in data:
        raise CommandError(f"{source} has no labels (need a 'label' column or class folders)")
    labels = pd.to_numeric(data["label"], errors="coerce")
    bad = np.flatnonzero(~labels.isin([0, 1]))
    if bad.size:
        raise rows_error(source, bad.tolist(), "have a label other than 0 (real) or 1 "
                         "(generated)", "fix them")
    data["label"] = labels.astype(int)
    present = set(data["label"])
    if len(present) < 2:
        only = "generated (1)" if present == {1} else "real (0)"
        raise CommandError(f"{source} holds only {only} images; training and evaluation need "
                           "both real (0) and generated (1) images")


def check_captions(data, source, modalities, default_text):
    """Refuse, before any work, images without a caption when the model reads captions and
    no --default-text fills them in."""
    if "text" not in modalities or default_text is not None:
        return
    texts = data["text"] if "text" in data else pd.Series([None] * len(data))
    missing = [i for i, text in enumerate(texts)
               if pd.isna(text) or (isinstance(text, str) and not text.strip())]
    if not missing:
        return
    advice = "pass --default-text TEXT to caption them, or --modalities image"
    if Path(source).is_dir():
        raise CommandError(f"{source}: {len(missing)} of {len(data)} images have no caption "
                           f"(--modalities {modalities}); {advice}")
    raise rows_error(source, missing, "have no caption (text)", f"fill them in, {advice}")


def model_input(data):
    """The columns of ``data`` a featurizer reads."""
    columns = ["image", "text"] if "text" in data else ["image"]
    return data[columns].reset_index(drop=True)
