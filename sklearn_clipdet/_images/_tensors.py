"""Model inputs as tensors: JPEG decoding in batches and open_clip's preprocessing on any device.

The fast image path of the featurizer. On a CUDA device, JPEG files are
decoded in batches by nvJPEG (:func:`torchvision.io.decode_jpeg` with a CUDA
``device``); every image, however decoded, is then turned upright, resized,
centre-cropped and normalised with torchvision's tensor kernels, following the
model's own preprocessing configuration (size, interpolation, resize mode,
fill colour, mean and std). The same code runs on CPU tensors (JPEGs decoded
by libjpeg-turbo), which is how it is tested on machines without a GPU.

:func:`inspect_jpeg` decides which encoded images take this path: plain
8-bit JPEGs (grey or YCbCr colour, baseline or progressive) within the pixel
limit, whose data ends where a complete JPEG ends. Everything else (other
formats, CMYK or RGB-coded JPEGs, 12-bit, truncated or over-limit files) is
decoded by PIL on the CPU, which also gives the errors; so are JPEGs whose scan
turns out to be cut short (see :func:`decode_jpegs`).
"""

import io
from typing import NamedTuple

import torch
from PIL import ExifTags
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .._utils._open_clip import center_crop_or_pad
from ._reading import is_fill_grey, open_limited, scan_ends_early

__all__ = [
    "DEVICE_DECODE_CHUNK_PIXELS",
    "JpegHeader",
    "TensorPreprocess",
    "decode_jpegs",
    "encoded_tensor",
    "inspect_jpeg",
    "upright",
]

#: Most decoded pixels (summed over images) that one nvJPEG call produces and
#: that are held at full size at once: 128 megapixels, 384 MiB of RGB on the
#: device (1.5 GiB while resizing in float32), whatever the batch size.
DEVICE_DECODE_CHUNK_PIXELS = 128 * 1024 * 1024

_ORIENTATION = ExifTags.Base.Orientation
_JPEG_END = b"\xff\xd9"


def _transpose(image):
    return image.transpose(-2, -1)


# EXIF orientation -> the operation that turns a (..., H, W) image upright, as
# PIL.ImageOps.exif_transpose does.
_UPRIGHT = {
    2: lambda image: image.flip(-1),
    3: lambda image: image.flip(-2, -1),
    4: lambda image: image.flip(-2),
    5: _transpose,
    6: lambda image: _transpose(image).flip(-1),
    7: lambda image: _transpose(image).flip(-2, -1),
    8: lambda image: _transpose(image).flip(-2),
}


class JpegHeader(NamedTuple):
    """What :func:`inspect_jpeg` reads from a JPEG header."""

    width: int
    height: int
    orientation: int  # EXIF orientation, 1 (upright) to 8


def inspect_jpeg(data, max_pixels):
    """The header of a JPEG that :func:`decode_jpegs` decodes as PIL would, else None.

    Reads the header only. None for anything that must go through PIL: other
    formats, JPEGs that are not 8-bit grey or YCbCr colour (CMYK, Adobe RGB,
    12-bit), data that does not end with the JPEG end marker (truncated files,
    trailing bytes), headers PIL cannot read and images over ``max_pixels``.
    """
    if not data.startswith(b"\xff\xd8") or not data.endswith(_JPEG_END):
        return None
    try:
        image = open_limited(io.BytesIO(data), max_pixels)
    except Exception:  # PIL, on the CPU path, reports what is wrong with it
        return None
    if image.format not in ("JPEG", "MPO") or image.mode not in ("L", "RGB"):
        return None
    if getattr(image, "bits", 8) != 8 or image.width == 0 or image.height == 0:
        return None
    if image.mode == "RGB":
        # Colour JPEGs are YCbCr unless an Adobe marker or the component names say RGB.
        if image.info.get("adobe_transform") == 0:
            return None
        if [layer[0] for layer in getattr(image, "layer", [])] == ["R", "G", "B"]:
            return None
    orientation = image.getexif().get(_ORIENTATION, 1)
    return JpegHeader(image.width, image.height, orientation if orientation in _UPRIGHT else 1)


def encoded_tensor(data):
    """JPEG bytes as the 1-D uint8 CPU tensor :func:`decode_jpegs` takes: a writable copy,
    since torch warns about tensors over read-only ``bytes``."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_jpegs(datas, headers, device, then=None):
    """Decode JPEGs into upright uint8 (3, H, W) tensors on ``device``.

    ``datas`` (bytes, or tensors from :func:`encoded_tensor`) must have passed
    :func:`inspect_jpeg`, which gave ``headers``.
    On a CUDA device the images are decoded by nvJPEG, on the CPU by
    libjpeg-turbo, in calls of at most :data:`DEVICE_DECODE_CHUNK_PIXELS`
    pixels. ``then(images)`` (resizing, say) is applied to the images of each
    call before the next one, so that only one call's full-size images are
    held at once; the results of ``then`` are returned, in order. Raises if
    any image of a call fails to decode or comes from a single-scan JPEG whose
    scan is cut short (which libjpeg and nvJPEG decode as partly grey; libjpeg
    prints a warning).
    """
    device = torch.device(device)
    pixel_counts = [header.width * header.height for header in headers]
    results = []
    for chunk in _chunks(range(len(datas)), pixel_counts, DEVICE_DECODE_CHUNK_PIXELS):
        encoded = [datas[i] if isinstance(datas[i], torch.Tensor) else encoded_tensor(datas[i])
                   for i in chunk]
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        _refuse_short_scans(decoded, encoded)
        images = [upright(image, headers[i].orientation) for i, image in zip(chunk, decoded)]
        results.extend(images if then is None else then(images))
    return results


def _refuse_short_scans(images, encoded):
    """Raise RuntimeError if one of the decoded ``images`` comes from a scan cut short.

    libjpeg and nvJPEG decode the blocks missing from a scan cut short (a file
    cut and closed with an end marker) as grey, 128 in every channel, down to
    the last pixel (:func:`~sklearn_clipdet._images._reading.is_fill_grey`). Images
    ending so are checked on their data
    (:func:`~sklearn_clipdet._images._reading.scan_ends_early`); the caller's
    PIL path then gives the error.
    """
    corners = torch.stack([image[:, -1, -1] for image in images]).cpu().tolist()  # one copy
    for position, corner in enumerate(corners):
        if is_fill_grey(corner) and scan_ends_early(encoded[position].numpy().tobytes()):
            raise RuntimeError("JPEG scan data ends early")


def _chunks(indices, sizes, limit):
    """Consecutive groups of ``indices`` whose ``sizes`` sum to at most ``limit`` (or one
    index, when that alone exceeds it)."""
    chunk, total = [], 0
    for i in indices:
        if chunk and total + sizes[i] > limit:
            yield chunk
            chunk, total = [], 0
        chunk.append(i)
        total += sizes[i]
    if chunk:
        yield chunk


def upright(image, orientation):
    """A (..., H, W) image turned as its EXIF ``orientation`` (1-8) says."""
    turn = _UPRIGHT.get(orientation)
    return image if turn is None else turn(image)


class TensorPreprocess:
    """open_clip's evaluation preprocessing, on uint8 image tensors of any device.

    Follows the model's preprocessing configuration as open_clip's
    ``image_transform`` does (resize modes "shortest", "longest" and
    "squash", centre crop, padding with the fill colour), with torchvision's
    tensor kernels: antialiased resizing of the uint8 image, rounded back to
    uint8, as PIL's resize gives. The results differ from PIL's by at most a
    few grey levels (a different bicubic kernel), well below what changes the
    embedding.

    Parameters
    ----------
    preprocess_cfg : dict
        open_clip's preprocessing configuration of the model
        (``open_clip.get_model_preprocess_cfg``).
    """

    def __init__(self, preprocess_cfg):
        size = preprocess_cfg["size"]
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.resize_mode = preprocess_cfg.get("resize_mode", "shortest")
        self.interpolation = InterpolationMode(preprocess_cfg.get("interpolation", "bicubic"))
        self.fill_color = preprocess_cfg.get("fill_color", 0)
        mean = torch.tensor(preprocess_cfg["mean"], dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(preprocess_cfg["std"], dtype=torch.float32).view(-1, 1, 1)
        self._mean_std = {torch.device("cpu"): (mean, std)}  # copied to each device once

    def resized_size(self, height, width):
        """(height, width) of an image of this size after the resize step."""
        target_h, target_w = self.size
        if self.resize_mode == "squash":
            return target_h, target_w
        ratios = (height / target_h, width / target_w)
        if self.resize_mode == "shortest" and target_h == target_w:
            # torchvision's Resize(int): the short side to the size, the long one truncated.
            short, long = sorted((height, width))
            new_short, new_long = target_h, int(target_h * long / short)
            return (new_short, new_long) if height <= width else (new_long, new_short)
        ratio = max(ratios) if self.resize_mode == "longest" else min(ratios)
        return round(height / ratio), round(width / ratio)  # open_clip's ResizeKeepRatio

    def resize_crop(self, images):
        """Resize and centre-crop uint8 RGB images (..., 3, H, W) of one size to the model's
        input size."""
        height, width = images.shape[-2:]
        size = list(self.resized_size(height, width))
        images = F.resize(images, size, interpolation=self.interpolation, antialias=True)
        if self.resize_mode == "longest":
            return center_crop_or_pad(images, list(self.size), fill=self.fill_color)
        return F.center_crop(images, list(self.size))

    def resize_crop_many(self, images):
        """:meth:`resize_crop` for a list of images of any sizes; those of one size are
        resized together. Returns a list in the same order."""
        by_size = {}
        for position, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(position)
        cropped = [None] * len(images)
        for positions in by_size.values():
            batch = self.resize_crop(torch.stack([images[p] for p in positions]))
            for position, image in zip(positions, batch):
                cropped[position] = image
        return cropped

    def normalize(self, images, dtype=torch.float32):
        """uint8 images (n, 3, H, W) as the model's input: scaled to [0, 1], then
        ``(x - mean) / std`` in float32 (as torchvision's ToTensor and Normalize), cast to
        ``dtype``."""
        if images.device not in self._mean_std:
            mean, std = self._mean_std[torch.device("cpu")]
            self._mean_std[images.device] = (mean.to(images.device), std.to(images.device))
        mean, std = self._mean_std[images.device]
        return ((images.to(torch.float32) / 255 - mean) / std).to(dtype)
