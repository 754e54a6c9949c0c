"""Read image inputs of any supported kind and turn them into RGB PIL images.

Inputs are file paths (str or path-like), encoded bytes, PIL images and
HxW / HxWxC uint8 arrays. Reading happens in steps so that a feature cache
can be consulted, and decoded memory accounted for, in between:
:func:`load_source` gets the raw content (file bytes, or the in-memory
image), :func:`open_image` reads the header only (size, format, reduced-size
decoding), and :func:`load_rgb` decodes the pixels into an RGB image ready
for the model's preprocessing (:func:`decode_image` does both). They raise
ordinary exceptions; :func:`sample_errors` turns them into an
:class:`ImageDecodeError` that names the sample.
"""

import contextlib
import hashlib
import io
import math
import numbers
import os
import stat
import struct
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from ..exceptions import ImageDecodeError, ImageDecodeWarning

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DecodeOptions",
    "ImageDecodeError",
    "ImageDecodeWarning",
    "content_hash",
    "decode_image",
    "describe_input",
    "draft_applies",
    "ends_in_fill_grey",
    "is_fill_grey",
    "is_missing",
    "load_rgb",
    "load_source",
    "one_sequential_scan",
    "open_image",
    "open_limited",
    "read_file",
    "reduce_to_target",
    "sample_errors",
    "scan_ends_early",
]

#: PIL's own default limit (``PIL.Image.MAX_IMAGE_PIXELS``), about 89.5 megapixels.
DEFAULT_MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)
#: Largest encoded image read by default: 256 MiB, far above any photograph.
DEFAULT_MAX_IMAGE_BYTES = 256 * 1024 * 1024

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ORIENTATION = ExifTags.Base.Orientation
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # orientations that swap width and height
_FILE_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a named pipe (FIFO)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}
# Opening never blocks on a FIFO swapped in after the check; O_NONBLOCK does not change
# how regular files are read.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode encoded images.

    Parameters
    ----------
    target_size : tuple of int or None
        (height, width) the model's preprocessing resizes to; None disables
        reduced-size decoding.
    resize_mode : {"shortest", "longest", "squash"}
        open_clip's resize mode, which decides the size after resizing.
    draft : bool
        Decode large JPEGs at a reduced scale (1/2, 1/4 or 1/8, PIL's draft
        mode) when the result stays at least ``draft_margin`` times larger
        than the resize target.
    max_image_pixels : int or None
        Refuse encoded images with more pixels (decompression-bomb guard).
        None means no limit.
    draft_margin : float
        Minimum ratio between the reduced decode size and the resize target.
    """

    target_size: tuple = None
    resize_mode: str = "shortest"
    draft: bool = True
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    draft_margin: float = 3.0


def is_missing(value):
    """True for None, NaN and pandas' NA."""
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def describe_input(item):
    """A short description of an input sample for error messages."""
    if isinstance(item, (str, os.PathLike)):
        return f"path {os.fspath(item)!r}"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"bytes, {len(item)} bytes"
    if isinstance(item, Image.Image):
        return f"PIL image, mode {item.mode}, {item.width}x{item.height}"
    if isinstance(item, np.ndarray):
        return f"array, dtype {item.dtype}, shape {item.shape}"
    if is_missing(item):
        return repr(item)
    return f"object of type {type(item).__name__}"


@contextlib.contextmanager
def sample_errors(index, item):
    """Re-raise any exception from reading sample ``index`` as an :class:`ImageDecodeError`."""
    try:
        yield
    except ImageDecodeError:
        raise
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, struct.error...)
        raise ImageDecodeError(index, describe_input(item), _reason(exc)) from exc


def _reason(exc):
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image PIL can read (unknown or corrupt format)"
    if isinstance(exc, Image.DecompressionBombError):
        if "max_image_pixels" in str(exc):
            return str(exc)
        return (f"{exc} (PIL's own process-wide limit, PIL.Image.MAX_IMAGE_PIXELS, refuses it "
                "for this format)")
    if isinstance(exc, OSError) and "truncated" in str(exc).lower():
        return f"truncated or corrupt image data ({exc})"
    return f"{type(exc).__name__}: {exc}"


def load_source(item, max_bytes=DEFAULT_MAX_IMAGE_BYTES):
    """Return the raw content of an input sample.

    File paths are read into bytes (see :func:`read_file`); bytes are returned
    as bytes; PIL images and arrays are validated and returned unchanged.
    Encoded images (files or bytes) larger than ``max_bytes`` are refused;
    None means no limit.
    """
    if is_missing(item):
        raise ValueError("missing image (None or NaN)")
    if isinstance(item, (str, os.PathLike)):
        return read_file(item, max_bytes)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if not data:
            raise ValueError("empty bytes (0 bytes)")
        _check_bytes(len(data), max_bytes)
        return data
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        _check_array(item)
        return item
    raise TypeError(
        f"unsupported input type {type(item).__name__}; expected a file path, bytes, "
        "a PIL image or a uint8 array"
    )


def read_file(path, max_bytes=DEFAULT_MAX_IMAGE_BYTES):
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    Anything else (a directory, FIFO, socket or device such as ``/dev/zero``)
    is refused before it is opened, and the file is opened without blocking
    and checked again, so a FIFO swapped in between cannot hang the reader.
    A file larger than ``max_bytes`` is refused without being read (None
    means no limit); at most ``max_bytes + 1`` bytes are ever read.
    """
    _check_regular(os.stat(path).st_mode)
    with open(os.open(path, _OPEN_FLAGS), "rb") as file:
        info = os.fstat(file.fileno())
        _check_regular(info.st_mode)
        _check_bytes(info.st_size, max_bytes)
        data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    _check_bytes(len(data), max_bytes)  # the file grew, or reports no size (/proc)
    if not data:
        raise ValueError("file is empty (0 bytes)")
    return data


def _check_regular(mode):
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS.items() if test(mode)), "not a file")
        raise ValueError(f"is {kind}, not a regular file: only image files are read")


def _check_bytes(size, max_bytes):
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"larger than the limit of max_image_bytes={max_bytes} bytes; raise max_image_bytes "
            "to read it"
        )


def _check_array(array):
    if array.dtype != np.uint8:
        raise ValueError(f"arrays must have dtype uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        return
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(
            f"arrays must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}"
        )
    if 0 in array.shape:
        raise ValueError(f"array has no pixels, shape {array.shape}")


def content_hash(source):
    """A hash of the content of a :func:`load_source` result.

    Encoded bytes are hashed as they are; in-memory images are hashed after
    conversion to RGB, which is what the features depend on.
    """
    digest = hashlib.blake2b(digest_size=20)
    if isinstance(source, bytes):
        digest.update(b"encoded:")
        digest.update(source)
    else:
        image = decode_image(source)
        digest.update(f"pixels:{image.width}x{image.height}:".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def decode_image(source, options=None):
    """Turn a :func:`load_source` result into an RGB PIL image: :func:`open_image`, then
    :func:`load_rgb`."""
    return load_rgb(open_image(source, options))


def open_image(source, options=None):
    """Open a :func:`load_source` result as a PIL image, without decoding the pixels yet.

    Encoded images have their header read and the pixel limit checked, and
    large JPEGs are set to decode at a reduced scale (see
    :class:`DecodeOptions`); ``image.size`` is then the size that decoding
    will give. Animated images give their first frame.
    """
    options = options or DecodeOptions()
    if isinstance(source, np.ndarray):
        return Image.fromarray(source[:, :, 0] if source.ndim == 3 and source.shape[2] == 1
                               else source)
    if isinstance(source, Image.Image):
        return _first_frame(source)
    image = open_limited(io.BytesIO(source), options.max_image_pixels)
    if image.format == "JPEG":
        image.info[_ENCODED] = source  # for load_rgb's check of a scan cut short
    # Camera JPEGs with an MPF segment open as "MPO", a JPEG subclass that drafts too.
    if options.draft and options.target_size is not None and image.format in ("JPEG", "MPO"):
        _draft(image, options)
    return image


_JPEG_END = b"\xff\xd9"
_ENCODED = "sklearn_clipdet_encoded"  # image.info key: a JPEG's file data, until decoded
_SHORT_SCAN = ("truncated JPEG: its scan data ends before the last block (a file cut short "
               "and closed with an end marker)")
_SEQUENTIAL_HUFFMAN = (0xC0, 0xC1)  # SOF0 baseline, SOF1 extended
# Entropy-coded 1 bits (each 0xFF stuffed with 0x00), more than libjpeg reads ahead (57 bits).
_SCAN_PADDING = b"\xff\x00" * 16


def one_sequential_scan(data):
    """Whether the JPEG ``data`` is Huffman-coded sequential with a single scan, and ends with
    the end marker (what :func:`_strict_scan` needs)."""
    if not data.endswith(_JPEG_END):
        return False
    position, frame = 2, None
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data never holds another 0xFFDA
            return frame in _SEQUENTIAL_HUFFMAN and data.find(b"\xff\xda", position + 2) == -1
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = marker
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return False


def _strict_scan(data):
    """The single-scan JPEG ``data`` (see :func:`one_sequential_scan`) with its end marker
    replaced by padding that is not a marker, so that a scan cut short fails to decode.

    libjpeg decodes a scan that meets a marker before its last block by filling
    the rest with grey and warning, and PIL ignores the warning: a file cut
    mid-scan and closed with an end marker decodes silently as a partly grey
    image. Without the marker the decoder runs out of data instead (PIL:
    "image file is truncated"). A complete scan needs no more bytes: it decodes
    to the same pixels, and the missing end marker is allowed by PIL. A cut in
    the last few blocks, which the padding covers, still decodes.
    """
    return data[:-len(_JPEG_END)] + _SCAN_PADDING


def scan_ends_early(data):
    """Whether ``data`` is a single-scan JPEG (see :func:`one_sequential_scan`) whose scan is
    cut short; False for other files, whose cut cannot be told this way.

    Decodes at 1/8 scale (every coefficient is still read), from :func:`_strict_scan`.
    """
    if not one_sequential_scan(data):
        return False
    image = open_limited(io.BytesIO(_strict_scan(data)), None)
    image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
    try:
        image.load()
    except OSError:
        return True
    return False


def is_fill_grey(pixel):
    """Whether the channel values of ``pixel`` are the grey (128 in every channel, give or
    take 2) that libjpeg and nvJPEG fill the blocks of a scan cut short with."""
    return all(abs(value - 128) <= 2 for value in pixel)


def ends_in_fill_grey(image):
    """Whether the last pixel of a decoded PIL image is the fill grey (:func:`is_fill_grey`):
    the cheap sign that :func:`scan_ends_early` is worth asking."""
    if image.width == 0 or image.height == 0:
        return False
    last = image.getpixel((image.width - 1, image.height - 1))
    return is_fill_grey(last if isinstance(last, tuple) else (last,))


def load_rgb(image):
    """Decode an image from :func:`open_image` into an RGB image.

    Applies the EXIF orientation, composites transparent images on white,
    scales 16-bit images to 8 bits and refuses images without pixels and
    floating-point images, whose value range is ambiguous.
    """
    image.load()  # a lazily opened image fails here, where the sample is known
    encoded = image.info.pop(_ENCODED, None)
    if encoded is not None and ends_in_fill_grey(image) and scan_ends_early(encoded):
        raise OSError(_SHORT_SCAN)
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image has no pixels ({image.width}x{image.height})")
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def _first_frame(image):
    """The first frame of a caller's (possibly animated) image, leaving its position unchanged."""
    if not getattr(image, "is_animated", False) or image.tell() == 0:
        return image
    position = image.tell()
    try:
        image.seek(0)
        return image.copy()
    finally:
        image.seek(position)


def check_pixel_limit(source, max_pixels):
    """Raise as decoding would for a :func:`load_source` result over ``max_pixels`` pixels.

    Reads an encoded image's header only; for a cached sample, whose pixels are
    not decoded, this keeps the limit a property of the sample, not of the cache.
    """
    if max_pixels is None:
        return
    if isinstance(source, bytes):
        open_limited(io.BytesIO(source), max_pixels).close()
        return
    height, width = (source.shape[:2] if isinstance(source, np.ndarray)
                     else (source.height, source.width))
    _check_pixels(width, height, max_pixels)


def _check_pixels(width, height, max_pixels):
    """Raise DecompressionBombError for an image of more than ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise Image.DecompressionBombError(
            f"image has {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} (a guard against decompression bombs); raise max_image_pixels to "
            "read it"
        )


def open_limited(file, max_pixels):
    """Open an image file object (header only, like ``Image.open``), refusing more than
    ``max_pixels`` pixels.

    The limit replaces PIL's process-wide ``Image.MAX_IMAGE_PIXELS``, which is
    neither read nor changed here, so the caller's limit holds whatever other
    threads and libraries set; None means no limit. (A few formats check
    PIL's limit again inside their own decoder.)

    Raises
    ------
    PIL.Image.DecompressionBombError
        When the image has more pixels than ``max_pixels``.
    PIL.Image.UnidentifiedImageError
        When no PIL format recognises the data.
    """
    image = _identify(file)
    _check_pixels(image.width, image.height, max_pixels)
    return image


#: The raster formats images are decoded from, recognised by content (PIL's names; "MPO" is
#: the JPEG of cameras with a second picture). Other formats PIL knows are refused without
#: being opened: some run external programs on the file (PostScript and EPS run Ghostscript)
#: or are not pictures of a scene.
RASTER_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF", "PPM", "TGA",
                  "ICO", "JPEG2000")


def _identify(file):
    """``Image.open`` for a file object, without its check of the global pixel limit.

    Tries the registered formats in PIL's order (the common ones first, then
    every plugin), as ``Image.open`` does, but opens only :data:`RASTER_FORMATS`.

    Raises
    ------
    ValueError
        When the data is in a format PIL knows but this package does not decode.
    """
    start = file.tell()
    prefix = file.read(16)
    tried = set()
    refused = None
    for load_plugins in (Image.preinit, Image.init):
        load_plugins()
        for name in [name for name in Image.ID if name not in tried]:
            tried.add(name)
            factory, accept = Image.OPEN[name]
            accepted = accept is None or accept(prefix)
            if not accepted or isinstance(accepted, str):  # a str explains a refusal
                continue
            if name not in RASTER_FORMATS:
                if accept is not None:  # plugins without a check accept anything
                    refused = refused or name
                continue
            file.seek(start)
            try:
                return factory(file, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    if refused is not None:
        raise ValueError(
            f"the data is in the {refused} format, which is not decoded: only "
            f"{', '.join(RASTER_FORMATS)} images are (other formats PIL knows are refused "
            "unopened, since some, such as PostScript, run programs)"
        )
    raise Image.UnidentifiedImageError("cannot identify image file")


def _draft(image, options):
    """Ask the JPEG decoder for a reduced scale that keeps the resize target covered."""
    orientation = image.getexif().get(_ORIENTATION, 1)
    if draft_applies(image.size, orientation, options):
        image.draft(image.mode, _reduced_size(image.size, options,
                                              orientation in _TRANSPOSED_ORIENTATIONS))


def draft_applies(size, orientation, options):
    """Whether a JPEG of ``size`` (and EXIF ``orientation``) decodes at a reduced scale with
    ``options``: when a scale of 1/2 or less still covers the target ``draft_margin`` times."""
    if not options.draft or options.target_size is None:
        return False
    request = _reduced_size(size, options, orientation in _TRANSPOSED_ORIENTATIONS)
    return min(size[0] // request[0], size[1] // request[1]) >= 2


def _reduced_size(size, options, transposed=False):
    """The smallest (width, height) that keeps the resize target ``draft_margin`` times
    covered."""
    width, height = size
    target_h, target_w = options.target_size
    if transposed:
        target_h, target_w = target_w, target_h
    if options.resize_mode == "squash":
        needed_w, needed_h = target_w, target_h
    else:
        ratios = (target_w / width, target_h / height)
        scale = max(ratios) if options.resize_mode == "shortest" else min(ratios)
        needed_w, needed_h = width * scale, height * scale
    return (
        max(1, math.ceil(needed_w * options.draft_margin)),
        max(1, math.ceil(needed_h * options.draft_margin)),
    )


def reduce_to_target(image, options):
    """Shrink a decoded (upright) image by an integer factor, averaging blocks of pixels,
    while it stays ``draft_margin`` times larger than the resize target.

    What reduced-size JPEG decoding does for other formats and for JPEGs beyond
    its 1/8 scale; the image is returned unchanged when no factor of 2 or more
    fits.
    """
    request = _reduced_size(image.size, options)
    factor = min(image.width // request[0], image.height // request[1])
    return image.reduce(factor) if factor >= 2 else image


def to_rgb(image):
    """Convert a PIL image of any mode to RGB.

    Transparency is composited on white, 16-bit gray is scaled to 8 bits, and
    other modes (L, 1, P, CMYK, YCbCr, ...) use PIL's conversion. Mode "F"
    (32-bit floating point) is refused: PIL would clip its values to 0-255,
    turning images scaled to [0, 1] black.
    """
    if image.mode == "F":
        raise ValueError(
            "mode 'F' (32-bit floating-point) images are not read: their value range "
            "(0-1 or 0-255) is ambiguous, and converting them would turn [0, 1] images black. "
            "Convert to 8 bits first, e.g. Image.fromarray(np.uint8(np.clip(np.asarray(image) "
            "* 255, 0, 255)))"
        )
    # Both conversions below work in PIL's own 8 and 32-bit buffers: a few bytes per pixel
    # where float arrays or full-size RGBA copies took 20 to 30.
    if image.mode in _SIXTEEN_BIT_MODES:
        # Rounded v * 255 / 65535 (PIL truncates the + 0.5), clipped to 0-255.
        return image.convert("I").point(lambda v: v * (255 / 65535) + 0.5).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba)  # alpha-composited on white
        return rgb
    if image.mode == "RGB":
        return image
    return image.convert("RGB")
