"""Vocabularies and defaults shared by the library and the ``clipdet`` command.

This module imports nothing (no torch), so that the command line builds its
parser and ``clipdet --help`` from the library's own values without loading
the models. The estimators' signatures keep their defaults literally, as
scikit-learn's do; the tests check that they agree with the values here.
"""

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FEATURIZER_BATCH_SIZE",
    "DEFAULT_MAX_EPOCHS",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PRETRAINED",
    "FEATURE_NEUTRAL_PARAMS",
    "MAX_AUTO_BATCH",
    "MIN_AUTO_BATCH",
    "AUTO_BATCH_STEPS",
    "MODALITIES",
    "ON_ERROR",
    "PERTURBATIONS",
    "PRECISIONS",
]

# --- CLIPFeaturizer ---------------------------------------------------------------------------

#: Which embeddings a featurizer computes (its ``modalities``).
MODALITIES = ("image+text", "image", "text")
#: Numeric precisions of the CLIP model (its ``precision``).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: What to do with an unreadable image (its ``on_error``).
ON_ERROR = ("raise", "nan")
#: The default backbone: OpenAI's ViT-B/16, the one whose real features were measured here
#: and the shipped detector's (ViT-L/14, the paper's, was never measured on this project).
DEFAULT_MODEL_NAME = "ViT-B-16"
DEFAULT_PRETRAINED = "openai"
#: Images per CLIP forward pass.
DEFAULT_FEATURIZER_BATCH_SIZE = 32

#: The one list of featurizer parameters that never change the value of a feature,
#: each with what it decides instead:
#:
#: - "machine": resources and output of the machine that runs it (the loading user's
#:   choice; a detector file does not store them);
#: - "speed": how features are computed, not what (a detector file stores them);
#: - "check": the fingerprint a featurizer checks its backbone against;
#: - "failure": what happens to an unreadable image;
#: - "limit": which images count as unreadable (a distributed run records its
#:   failures, so it compares these across runs; a detector file leaves them to the
#:   loader).
#:
#: The feature cache keys its entries by what does change a stored vector (the
#: backbone's fingerprint, decoding, layers), so none of these enter its keys.
FEATURE_NEUTRAL_PARAMS = {
    "cache_dir": "machine",
    "num_workers": "machine",
    "verbose": "machine",
    "batch_size": "speed",
    "device": "speed",
    "backbone_fingerprint": "check",
    "on_error": "failure",
    "max_image_pixels": "limit",
    "max_image_bytes": "limit",
}

# --- RobustMLPClassifier ----------------------------------------------------------------------

#: Training epochs per call to fit.
DEFAULT_MAX_EPOCHS = 32
#: Training batch size: "auto" is ``n_samples // AUTO_BATCH_STEPS`` rows, clipped to
#: [MIN_AUTO_BATCH, MAX_AUTO_BATCH] (MAX_AUTO_BATCH also for prediction).
DEFAULT_BATCH_SIZE = "auto"
AUTO_BATCH_STEPS, MIN_AUTO_BATCH, MAX_AUTO_BATCH = 8, 64, 2048

# --- evaluation ------------------------------------------------------------------------------

#: Names of the perturbation families of ``evaluation.default_perturbations``, in order.
PERTURBATIONS = ("jpeg", "resize", "blur", "noise", "crop")
