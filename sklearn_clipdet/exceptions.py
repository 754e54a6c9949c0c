"""Errors and warnings of sklearn-clipdet, importable from one place.

Catch these rather than broad exception types; each message names the sample,
file or setting at fault.
"""

from ._cache import FeatureCacheError
from ._images import ImageDecodeError, ImageDecodeWarning
from ._sources import WeightsUnavailableError
from .evaluation.audit import ShortcutWarning
from .persistence import DetectorFileError

__all__ = [
    "DetectorFileError",
    "FeatureCacheError",
    "ImageDecodeError",
    "ImageDecodeWarning",
    "ShortcutWarning",
    "WeightsUnavailableError",
]
