"""Load open_clip models, place them on a device and precision, share them per process."""

import hashlib
import json
import logging
import os
import socket
import threading
import urllib.request
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import open_clip
import torch
from torchvision.transforms import Normalize, ToTensor

from .._constants import PRECISIONS
from .._utils._device import check_device, resolve_device
from .._utils._open_clip import MaybeToTensor, parse_model_name
from ._image_layers import encode_image_layers, layer_widths, resolve_image_layers
from ._sources import (
    WeightsUnavailableError,
    check_source,
    open_clip_logs_to_debug,
    source_files,
    weights_error,
)

__all__ = [
    "PRECISIONS",
    "Backbone",
    "WeightsUnavailableError",
    "check_device",
    "clear_backbone_cache",
    "load_backbone",
    "resolve_device",
]

_LOW_PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

logger = logging.getLogger("sklearn_clipdet._backbone")  # its name before the move

# Loaded models, most recently used last. Small, because CLIP models are large;
# a few entries let the clones made by a grid search share one model.
_CACHE_SIZE = 4
_cache = OrderedDict()
_cache_lock = threading.Lock()


def _canonical_source(model_name, pretrained):
    """Normalise (model_name, pretrained) so that equivalent settings compare equal."""
    schema, identifier = parse_model_name(model_name)
    if schema == "local-dir":
        return f"local-dir:{os.path.abspath(identifier)}", None
    if schema is not None:
        return model_name, None  # open_clip ignores `pretrained` for schema sources
    if pretrained and os.path.isfile(pretrained):
        pretrained = os.path.abspath(pretrained)
    return model_name, pretrained or None


@dataclass(eq=False)
class Backbone:
    """A loaded open_clip model with its preprocessing and tokenizer.

    Attributes
    ----------
    model : torch.nn.Module
        The CLIP model, in eval mode, gradients disabled.
    preprocess : callable
        open_clip's inference transform: RGB PIL image to a (3, H, W) tensor.
    tokenizer : callable
        open_clip's tokenizer: list of str to a (n, context_length) tensor.
    preprocess_cfg : dict
        open_clip's preprocessing configuration (size, mean, std, interpolation, resize_mode).
    device : torch.device
    precision : str
    image_dim, text_dim : int
        Sizes of the image and text embeddings.
    source_files : tuple or None
        Size, modification time and inode of the local files it was loaded
        from (see :func:`._sources.source_files`); None for a source known by name.
    """

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    preprocess_cfg: dict
    device: torch.device
    precision: str
    image_dim: int
    text_dim: int
    model_name: str
    pretrained: object
    source_files: tuple = field(default=None, repr=False)
    _fingerprint: str = field(default=None, repr=False)
    _pil_steps: list = field(default=None, repr=False)
    _mean_std: tuple = field(default=None, repr=False)
    _lock: object = field(default_factory=threading.Lock, repr=False)

    def preprocess_image(self, image):
        """Model input (3, H, W) float32 tensor for an RGB PIL image, as ``preprocess`` gives.

        The final to-tensor and normalisation steps run in numpy, which gives
        the same values as torchvision but does not start torch's thread pool,
        so images can be prepared in worker threads while the model runs.
        """
        if self._mean_std is None:
            return self.preprocess(image)
        for step in self._pil_steps:
            image = step(image)
        mean, std = self._mean_std
        pixels = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255)
        pixels = (pixels - mean) / std
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    @property
    def input_dtype(self):
        """dtype the image tower expects its input in."""
        return _LOW_PRECISION_DTYPES.get(self.precision, torch.float32)

    @property
    def image_size(self):
        """(height, width) of the model input."""
        size = self.preprocess_cfg["size"]
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def fingerprint(self):
        """A hash of everything that determines the embeddings this backbone returns.

        Covers the weights themselves (so a random initialisation or an
        overwritten checkpoint never matches a stale cache entry), precision,
        preprocessing and tokenizer. Computed once, on first use.
        """
        with self._lock:
            if self._fingerprint is None:
                self._fingerprint = _fingerprint(self.model, self)
            return self._fingerprint

    def image_layers(self, spec):
        """The image-tower layers ``spec`` selects on this model (see :mod:`._image_layers`)."""
        return resolve_image_layers(spec, self.model.visual)

    def image_widths(self, layers, layer_output="norm"):
        """Number of image features :meth:`encode_image` returns for each of ``layers``."""
        return layer_widths(self.model.visual, layers, layer_output, self.image_dim)

    def encode_image(self, pixels, layers=("final",), layer_output="norm"):
        """Image features (n, d) of a (n, 3, H, W) batch, not normalised.

        With the default ``layers`` these are the model's image embeddings;
        other layers (see :meth:`image_layers`) come from the same forward pass.
        Returns a float32 tensor on the model's device, without waiting for a
        GPU to compute it (``.cpu()`` waits).
        """
        with torch.inference_mode():
            pixels = pixels.to(self.device, dtype=self.input_dtype, non_blocking=True)
            if tuple(layers) == ("final",):
                return self.model.encode_image(pixels).float()
            return encode_image_layers(self.model.visual, pixels, layers, layer_output).float()

    def encode_text(self, tokens):
        """Text embeddings (n, d) of a (n, L) token batch, not normalised: a float32 tensor on
        the model's device, as :meth:`encode_image`."""
        with torch.inference_mode():
            return self.model.encode_text(tokens.to(self.device, non_blocking=True)).float()


def _check_precision(precision, device):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    is_cuda = torch.device(device).type == "cuda"
    if precision in _LOW_PRECISION_DTYPES and not is_cuda:
        raise ValueError(
            f"precision={precision!r} needs a CUDA device (device resolved to {device!r}); "
            "use precision='fp32' or 'int8' on CPU."
        )
    if precision == "int8" and is_cuda:
        raise ValueError(
            "precision='int8' (dynamic quantisation) runs on CPU only; use 'fp16' or 'bf16' on GPU."
        )


def _split_preprocess(preprocess):
    """Split open_clip's eval transform into PIL steps and the final (mean, std).

    Returns ``(steps, None)`` when the pipeline does not end with
    to-tensor and normalize, in which case the whole transform must be used.
    """
    steps = list(getattr(preprocess, "transforms", []))
    if (
        len(steps) >= 2
        and isinstance(steps[-1], Normalize)
        and type(steps[-2]) in (ToTensor, MaybeToTensor)
        and not steps[-1].inplace
    ):
        mean = np.asarray(steps[-1].mean, dtype=np.float32)
        std = np.asarray(steps[-1].std, dtype=np.float32)
        return steps[:-2], (mean, std)
    return steps, None


def _quantize_int8(model):
    """Dynamic int8 quantisation of the linear layers (torch.ao, CPU)."""
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; it works and is what we need here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor", category=UserWarning)
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    for module in model.modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            # open_clip reads the compute dtype from `weight.dtype` unless this is set.
            module.int8_original_dtype = torch.float32
    return model


def _fingerprint(model, backbone):
    digest = hashlib.blake2b(digest_size=20)
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(state[name].shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    tokenizer = backbone.tokenizer
    meta = {
        "precision": backbone.precision,
        "preprocess": backbone.preprocess_cfg,
        "tokenizer": [type(tokenizer).__name__, getattr(tokenizer, "context_length", None)],
        "open_clip": open_clip.__version__,
    }
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _check_download_reachable(model_name, pretrained, timeout=5.0):
    """Fail within seconds when a pretrained tag must be downloaded from an unreachable host.

    Without this check open_clip first builds the model, then the Hugging Face
    client retries the download with back-off: close to a minute before the
    error. Weights already in the Hugging Face cache skip the check.
    """
    if parse_model_name(model_name)[0] is not None or not pretrained:
        return
    if os.path.isfile(pretrained) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return
    if urllib.request.getproxies():
        return  # only the download client knows how to go through the proxy
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg or "file" in cfg:
        return  # an unknown tag gets open_clip's own error
    if cfg.get("hf_hub"):
        from huggingface_hub import constants, try_to_load_from_cache

        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" names no file
        filename = filename or "open_clip_pytorch_model.bin"
        # open_clip prefers a .safetensors twin of the file when the hub has one.
        candidates = [filename, "open_clip_model.safetensors"]
        if any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in candidates):
            return
        address = urlparse(constants.ENDPOINT)
    else:
        address = urlparse(cfg["url"])
    port = address.port or (443 if address.scheme == "https" else 80)
    try:
        socket.create_connection((address.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach {address.hostname} to download the weights ({exc})"
        ) from exc


def _create(model_name, pretrained, device, precision):
    open_clip_precision = "fp32" if precision == "int8" else precision
    check_source(model_name, pretrained)
    try:
        _check_download_reachable(model_name, pretrained)
        with open_clip_logs_to_debug():
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=pretrained,
                precision=open_clip_precision,
                device=device,
            )
            tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:
        raise weights_error(model_name, pretrained, exc) from exc
    model.eval().requires_grad_(False)
    pil_steps, mean_std = _split_preprocess(preprocess)
    backbone = Backbone(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        preprocess_cfg=dict(open_clip.get_model_preprocess_cfg(model)),
        device=torch.device(device),
        precision=precision,
        image_dim=0,
        text_dim=0,
        model_name=model_name,
        pretrained=pretrained,
        _pil_steps=pil_steps,
        _mean_std=mean_std,
    )
    if precision == "int8":
        # Quantised weights are packed; fingerprint the float weights they came from.
        backbone._fingerprint = _fingerprint(model, backbone)
        backbone.model = _quantize_int8(model)
    # A one-sample forward pass gives the embedding sizes for any architecture.
    height, width = backbone.image_size
    backbone.image_dim = backbone.encode_image(torch.zeros(1, 3, height, width)).shape[-1]
    backbone.text_dim = backbone.encode_text(tokenizer([""])).shape[-1]
    return backbone


def load_backbone(model_name, pretrained, *, device="auto", precision="fp32"):
    """Load an open_clip model, or return the one already loaded with the same settings.

    A model from local files (a ``local-dir:`` folder, a checkpoint file) is
    loaded again when they changed since (another size, modification time
    or inode), so weights replaced in place are used at once.

    Parameters
    ----------
    model_name : str
        An open_clip architecture name ("ViT-L-14"), or a ``hf-hub:org/repo`` or
        ``local-dir:/path`` source (then ``pretrained`` is ignored).
    pretrained : str or None
        A pretrained tag of ``model_name`` ("openai"), a local checkpoint file,
        or None for random weights.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    precision : {"fp32", "fp16", "bf16", "int8"}, default="fp32"
        "fp16" and "bf16" need CUDA; "int8" is dynamic quantisation of the
        linear layers and runs on CPU.

    Returns
    -------
    backbone : Backbone

    Raises
    ------
    WeightsUnavailableError
        When the configuration or weights cannot be obtained; the original
        exception is chained.
    """
    device = resolve_device(device)
    _check_precision(precision, device)
    model_name, pretrained = _canonical_source(model_name, pretrained)
    key = (model_name, pretrained, device, precision)
    # Read before loading: files replaced during the load are loaded again next time.
    files = source_files(model_name, pretrained)
    with _cache_lock:
        cached = _cache.pop(key, None)  # a model of replaced files is dropped
        if cached is not None and cached.source_files == files:
            _cache[key] = cached
            return cached
        # Loading under the lock keeps two threads from loading one model twice.
        logger.info("Loading open_clip model %s (%s)", model_name, pretrained)
        backbone = _create(model_name, pretrained, device, precision)
        backbone.source_files = files
        _cache[key] = backbone
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return backbone


def clear_backbone_cache():
    """Forget all models loaded by :func:`load_backbone` in this process."""
    with _cache_lock:
        _cache.clear()
