"""A detector that works out of the box: the shipped, measured model.

Most people who need a detector of generated images have no training set. This module
ships one: a head trained on real CLIP ViT-B/16 features of photoreal sources (see the
model card in the documentation), loaded as a fitted :class:`~sklearn.pipeline.Pipeline`
that works with everything a trained detector works with.

The head was trained on features of a local copy of the OpenAI weights, which agrees with
the original to a cosine above 0.999 but not bit for bit, so a fingerprint of the weights
cannot tell a matching backbone. Instead, the file comes with the features of a few fixed
synthetic probe images; at load time the backbone the user gives encodes the same probes,
and a backbone whose features disagree is refused.
"""

from importlib.resources import files
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ._utils._files import atomic_write
from .exceptions import DetectorFileError
from .persistence import load_detector

__all__ = [
    "PRETRAINED_DETECTOR",
    "check_probes",
    "load_pretrained",
    "probe_images",
    "save_probes",
]

#: The shipped detector file (its probe features lie beside it, see :func:`probes_path`).
PRETRAINED_DETECTOR = Path(str(files("sklearn_clipdet") / "data" / "clipdet-vitb16.safetensors"))

#: Lowest cosine between a probe's stored features and the user's backbone's features that
#: counts as the same backbone. The local copy of the OpenAI weights and the original agree
#: above 0.999; another set of weights of the same architecture is far below.
MIN_PROBE_COSINE = 0.99

_PROBE_KEY = "probe_features"


def probe_images(n_images=4, size=(320, 256)):
    """Fixed synthetic images (uint8 arrays) whose features identify a backbone.

    Gratings, rings and a checkerboard in colour, computed without random
    numbers, so that they are the same on every machine and version.

    Parameters
    ----------
    n_images : int, default=4
        How many images.
    size : tuple of int, default=(320, 256)
        (width, height); larger than the model input, so that the resize
        view resizes and the tiles view cuts a native-resolution cell (one, for
        a 224-pixel input, repeated).

    Returns
    -------
    list of ndarray of shape (height, width, 3), dtype uint8
        The images, the same on every call.
    """
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    images = []
    for k in range(n_images):
        frequency = 2 * np.pi * (k + 2) / 64
        grating = np.sin(frequency * (xx * np.cos(k) + yy * np.sin(k)))
        rings = np.cos(frequency * 0.5 * np.hypot(xx - width / 3, yy - height / 2))
        checker = ((xx // (8 + 4 * k) + yy // (8 + 4 * k)) % 2) * 2 - 1
        channels = [grating, rings, checker * 0.5 + grating * 0.5]
        pixels = np.stack(channels[k % 3:] + channels[:k % 3], axis=-1)
        images.append(np.round(127.5 + 120 * pixels).astype(np.uint8))
    return images


def probes_path(detector_path):
    """Where the probe features of the detector file ``detector_path`` are kept."""
    detector_path = Path(detector_path)
    return detector_path.with_name(detector_path.stem + ".probes.safetensors")


def save_probes(detector, detector_path):
    """Write the features ``detector``'s featurizer gives the probe images beside its file.

    Parameters
    ----------
    detector : Pipeline
        A fitted detector whose featurizer runs the backbone the head was trained on.
    detector_path : str or path-like
        The detector file (written by :func:`~sklearn_clipdet.save_detector`);
        the probes go to :func:`probes_path` of it.
    """
    features = detector[:-1].transform(probe_images()).astype(np.float32)
    atomic_write(probes_path(detector_path), lambda temporary: save_file(
        {_PROBE_KEY: features}, str(temporary)))


def check_probes(detector, detector_path):
    """Raise unless ``detector``'s backbone gives the probe features stored for its file.

    Parameters
    ----------
    detector : Pipeline
        A loaded detector.
    detector_path : str or path-like
        Its file; the probe features are read from :func:`probes_path` of it.

    Returns
    -------
    cosines : ndarray of shape (n_probes,)
        Cosine between the stored and the computed features of each probe.

    Raises
    ------
    DetectorFileError
        When the probe file is missing or unreadable, or when a probe's
        cosine is under :data:`MIN_PROBE_COSINE`: the backbone is not the one the
        head was trained on, and its scores would mean nothing.
    """
    path = probes_path(detector_path)
    try:
        stored = load_file(str(path))[_PROBE_KEY]
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise DetectorFileError(f"{path}: no readable probe features ({exc}).") from exc
    computed = detector[:-1].transform(probe_images(len(stored)))
    if computed.shape != stored.shape:
        raise DetectorFileError(
            f"The backbone gives {computed.shape[1]} features per image, but the detector "
            f"{detector_path} was trained on {stored.shape[1]}: it is another model."
        )
    cosines = (computed * stored).sum(1) / (
        np.linalg.norm(computed, axis=1) * np.linalg.norm(stored, axis=1))
    if not np.all(cosines >= MIN_PROBE_COSINE):
        featurizer = detector[0]
        raise DetectorFileError(
            f"The backbone model_name={featurizer.model_name!r}, "
            f"pretrained={featurizer.pretrained!r} is not the one the detector "
            f"{Path(detector_path).name} was trained on: on fixed probe images its features "
            f"agree with the training backbone's to a cosine of {cosines.min():.3f} (at least "
            f"{MIN_PROBE_COSINE} is needed). Use OpenAI's CLIP ViT-B/16 (model_name='ViT-B-16', "
            "pretrained='openai') or a local copy of it (model_name='local-dir:FOLDER')."
        )
    return cosines


def load_pretrained(*, model_name="ViT-B-16", pretrained="openai", device=None,
                    path=PRETRAINED_DETECTOR):
    """The shipped detector, fitted, with its backbone checked.

    Parameters
    ----------
    model_name : str, default="ViT-B-16"
        Where the featurizer gets OpenAI's CLIP ViT-B/16, as for
        :class:`~sklearn_clipdet.CLIPFeaturizer`: the open_clip architecture
        (with ``pretrained="openai"``, downloaded on first use) or a
        ``"local-dir:FOLDER"`` copy of its weights.
    pretrained : str or None, default="openai"
        Pretrained tag of ``model_name``.
    device : str or None, default=None
        Torch device of both steps; None keeps the CPU the file names.
    path : str or path-like, default=PRETRAINED_DETECTOR
        A detector file with probe features beside it (the shipped one by
        default).

    Returns
    -------
    Pipeline
        A fitted pipeline of :class:`~sklearn_clipdet.CLIPFeaturizer` and
        :class:`~sklearn_clipdet.RobustMLPClassifier`: ``predict_proba``,
        the evaluation tools, ``save_detector``, ``clone`` and refitting work
        as with any trained detector.

    Raises
    ------
    DetectorFileError
        When the backbone's features disagree with those the head was
        trained on (see :func:`check_probes`).
    WeightsUnavailableError
        When the backbone's weights cannot be obtained (offline: use
        ``model_name="local-dir:FOLDER"``).

    Examples
    --------
    >>> from sklearn_clipdet.pretrained import load_pretrained
    >>> detector = load_pretrained()  # doctest: +SKIP
    >>> detector.predict_proba(["photo.jpg"])[:, 1]  # doctest: +SKIP
    """
    detector = load_detector(path, model_name=model_name, pretrained=pretrained, device=device)
    # The probes check the backbone; the fingerprint of the local copy the head was
    # trained on would refuse the original weights.
    detector[0].set_params(backbone_fingerprint=None)
    check_probes(detector, path)
    return detector
