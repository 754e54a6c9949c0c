"""Errors and warnings of sklearn-clipdet, defined in one place.

Catch these rather than broad exception types; each message names the sample,
file or setting at fault. This module imports nothing from the rest of the
package (nor torch), so catching an error costs no heavy import.
"""

__all__ = [
    "CommandError",
    "DetectorFileError",
    "FeatureCacheError",
    "ImageDecodeError",
    "ImageDecodeWarning",
    "ManifestRowError",
    "NoClassFolderError",
    "ShortcutWarning",
    "TrainingDivergedError",
    "WeightsUnavailableError",
]


class ImageDecodeError(ValueError):
    """An input sample could not be read as an image.

    Its parameters are kept as attributes of the same names.

    Parameters
    ----------
    index : int
        Position of the sample in the input.
    source : str
        Short description of the input (its path, or its kind and size).
    reason : str
        What is wrong.
    """

    def __init__(self, index, source, reason):
        self.index = index
        self.source = source
        self.reason = reason
        super().__init__(f"Sample {index} ({source}): {reason}")

    def __reduce__(self):
        return type(self), (self.index, self.source, self.reason)


class ImageDecodeWarning(UserWarning):
    """Some samples could not be read and were given NaN features."""


class WeightsUnavailableError(RuntimeError):
    """The model configuration or its weights could not be obtained.

    Parameters
    ----------
    message : str
        The full message, with advice.
    reason : str or None, default=None
        What went wrong, in one line, naming the model, tag, file or folder at
        fault, without advice (front ends such as the command line add their own);
        None means ``message``.
    offline_hint : bool, default=False
        True when weights on disk could help (a download failed, or open_clip
        failed for a reason not recognised here); False for a mistyped name,
        tag, file or folder.
    model_name : str or None, default=None
        The architecture or source that could not be loaded.
    pretrained : str or None, default=None
        Its pretrained tag or checkpoint file.

    Attributes
    ----------
    reason, offline_hint, model_name, pretrained
        As given (``reason`` filled in).
    """

    def __init__(self, message, reason=None, offline_hint=False, model_name=None,
                 pretrained=None):
        super().__init__(message)
        self.reason = message if reason is None else reason
        self.offline_hint = offline_hint
        self.model_name = model_name
        self.pretrained = pretrained


class FeatureCacheError(OSError):
    """The feature cache cannot be used: its file is damaged or read-only, or
    ``cache_dir`` is not a folder.

    The message names the path and what to do. The cache only holds features
    that can be computed again, so deleting its file loses nothing else.
    """


class DetectorFileError(ValueError):
    """A detector file is truncated, incomplete, damaged, not one at all, or holds
    settings that cannot be used as they are."""


class NoClassFolderError(ValueError):
    """A folder holds images, but none in a folder that names its class (real or generated).

    Parameters
    ----------
    message : str
        What is wrong and what to do.
    images : iterable of str, default=()
        The folder's images, as :func:`~sklearn_clipdet.datasets.list_images`
        gives them: for work that needs no labels.

    Attributes
    ----------
    images : list of str
        The folder's images.
    """

    def __init__(self, message, images=()):
        super().__init__(message)
        self.images = list(images)


class ManifestRowError(ValueError):
    """Rows of a CSV manifest of images that cannot be used as they are.

    The message names the file, the problem and the rows by their line in the
    file (the header is line 1).

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    rows : iterable of int
        Positions of the rows at fault among the data rows (0 for the first).
    problem : str
        What is wrong with them, e.g. "have no image".
    advice : str
        How to fix them in the file, e.g. "fill them in".
    lenient : bool, default=False
        True when ``on_error="nan"`` would accept these rows, as unreadable images.

    Attributes
    ----------
    path : str
        The CSV file.
    rows : list of int
        The rows at fault.
    lines : list of int
        Their line numbers in the file: ``row + 2``.
    problem, advice, lenient
        As given.
    """

    def __init__(self, path, rows, problem, advice, lenient=False):
        self.path = str(path)
        self.rows = [int(row) for row in rows]
        self.problem = problem
        self.advice = advice
        self.lenient = lenient
        shown = ", ".join(map(str, self.lines[:10])) + (", ..." if len(self.lines) > 10 else "")
        leniency = " or pass on_error='nan' to read them as unreadable images" if lenient else ""
        super().__init__(f"{self.path}: {len(self.rows)} row(s) {problem}: lines [{shown}]; "
                         f"{advice}{leniency}")

    @property
    def lines(self):
        return [row + 2 for row in self.rows]

    def __reduce__(self):
        return type(self), (self.path, self.rows, self.problem, self.advice, self.lenient)


class TrainingDivergedError(FloatingPointError):
    """Training produced non-finite weights (NaN or infinity): the classifier is unusable.

    Raised by :meth:`RobustMLPClassifier.fit` at the end of the epoch where it
    happened; a lower ``lr``, ``sam_rho`` or ``auc_power`` usually avoids it.
    """


class ShortcutWarning(UserWarning):
    """A trivial property separates real from generated images in the data."""


class CommandError(Exception):
    """A user-facing failure of the ``clipdet`` command: printed as one line, exit status 1.

    Parameters
    ----------
    message : str
        The line to print, after ``clipdet COMMAND: error:``.
    offline_hint : bool, default=False
        Ask for the command's advice on using weights on disk; kept as an
        attribute.
    """

    def __init__(self, message, offline_hint=False):
        super().__init__(message)
        self.offline_hint = offline_hint
