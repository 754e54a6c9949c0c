"""Detect diffusion-generated images with frozen CLIP features and a robust MLP.

The estimators follow scikit-learn's API, so they compose into pipelines,
grid searches and cross-validation like any other estimator. The public names
are imported on first use, so that ``clipdet --help`` and other light uses do
not pay for importing torch and open_clip.
"""

import importlib

from ._version import __version__

_EXPORTS = {
    "CLIPFeaturizer": ".featurizer",
    "PAPER_RECIPE": ".classifier",
    "RobustMLPClassifier": ".classifier",
    "load_detector": ".persistence",
    "load_image_csv": ".datasets",
    "load_image_folder": ".datasets",
    "make_detector": ".pipeline",
    "save_detector": ".persistence",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
