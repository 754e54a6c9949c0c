"""Images to model inputs, ahead of the model: worker threads, a decoded-memory budget, batches.

:func:`ordered_map` runs the per-sample work (reading, hashing, decoding) in
worker threads, a bounded window ahead of the consumer, in input order.
:class:`ImageDecoder` decodes one sample: on the CPU within the process-wide
:data:`DECODE_BUDGET`, or, for JPEGs when the model runs on CUDA, by keeping the
encoded bytes for nvJPEG. :class:`BatchRunner` groups samples into batches,
builds each batch's model input in a background thread (nvJPEG decoding,
host-to-device copies, normalisation on a side stream), runs the forward pass
and copies the embeddings back, keeping a few batches in flight on a GPU.
"""

import contextlib
import ctypes
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image

from ._cuda_copies import InFlight, SideStream, copy_to_device
from ._reading import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DecodeOptions,
    ImageDecodeError,
    draft_applies,
    load_rgb,
    open_image,
    reduce_to_target,
    sample_errors,
)
from ._tensors import TensorPreprocess, decode_jpegs, encoded_tensor, inspect_jpeg

__all__ = [
    "DECODE_BUDGET",
    "BatchRunner",
    "ImageDecoder",
    "PixelBudget",
    "Prepared",
    "default_workers",
    "jpeg_batch_device",
    "ordered_map",
    "release_freed_memory",
]


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; not in musl, macOS or Windows
    except (AttributeError, OSError, TypeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def release_freed_memory():
    """Hand the heap memory this process has freed back to the operating system.

    glibc keeps the memory a thread frees in that thread's malloc arena for
    its later use, so large decodes in several threads in turn each leave
    their buffers behind; ``malloc_trim(0)`` returns them. Does nothing where
    the C library has no ``malloc_trim``.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class PixelBudget:
    """A limit on the decoded pixels held at once by all the threads that share it.

    :meth:`reserve` waits until the pixels fit. A request larger than the
    whole budget waits for the budget to be free and then takes all of it, so
    an image of any allowed size is decoded, alone. When a reservation of at
    least ``release_above`` pixels ends, the freed memory is handed back to
    the operating system (:func:`release_freed_memory`) before the pixels
    return to the budget: otherwise each thread's allocator would keep the
    buffers of its last large image, and memory would grow with the threads.

    Parameters
    ----------
    limit : int
        Pixels (width x height, whatever the channels) held at most at once.
    release_above : int or None, default=None
        Reservations of at least this many pixels release the freed memory
        when they end; None never does.
    """

    def __init__(self, limit, release_above=None):
        self.limit = int(limit)
        self.release_above = release_above
        self.in_use = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels):
        """Hold ``pixels`` of the budget for the duration of the ``with`` block.

        Free the decoded pixels within the block, so that they are released
        with the reservation.
        """
        pixels = min(int(pixels), self.limit)
        with self._condition:
            self._condition.wait_for(lambda: self.in_use + pixels <= self.limit)
            self.in_use += pixels
        try:
            yield
        finally:
            if self.release_above is not None and pixels >= self.release_above:
                release_freed_memory()
            with self._condition:
                self.in_use -= pixels
                self._condition.notify_all()


#: Decoded pixels held at once by all featurizers of the process while they
#: decode on the CPU: PIL's default pixel limit, about 89.5 million. Decoding
#: and converting to RGB peaks at 4 bytes a pixel for RGB images, 8 for RGBA
#: and 10 for 16-bit grey (measured), so decoding holds at most about 0.9 GB,
#: or one image larger than the budget (``max_image_pixels`` raised) alone.
#: Images of 4 megapixels (PIL's 16 MiB allocation block of RGB) or more
#: release their memory when decoded (see ``benchmarks/bench_memory.py``).
DECODE_BUDGET = PixelBudget(DEFAULT_MAX_IMAGE_PIXELS, release_above=4 * 1024 * 1024)


def default_workers():
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def ordered_map(function, items, workers, window):
    """Yield ``function(index, item)`` for each item, in input order, computed ahead.

    ``workers`` threads compute at most ``window`` results ahead of the
    consumer (0 workers: in the calling thread). PIL images are handled in the
    calling thread: PIL decodes lazily and one image object must not be loaded
    from several threads (the same object may fill several rows).
    """
    if workers == 0:
        for index, item in enumerate(items):
            yield function(index, item)
        return
    pending = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="clipdet-decode") as pool:
        try:
            for index, item in enumerate(items):
                if isinstance(item, Image.Image):
                    pending.append(_completed(function(index, item)))
                else:
                    pending.append(pool.submit(function, index, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _completed(result):
    future = Future()
    future.set_result(result)
    return future


@dataclass
class Prepared:
    """One image sample on its way to the model.

    After :meth:`ImageDecoder.prepare` exactly one of ``vector`` (set by the
    caller from a cache), ``pixels`` (decoded on the CPU), ``encoded`` (a JPEG
    left for the batch decoder, as from
    :func:`~sklearn_clipdet._images._tensors.encoded_tensor`) and ``error`` is set.
    """

    index: int
    item: Any = None
    key: str = None
    vector: np.ndarray = None
    pixels: torch.Tensor = None
    encoded: torch.Tensor = None
    header: Any = None
    error: ImageDecodeError = None


def jpeg_batch_device(device, fast):
    """Where :class:`ImageDecoder` decodes JPEGs in batches: the model's CUDA device when
    ``fast``, else None (PIL decodes them on the CPU, one by one)."""
    device = torch.device(device)
    return device if fast and device.type == "cuda" else None


class ImageDecoder:
    """Decode image samples into model inputs for one backbone.

    Parameters
    ----------
    backbone : Backbone
        The model the inputs are for (its preprocessing, device and input dtype).
    fast : bool
        Reduced-size JPEG decoding and torchvision's tensor resizing (the
        featurizer's ``draft_decode``), or else open_clip's own PIL
        preprocessing, bit for bit.
    max_image_pixels : int or None
        Images with more pixels are refused.
    jpeg_device : torch.device or None
        Decode plain JPEGs in batches there (see :func:`jpeg_batch_device`)
        instead of one by one with PIL.
    """

    def __init__(self, backbone, *, fast, max_image_pixels, jpeg_device=None):
        self.backbone = backbone
        self.options = DecodeOptions(
            target_size=backbone.image_size,
            resize_mode=backbone.preprocess_cfg.get("resize_mode", "shortest"),
            draft=fast,
            max_image_pixels=max_image_pixels,
        )
        self.tensors = TensorPreprocess(backbone.preprocess_cfg) if fast else None
        self.jpeg_device = jpeg_device

    def settings(self):
        """Everything about decoding that changes the model inputs, for cache keys."""
        settings = {"fast": self.tensors is not None, "pillow": PIL.__version__}
        if self.tensors is not None:
            settings.update(draft_margin=self.options.draft_margin,
                            torchvision=torchvision.__version__,
                            jpeg_device=None if self.jpeg_device is None else self.jpeg_device.type)
        return settings

    def prepare(self, prepared, source):
        """Decode a :func:`~sklearn_clipdet._images.load_source` result into ``prepared``
        (in a worker thread), or keep a plain JPEG's bytes for :meth:`model_inputs`.

        Raises
        ------
        ImageDecodeError
            When the sample cannot be decoded.
        """
        header = None
        if self.tensors is not None and isinstance(source, bytes):
            header = inspect_jpeg(source, self.options.max_image_pixels)
        if header is not None and self.jpeg_device is not None:
            # Copied here, in parallel, rather than in the one thread that builds batches.
            prepared.encoded, prepared.header = encoded_tensor(source), header
            return
        with sample_errors(prepared.index, prepared.item):
            prepared.pixels = self.decode(source, header)

    def decode(self, source, header=None):
        """The model input of one sample, decoded on the CPU within :data:`DECODE_BUDGET`:
        uint8 (3, H, W) when fast, else open_clip's float32 input.

        The fast path decodes large JPEGs at a reduced scale, shrinks other
        large images by an integer factor (see
        :func:`~sklearn_clipdet._images.reduce_to_target`) and resizes them as
        tensors; plain JPEGs that decode at full size anyway (their
        :func:`~sklearn_clipdet._images._tensors.inspect_jpeg` ``header`` given)
        are decoded straight into a tensor by libjpeg-turbo, the same pixels as
        PIL's, without PIL's copies.
        """
        if header is not None and not draft_applies(
                (header.width, header.height), header.orientation, self.options):
            with DECODE_BUDGET.reserve(header.width * header.height):
                try:
                    (pixels,) = decode_jpegs([source], [header], "cpu",
                                             then=self.tensors.resize_crop_many)
                    return pixels.contiguous()
                except RuntimeError:
                    pass  # libjpeg-turbo refused it: PIL decides, and explains
        image = open_image(source, self.options)
        with DECODE_BUDGET.reserve(image.width * image.height):
            try:
                return self._model_input(image)
            finally:
                if image is not source:  # ours: its pixels are freed within the budget
                    image.close()

    def _model_input(self, image):
        """The model input of an image from :func:`open_image`; the images made on the way
        are freed on return."""
        image = load_rgb(image)
        if self.tensors is None:
            return self.backbone.preprocess_image(image)
        image = reduce_to_target(image, self.options)
        # One copy, into memory torch may own (np.asarray would be read-only).
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(image.height, image.width, 3).permute(2, 0, 1)
        return self.tensors.resize_crop(pixels).contiguous()

    def model_inputs(self, batch):
        """The model input (n, 3, H, W) on the model's device for the samples of ``batch``.

        JPEGs left encoded are decoded together; if nvJPEG refuses the batch,
        PIL decodes them one by one and sets ``error`` on those that fail.
        Returns ``(decoded, inputs)``: the samples without error, in order, and
        their inputs (None when there are none).
        """
        encoded = [prepared for prepared in batch if prepared.encoded is not None]
        if encoded:
            self._decode_jpegs(encoded)
        decoded = [prepared for prepared in batch if prepared.error is None]
        if not decoded:
            return decoded, None
        inputs = self._gather([prepared.pixels for prepared in decoded])
        if inputs.dtype == torch.uint8:
            inputs = self.tensors.normalize(inputs, self.backbone.input_dtype)
        for prepared in decoded:
            prepared.pixels = None  # the batch holds them now
        return decoded, inputs

    def _gather(self, pixels):
        """One batch on the model's device from inputs on the CPU (decoded there) or on the
        device (decoded by nvJPEG), in order."""
        device = self.backbone.device
        if device.type == "cpu":
            return torch.stack(pixels)
        host = [p for p in pixels if not p.is_cuda]
        moved = iter(copy_to_device(host, device) if host else [])
        return torch.stack([p if p.is_cuda else next(moved) for p in pixels])

    def _decode_jpegs(self, encoded):
        try:
            images = decode_jpegs([p.encoded for p in encoded], [p.header for p in encoded],
                                  self.jpeg_device, then=self.tensors.resize_crop_many)
            for prepared, pixels in zip(encoded, images):
                prepared.pixels = pixels
        except Exception:  # nvJPEG refused one of them: PIL decodes each and explains failures
            for prepared in encoded:
                try:
                    with sample_errors(prepared.index, prepared.item):
                        prepared.pixels = self.decode(prepared.encoded.numpy().tobytes())
                except ImageDecodeError as error:
                    prepared.error = error
        for prepared in encoded:
            prepared.encoded = None


class BatchRunner:
    """Batch prepared samples, build their model inputs ahead and embed them.

    Samples given to :meth:`add` are grouped into batches of ``batch_size``.
    Each batch's model input is built by :meth:`ImageDecoder.model_inputs`:
    on CUDA in a background thread, on a side stream, one batch ahead of the
    forward pass; elsewhere in the calling thread, where the forward pass
    always runs. The embeddings come back to the host asynchronously, at most
    two batches in flight. ``on_done(samples, vectors)`` receives each batch's
    embeddings (a float32 array) and ``on_error(sample)`` each sample that
    failed to decode in its batch, both in the calling thread.

    Parameters
    ----------
    decoder : ImageDecoder
    encode : callable
        ``encode(inputs)``: embeddings (n, d) of a batch of model inputs, on
        any device.
    batch_size : int
    on_done, on_error : callable
    """

    _IN_FLIGHT = 2

    def __init__(self, decoder, encode, batch_size, on_done, on_error):
        self.decoder = decoder
        self.encode = encode
        self.batch_size = batch_size
        self.on_done = on_done
        self.on_error = on_error
        device = decoder.backbone.device
        self._stream = SideStream(device)
        # On a GPU the next batch is built while the device runs the current one; on the
        # CPU the forward pass needs every core, so building ahead gains nothing.
        self._ahead = 1 if device.type == "cuda" else 0
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="clipdet-batch")
                      if self._ahead else None)
        self._batch = []
        self._building = deque()
        self._in_flight = InFlight(self._IN_FLIGHT)

    def add(self, prepared):
        """Queue one sample; a full batch is sent on its way."""
        self._batch.append(prepared)
        if len(self._batch) == self.batch_size:
            self._send()

    def finish(self):
        """Embed every queued sample and deliver all results."""
        if self._batch:
            self._send()
        while self._building:
            self._forward(self._building.popleft().result())
        self._deliver(wait=True)

    def close(self):
        """Stop the background thread; batches not yet built are dropped."""
        for future in self._building:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _send(self):
        batch, self._batch = self._batch, []
        if self._pool is None:  # nothing to build ahead: build and run here
            self._forward(self._build(batch))
        else:
            self._building.append(self._pool.submit(self._build, batch))
            while len(self._building) > self._ahead:
                self._forward(self._building.popleft().result())
        self._deliver(wait=False)

    def _build(self, batch):
        with self._stream.run():
            decoded, inputs = self.decoder.model_inputs(batch)
            event = self._stream.record()
        failed = [prepared for prepared in batch if prepared.error is not None]
        return decoded, inputs, event, failed

    def _forward(self, built):
        decoded, inputs, event, failed = built
        for prepared in failed:
            self.on_error(prepared)
        if decoded:
            inputs = self._stream.hand_over(inputs, event)
            self._in_flight.add(decoded, self.encode(inputs))

    def _deliver(self, wait):
        for decoded, vectors in self._in_flight.arrived(wait):
            self.on_done(decoded, vectors)
