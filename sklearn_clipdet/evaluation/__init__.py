"""Evaluate detectors the way people who must trust them need.

- :mod:`~sklearn_clipdet.evaluation.metrics`: AUC, average precision,
  accuracy, TPR at a fixed FPR and EER with bootstrap confidence intervals;
- :mod:`~sklearn_clipdet.evaluation.perturbations` and
  :func:`robustness_report`: metrics under JPEG compression, resizing, blur,
  noise and cropping;
- :func:`cross_generator_report` and :class:`LeaveOneGeneratorOut`: generalisation to
  unseen generators, as a report and as a cross-validator for model selection;
- :func:`cross_source_report` and :func:`source_effects`: generalisation to unseen
  sources (leave one source out), and what training on each source does to the others;
- :func:`tile_scores` and :func:`plot_tile_scores`: a score for every native-resolution
  cell of an image, and its map;
- :func:`training_distance`: how far each image lies from the detector's training data;
- :func:`audit_shortcuts`: whether trivial properties (size, file format,
  captions, ...) separate the classes of a data set;
- :func:`plot_loss_landscape`: loss surfaces around the trained weights;
- :func:`score_images`: a detector's scores of every image, NaN for those it could not read.
"""

from .audit import ShortcutWarning, audit_shortcuts, estimate_jpeg_quality, image_properties
from .cross_generator import cross_generator_report
from .cross_source import cross_source_report, source_effects
from .explain import plot_tile_scores, tile_scores
from .landscape import LossLandscape, loss_landscape, plot_loss_landscape
from .metrics import (
    accuracy_at_threshold,
    bootstrap_metric,
    detection_report,
    equal_error_rate,
    tpr_at_fpr,
)
from .novelty import training_distance
from .perturbations import CenterCrop, GaussianBlur, GaussianNoise, JPEGCompress, Resize
from .robustness import default_perturbations, plot_robustness, robustness_report
from .scoring import score_images
from .splitters import LeaveOneGeneratorOut

__all__ = [
    "CenterCrop",
    "GaussianBlur",
    "GaussianNoise",
    "JPEGCompress",
    "LeaveOneGeneratorOut",
    "LossLandscape",
    "Resize",
    "ShortcutWarning",
    "accuracy_at_threshold",
    "audit_shortcuts",
    "bootstrap_metric",
    "cross_generator_report",
    "cross_source_report",
    "default_perturbations",
    "detection_report",
    "equal_error_rate",
    "estimate_jpeg_quality",
    "image_properties",
    "loss_landscape",
    "plot_loss_landscape",
    "plot_robustness",
    "plot_tile_scores",
    "robustness_report",
    "score_images",
    "source_effects",
    "tile_scores",
    "training_distance",
    "tpr_at_fpr",
]
