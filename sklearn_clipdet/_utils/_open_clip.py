"""open_clip internals this package relies on, imported in one place.

``parse_model_name``, ``MaybeToTensor`` and ``center_crop_or_pad`` are not
part of open_clip's documented API; should they move or change, this module
is the one place to adapt.
"""

from open_clip.factory import parse_model_name
from open_clip.transform import MaybeToTensor, center_crop_or_pad

__all__ = ["MaybeToTensor", "center_crop_or_pad", "parse_model_name"]
