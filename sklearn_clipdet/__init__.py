"""Detect diffusion-generated images with frozen CLIP features and a robust MLP.

The estimators follow scikit-learn's API, so they compose into pipelines,
grid searches and cross-validation like any other estimator.
"""

from ._version import __version__
from .classifier import RobustMLPClassifier
from .featurizer import CLIPFeaturizer

__all__ = ["CLIPFeaturizer", "RobustMLPClassifier", "__version__"]
