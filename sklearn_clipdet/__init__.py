"""Detect diffusion-generated images with frozen CLIP features and a robust MLP.

The estimators follow scikit-learn's API, so they compose into pipelines,
grid searches and cross-validation like any other estimator.
"""

from .classifier import RobustMLPClassifier

__version__ = "0.1.0"

__all__ = ["RobustMLPClassifier", "__version__"]
