"""A safe file format for trained detectors: JSON configuration plus safetensors.

``joblib.dump`` works on every estimator of this library, but loading a pickle
runs arbitrary code. :func:`save_detector` writes one ``.safetensors`` file
that holds only tensors (the classifier's weights) and a JSON header (the
parameters of both steps, the classes, the backbone's identity); loading it
unpickles nothing. The CLIP backbone's weights are not stored: the loaded
featurizer fetches them, as on first use, from its ``model_name`` and
``pretrained``.
"""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted

from ._backbone import resolve_device
from ._version import __version__
from .classifier import RobustMLPClassifier
from .featurizer import CLIPFeaturizer

FORMAT = "sklearn-clipdet-detector"
FORMAT_VERSION = 1
_HEADER_KEY = "sklearn_clipdet"
_MODULE_PREFIX = "classifier.module."


class DetectorFileError(ValueError):
    """A detector file is truncated, incomplete, tampered with, or not one at all."""


def save_detector(detector, path):
    """Save a fitted detector without pickle.

    Parameters
    ----------
    detector : Pipeline or RobustMLPClassifier
        A fitted pipeline of :class:`CLIPFeaturizer` then
        :class:`RobustMLPClassifier` (as made by :func:`make_detector`), or a
        fitted classifier alone.
    path : str or path-like
        Output file, conventionally ending in ``.safetensors``.

    Raises
    ------
    ValueError
        If the detector has another shape, is not fitted, or holds
        parameters that JSON cannot represent (callbacks, a ``train_split``
        object, a RandomState instance, labels other than str, int, float or
        bool).
    """
    featurizer, classifier, step_names = _split_detector(detector)
    check_is_fitted(classifier)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "steps": step_names,
        "featurizer": None,
        "backbone": None,
        "classifier": _classifier_config(classifier),
    }
    if featurizer is not None:
        header["backbone"] = _backbone_identity(featurizer)
        header["featurizer"] = _json_params(featurizer)
        # The loaded featurizer checks that it computes the same features.
        header["featurizer"]["backbone_fingerprint"] = header["backbone"]["fingerprint"]
    tensors = {
        _MODULE_PREFIX + name: tensor.detach().cpu().contiguous()
        for name, tensor in classifier.module_.state_dict().items()
    }
    header["checksum"] = _checksum(header, tensors)
    save_file(tensors, str(path), metadata={_HEADER_KEY: json.dumps(header)})


def load_detector(path, *, device=None):
    """Load a detector written by :func:`save_detector`, unpickling nothing.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`save_detector`.
    device : str or None, default=None
        Torch device for both steps ("auto" picks CUDA when available); None
        keeps the devices the detector was saved with.

    Returns
    -------
    Pipeline or RobustMLPClassifier
        What was saved, fitted. A featurizer loads its CLIP backbone on first use.

    Raises
    ------
    DetectorFileError
        If the file is not a safetensors file, is truncated, lacks part of the
        configuration or weights, or its weights do not match their checksum.

    Warns
    -----
    UserWarning
        If the file was written by another version of sklearn-clipdet.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No detector file at {path}.")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DetectorFileError(
            f"{path} is not a readable detector file (truncated or not safetensors): {exc}"
        ) from exc

    header = _read_header(path, metadata)
    if _checksum(header, tensors) != header["checksum"]:
        raise DetectorFileError(
            f"{path}: the configuration and weights do not match the checksum recorded when "
            "the file was written; the file was modified or damaged."
        )
    if header["library_version"] != __version__:
        warnings.warn(
            f"{path} was saved with sklearn-clipdet {header['library_version']}; this is "
            f"{__version__}. Check its predictions before relying on them.",
            UserWarning,
            stacklevel=2,
        )
    saved_device = header["classifier"]["params"].get("device", "cpu")
    if device is None and "cuda" in str(saved_device) and not torch.cuda.is_available():
        warnings.warn(
            f"{path} was saved for device {saved_device!r}, which this machine lacks; "
            "loading on the CPU.",
            UserWarning,
            stacklevel=2,
        )
        device = "cpu"
    if device is not None:
        header["classifier"]["params"]["device"] = resolve_device(device)
        if header["featurizer"] is not None:
            header["featurizer"]["device"] = device
    classifier = _build_classifier(path, header["classifier"], tensors)
    if header["featurizer"] is None:
        return classifier
    try:
        featurizer = CLIPFeaturizer(**header["featurizer"]).fit(None)
    except (TypeError, ValueError) as exc:
        raise DetectorFileError(f"{path}: invalid featurizer settings: {exc}") from exc
    featurizer_name, classifier_name = header["steps"]
    return Pipeline([(featurizer_name, featurizer), (classifier_name, classifier)])


# --------------------------------------------------------------------- saving


def _split_detector(detector):
    if isinstance(detector, RobustMLPClassifier):
        return None, detector, None
    steps = getattr(detector, "steps", None)
    if (
        isinstance(detector, Pipeline)
        and len(steps) == 2
        and isinstance(steps[0][1], CLIPFeaturizer)
        and isinstance(steps[1][1], RobustMLPClassifier)
    ):
        return steps[0][1], steps[1][1], [steps[0][0], steps[1][0]]
    raise ValueError(
        "save_detector takes a Pipeline of CLIPFeaturizer then RobustMLPClassifier (as made "
        f"by make_detector) or a RobustMLPClassifier; got {detector!r}. Use joblib for "
        "other estimators."
    )


def _json_params(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, torch.device):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        if not _is_json_value(value):
            raise ValueError(
                f"{type(estimator).__name__} parameter {name}={value!r} cannot be stored in "
                "the safe format (it holds only JSON values). Set it to None or a plain "
                "value before saving, or save with joblib."
            )
        params[name] = value
    return params


def _is_json_value(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_json_value(item) for item in value)
    return False


def _classifier_config(classifier):
    classes = classifier.classes_
    labels = classes.tolist()
    if not all(isinstance(label, (str, bool, int, float)) for label in labels):
        raise ValueError(
            f"Class labels {labels!r} cannot be stored in the safe format: use str, int, "
            "float or bool labels, or save with joblib."
        )
    names = getattr(classifier, "feature_names_in_", None)
    return {
        "params": _json_params(classifier),
        "classes": labels,
        "classes_dtype": classes.dtype.str if classes.dtype != object else "object",
        "n_features_in": int(classifier.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
    }


def _backbone_identity(featurizer):
    import open_clip

    backbone = featurizer.load_backbone()
    return {
        "model_name": featurizer.model_name,
        "pretrained": featurizer.pretrained,
        "open_clip_version": open_clip.__version__,
        "fingerprint": backbone.fingerprint,
        "image_dim": backbone.image_dim,
        "text_dim": backbone.text_dim,
    }


def _checksum(header, tensors):
    """SHA-256 of the header (without its checksum) and of every tensor."""
    digest = hashlib.sha256()
    content = {key: value for key, value in header.items() if key != "checksum"}
    digest.update(json.dumps(content, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -------------------------------------------------------------------- loading

_REQUIRED = {
    "format": str,
    "format_version": int,
    "library_version": str,
    "steps": (list, type(None)),
    "featurizer": (dict, type(None)),
    "backbone": (dict, type(None)),
    "classifier": dict,
    "checksum": str,
}
_REQUIRED_CLASSIFIER = {
    "params": dict,
    "classes": list,
    "classes_dtype": str,
    "n_features_in": int,
    "feature_names_in": (list, type(None)),
}


def _read_header(path, metadata):
    if _HEADER_KEY not in metadata:
        raise DetectorFileError(
            f"{path} is a safetensors file but not a sklearn-clipdet detector (no "
            f"{_HEADER_KEY!r} header)."
        )
    try:
        header = json.loads(metadata[_HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise DetectorFileError(f"{path}: the detector header is not valid JSON: {exc}") from exc
    _check_fields(path, header, _REQUIRED, "header")
    if header["format"] != FORMAT or header["format_version"] > FORMAT_VERSION:
        raise DetectorFileError(
            f"{path} holds format {header['format']!r} version {header['format_version']}; "
            f"this sklearn-clipdet reads {FORMAT!r} up to version {FORMAT_VERSION}."
        )
    _check_fields(path, header["classifier"], _REQUIRED_CLASSIFIER, "classifier section")
    if header["featurizer"] is not None and (
        not isinstance(header["steps"], list) or len(header["steps"]) != 2
    ):
        raise DetectorFileError(f"{path}: the header does not name the two pipeline steps.")
    return header


def _check_fields(path, section, required, where):
    if not isinstance(section, dict):
        raise DetectorFileError(f"{path}: the {where} is not a JSON object.")
    missing = sorted(set(required) - set(section))
    if missing:
        raise DetectorFileError(f"{path}: the {where} is incomplete; missing {missing}.")
    wrong = [key for key, kind in required.items() if not isinstance(section[key], kind)]
    if wrong:
        raise DetectorFileError(f"{path}: the {where} has fields of the wrong type: {wrong}.")


def _build_classifier(path, config, tensors):
    params = dict(config["params"])
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    try:
        classifier = RobustMLPClassifier(**params)
        validate_parameter_constraints(
            classifier._parameter_constraints, classifier.get_params(deep=False),
            caller_name="RobustMLPClassifier",
        )
    except (TypeError, ValueError) as exc:
        raise DetectorFileError(f"{path}: invalid classifier settings: {exc}") from exc
    dtype = object if config["classes_dtype"] == "object" else np.dtype(config["classes_dtype"])
    classifier._classes = np.array(config["classes"], dtype=dtype)
    classifier.n_features_in_ = config["n_features_in"]
    if config["feature_names_in"] is not None:
        classifier.feature_names_in_ = np.array(config["feature_names_in"], dtype=object)
    with classifier._seeded():
        classifier.initialize()

    state = {
        name[len(_MODULE_PREFIX) :]: tensor
        for name, tensor in tensors.items()
        if name.startswith(_MODULE_PREFIX)
    }
    expected = classifier.module_.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DetectorFileError(
            f"{path}: the weights do not fit the configured network "
            f"(missing {missing}, unexpected {unexpected})."
        )
    wrong_shape = [k for k in expected if expected[k].shape != state[k].shape]
    if wrong_shape:
        raise DetectorFileError(f"{path}: weights with unexpected shapes: {wrong_shape}.")
    classifier.module_.load_state_dict(state)
    classifier.module_.eval()
    return classifier
