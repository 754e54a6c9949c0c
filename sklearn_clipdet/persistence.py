"""A safe file format for trained detectors: JSON configuration plus safetensors.

``joblib.dump`` works on every estimator of this library, but loading a pickle
runs arbitrary code. :func:`save_detector` writes one ``.safetensors`` file
that holds only tensors (the classifier's weights) and a JSON header (the
parameters of both steps, the classes, the backbone's identity); loading it
unpickles nothing, and takes from the file only settings it can check. The
CLIP backbone's weights are not stored: the loaded featurizer fetches them, as
on first use, from a source in open_clip's registry or from where the caller
says they are.
"""

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._constants import FEATURE_NEUTRAL_PARAMS
from ._utils._device import check_device, resolve_device
from ._utils._files import atomic_write
from ._version import __version__
from .classifier import RobustMLPClassifier
from .exceptions import DetectorFileError
from .featurizer import CLIPFeaturizer

FORMAT = "sklearn-clipdet-detector"
FORMAT_VERSION = 2  # 2: sklearn-clipdet 0.2 (new parameters; run-time settings not stored)
_HEADER_KEY = "sklearn_clipdet"
# Featurizer settings a file neither stores nor sets: where to cache, how many threads,
# which safety limits on image size apply are the loading user's choice.
# The featurizer settings a file leaves to the loading user: the machine's resources and
# output, and the limits on the images it reads. batch_size and device do not change
# features either, but are stored (the loader may replace them).
_CALLERS_SETTINGS = tuple(
    name for name, kind in FEATURE_NEUTRAL_PARAMS.items() if kind in ("machine", "limit")
)
_MODULE_PREFIX = "classifier.module."


def save_detector(detector, path):
    """Save a fitted detector without pickle.

    Parameters
    ----------
    detector : Pipeline or RobustMLPClassifier
        A fitted pipeline of :class:`CLIPFeaturizer` then
        :class:`RobustMLPClassifier` (as made by :func:`make_detector`), or a
        fitted classifier alone.
    path : str or path-like
        Output file, conventionally ending in ``.safetensors``. It is written
        to a temporary file in the same folder and renamed, so ``path`` is
        either complete or left as it was; its permissions follow the umask.

    Raises
    ------
    ValueError
        If the detector has another shape, is not fitted, was interrupted
        while training (``interrupted_``), or holds
        parameters that JSON cannot represent (callbacks, a ``train_split``
        object, a RandomState instance, labels other than str, int, float or
        bool).

    Notes
    -----
    The file records a SHA-256 checksum of its header and weights. It detects
    accidental damage (a truncated copy, flipped bits, a hand edit); it does
    not protect against a malicious author, who can write a matching
    checksum. Loading runs no code from the file whatever it holds, and
    refuses settings that would reach the file system or the network. The
    featurizer's run-time settings (``cache_dir``, ``num_workers``,
    ``max_image_pixels``, ``max_image_bytes``, ``verbose``) are not saved:
    they are the loading user's choice. ``image_layers="auto"`` is saved as
    the blocks it selects.
    """
    featurizer, classifier, step_names = _split_detector(detector)
    check_is_fitted(classifier)
    if getattr(classifier, "interrupted_", False):
        raise ValueError(
            "The classifier's last training was interrupted (KeyboardInterrupt), so its weights "
            "are half-trained; fit it again before saving."
        )
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
        backbone = featurizer.load_backbone()
        header["backbone"] = _backbone_identity(featurizer, backbone)
        header["featurizer"] = _json_params(featurizer)
        for name in _CALLERS_SETTINGS:
            del header["featurizer"][name]
        # The layers "auto" resolves to today, so that the file means the same features later.
        layers = backbone.image_layers(featurizer.image_layers)
        header["featurizer"]["image_layers"] = list(layers)
        # The loaded featurizer checks that it computes the same features.
        header["featurizer"]["backbone_fingerprint"] = header["backbone"]["fingerprint"]
    tensors = {
        _MODULE_PREFIX + name: tensor.detach().cpu().contiguous()
        for name, tensor in classifier.module_.state_dict().items()
    }
    broken = [name for name, tensor in tensors.items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ValueError(
            f"The classifier's weights are not finite ({', '.join(broken[:3])}): its training "
            "diverged, and load_detector would refuse the file. Fit it again."
        )
    header["checksum"] = _checksum(header, tensors)
    metadata = {_HEADER_KEY: json.dumps(header)}
    atomic_write(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def load_detector(path, *, device=None, model_name=None, pretrained=None):
    """Load a detector written by :func:`save_detector`, unpickling nothing.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`save_detector`.
    device : str or None, default=None
        Torch device for both steps ("auto" picks CUDA when available); None
        keeps the devices the detector was saved with (the CPU when a saved
        CUDA device is missing).
    model_name : str or None, default=None
        Where the featurizer gets its CLIP backbone, as for
        :class:`CLIPFeaturizer` (with ``pretrained``). None uses the source
        saved in the file, but only an open_clip architecture with a
        pretrained tag from open_clip's registry (such as ``"ViT-L-14"`` with
        ``"openai"``) or with ``pretrained=None``; a saved ``local-dir:`` or
        ``hf-hub:`` source or checkpoint file is refused, since a file should
        not choose what is read from disk or fetched from the network. Either
        way the featurizer checks that the backbone is the one the detector
        was trained with (its fingerprint) and warns when it is not.
    pretrained : str or None, default=None
        Pretrained tag or checkpoint file of ``model_name``; only with
        ``model_name``.

    Returns
    -------
    Pipeline or RobustMLPClassifier
        What was saved, fitted. A featurizer loads its CLIP backbone on first
        use; it has no ``cache_dir`` (set one with ``set_params``).

    Raises
    ------
    DetectorFileError
        If the file is not a safetensors file, is truncated, lacks part of the
        configuration or weights, its content does not match its checksum, or
        it holds settings that are invalid or not to be taken from a file
        (such as a backbone on disk).
    ValueError
        If ``device`` is not available here, or ``pretrained`` comes without
        ``model_name``.

    Warns
    -----
    UserWarning
        If the file was written by another version of sklearn-clipdet.

    Notes
    -----
    The SHA-256 checksum in the file detects accidental damage, not a
    malicious author (who can recompute it). Loading runs no code from the
    file and checks every setting and tensor shape before building anything.
    """
    path = Path(path)
    if pretrained is not None and model_name is None:
        raise ValueError(
            f"pretrained={pretrained!r} needs model_name: pass both to say where the "
            "backbone is."
        )
    if device is not None:
        check_device(device)
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
    # Each step keeps its saved device, unless told otherwise or this machine lacks it.
    classifier_params = header["classifier"]["params"]
    classifier_device = device or _usable_saved_device(path, classifier_params.get("device", "cpu"))
    if classifier_device is not None:
        classifier_params["device"] = resolve_device(classifier_device)
    if header["featurizer"] is not None:
        featurizer_params = header["featurizer"]
        featurizer_device = device or _usable_saved_device(path, featurizer_params.get("device",
                                                                                       "auto"))
        if featurizer_device is not None:
            featurizer_params["device"] = featurizer_device
        _fit_precision_to(path, featurizer_params,
                          resolve_device(featurizer_params.get("device", "auto")))
    classifier = _build_classifier(path, header["classifier"], tensors)
    if header["featurizer"] is None:
        return classifier
    featurizer_params = _featurizer_params(path, header["featurizer"], model_name, pretrained)
    try:
        featurizer = CLIPFeaturizer(**featurizer_params).fit(None)
    except (TypeError, ValueError) as exc:
        raise DetectorFileError(f"{path}: invalid featurizer settings: {exc}") from exc
    featurizer_name, classifier_name = header["steps"]
    return Pipeline([(featurizer_name, featurizer), (classifier_name, classifier)])


def _usable_saved_device(path, saved):
    """None to keep the saved device, or "cpu" (with a warning) when this machine lacks it."""
    try:
        kind = torch.device(resolve_device(saved)).type
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DetectorFileError(f"{path}: the saved device {saved!r} is not a torch device.") \
            from exc
    if kind not in ("cpu", "cuda", "mps"):
        raise DetectorFileError(f"{path}: the saved device {saved!r} is not one to run on.")
    try:
        check_device(saved)
    except ValueError:
        warnings.warn(
            f"{path} was saved for device {saved!r}, which this machine lacks; loading on the "
            "CPU.",
            UserWarning,
            stacklevel=3,
        )
        return "cpu"
    return None


def _fit_precision_to(path, featurizer_params, device):
    """On the CPU, compute the features of a detector saved with fp16/bf16 features in fp32."""
    precision = featurizer_params.get("precision")
    if torch.device(device).type == "cuda" or precision not in ("fp16", "bf16"):
        return
    warnings.warn(
        f"{path} computes its features in {precision}, which needs a GPU; on the CPU they are "
        f"computed in fp32 (on a GPU, fp32 and {precision} features agree to a cosine above "
        "0.999). The backbone's fingerprint covers the precision, so it is not checked.",
        UserWarning,
        stacklevel=3,
    )
    featurizer_params.update(precision="fp32", backbone_fingerprint=None)


def _featurizer_params(path, params, model_name, pretrained):
    """The saved featurizer settings, with a backbone source fit to use (see load_detector)."""
    params = dict(params)
    # Files of sklearn-clipdet 0.1 predate image_layers: their classifiers read the final
    # embedding.
    params.setdefault("image_layers", "final")
    saved_cache = params.get("cache_dir")  # files of version 1 may hold one
    for name in _CALLERS_SETTINGS:  # the cache, limits and resources are the loader's own
        params.pop(name, None)
    if saved_cache is not None:
        warnings.warn(
            f"{path} holds cache_dir={saved_cache!r}, which is ignored: a detector file does "
            "not choose where features are cached. Set clipfeaturizer__cache_dir yourself.",
            UserWarning,
            stacklevel=3,
        )
    if model_name is not None:
        params.update(model_name=model_name, pretrained=pretrained)
        return params
    saved = params.get("model_name"), params.get("pretrained")
    if not _registry_source(*saved):
        raise DetectorFileError(
            f"{path} was saved with the backbone model_name={saved[0]!r}, "
            f"pretrained={saved[1]!r}. load_detector takes from a file only open_clip "
            "architectures with a pretrained tag from open_clip's registry (or none); pass "
            "model_name=... (and pretrained=...) to load_detector, or --model/--pretrained "
            "to clipdet, to say where this backbone is. Its fingerprint is still checked."
        )
    return params


def _registry_source(model_name, pretrained):
    """Whether (model_name, pretrained) names an open_clip architecture and registry tag."""
    if not isinstance(model_name, str) or model_name not in open_clip.list_models():
        return False
    return pretrained is None or (
        isinstance(pretrained, str)
        and pretrained in open_clip.list_pretrained_tags_by_model(model_name)
    )


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
    if not all(isinstance(label, _LABEL_TYPES) for label in labels):
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


def _backbone_identity(featurizer, backbone):
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
_LABEL_TYPES = (str, int, float, bool)
# Step names that would be taken for the Pipeline's own parameters.
_PIPELINE_PARAMS = ("steps", "memory", "verbose", "transform_input")
_LABEL_DTYPE_KINDS = "biufU"
_LABEL_DTYPE_MAX_BYTES = 2**18


def _read_header(path, metadata):
    if _HEADER_KEY not in metadata:
        raise DetectorFileError(
            f"{path} is a safetensors file but not a sklearn-clipdet detector (no "
            f"{_HEADER_KEY!r} header)."
        )
    try:
        header = json.loads(metadata[_HEADER_KEY])
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of 5,000 digits
        raise DetectorFileError(f"{path}: the detector header is not valid JSON: {exc}") from exc
    _check_fields(path, header, _REQUIRED, "header")
    version = header["format_version"]
    if header["format"] != FORMAT or isinstance(version, bool) or not 0 < version <= FORMAT_VERSION:
        raise DetectorFileError(
            f"{path} holds format {header['format']!r} version {version!r}; "
            f"this sklearn-clipdet reads {FORMAT!r} versions 1 to {FORMAT_VERSION}."
        )
    _check_fields(path, header["classifier"], _REQUIRED_CLASSIFIER, "classifier section")
    steps = header["steps"]
    if header["featurizer"] is not None and not (
        isinstance(steps, list)
        and len(steps) == 2
        and all(isinstance(name, str) and name and "__" not in name
                and name not in _PIPELINE_PARAMS for name in steps)
        and steps[0] != steps[1]
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
    if params.get("callbacks") not in (None, []) or any(
            name.startswith("callbacks__") for name in params):
        raise DetectorFileError(f"{path}: a detector file holds no callbacks or their settings.")
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    # Files of sklearn-clipdet 0.1 predate these parameters and their defaults.
    params.setdefault("standardize", False)
    params.setdefault("batch_size", 2048)
    classes = _saved_classes(path, config)
    outside = sorted(name for name in tensors if not name.startswith(_MODULE_PREFIX))
    if outside:
        raise DetectorFileError(f"{path}: unexpected tensors {outside}.")
    state = {name[len(_MODULE_PREFIX) :]: tensor for name, tensor in tensors.items()}
    _check_hidden_layers(path, params.get("hidden_layer_sizes", ()), state)
    try:
        return RobustMLPClassifier(**params)._restore_fitted(
            classes=classes,
            n_features_in=config["n_features_in"],
            feature_names_in=config["feature_names_in"],
            state_dict=state,
        )
    except (AttributeError, KeyError, OverflowError, RecursionError, RuntimeError, TypeError,
            ValueError) as exc:
        raise DetectorFileError(f"{path}: invalid classifier settings: {exc}") from exc


def _check_hidden_layers(path, sizes, state):
    """Refuse hidden_layer_sizes that the saved weights do not have, before anything is built
    (a short header can claim a network of any size)."""
    weights = sorted(
        (name for name, tensor in state.items()
         if name.startswith("hidden.") and name.endswith(".weight") and tensor.ndim == 2),
        key=lambda name: int(name.split(".")[1]) if name.split(".")[1].isdigit() else -1,
    )
    widths = [int(state[name].shape[0]) for name in weights]
    if not isinstance(sizes, (tuple, list)) or len(sizes) != len(widths) or any(
            not isinstance(size, int) or size != width for size, width in zip(sizes, widths)):
        claimed = list(sizes)[:5] if isinstance(sizes, (tuple, list)) else sizes
        more = f" ... ({len(sizes)} in all)" if isinstance(sizes, (tuple, list)) and \
            len(sizes) > 5 else ""
        raise DetectorFileError(
            f"{path}: the saved weights have an unexpected shape for hidden_layer_sizes="
            f"{claimed}{more}: they hold {len(widths)} hidden layers of widths {widths[:5]}."
        )


def _saved_classes(path, config):
    """The saved labels as an array of the saved dtype, after checking both."""
    labels, dtype = config["classes"], config["classes_dtype"]
    kinds = {type(label) for label in labels}
    if len(labels) != 2 or len(kinds) != 1 or not kinds <= set(_LABEL_TYPES) or any(
        isinstance(label, float) and not math.isfinite(label) for label in labels
    ):
        raise DetectorFileError(
            f"{path}: classes must be two labels of one JSON type (string, integer, number "
            f"or boolean); got {labels!r}."
        )
    try:
        dtype = object if dtype == "object" else np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise DetectorFileError(f"{path}: classes_dtype {dtype!r} is not a dtype.") from exc
    if dtype is not object and (
        dtype.kind not in _LABEL_DTYPE_KINDS or dtype.itemsize > _LABEL_DTYPE_MAX_BYTES
    ):
        raise DetectorFileError(f"{path}: classes_dtype {dtype.str!r} cannot hold labels.")
    try:
        classes = np.array(labels, dtype=dtype)
    except (OverflowError, ValueError) as exc:
        raise DetectorFileError(
            f"{path}: classes {labels!r} do not fit classes_dtype {config['classes_dtype']!r}."
        ) from exc
    if classes.tolist() != labels:
        raise DetectorFileError(
            f"{path}: classes {labels!r} do not survive conversion to classes_dtype "
            f"{config['classes_dtype']!r}."
        )
    return classes
