"""Detect diffusion-generated images with frozen CLIP features and a robust MLP.

The estimators follow scikit-learn's API, so they compose into pipelines,
grid searches and cross-validation like any other estimator.
"""

from ._version import __version__
from .classifier import RobustMLPClassifier
from .datasets import load_image_folder
from .featurizer import CLIPFeaturizer
from .persistence import load_detector, save_detector
from .pipeline import make_detector

__all__ = [
    "CLIPFeaturizer",
    "RobustMLPClassifier",
    "__version__",
    "load_detector",
    "load_image_folder",
    "make_detector",
    "save_detector",
]
