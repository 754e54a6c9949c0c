"""The featurizer's ``"tiles"`` view: pooled features of native-resolution tiles.

Each image is decoded at full size, its tiles are chosen by the rule of
:mod:`sklearn_clipdet._images._tiles`, each tile goes through the model as an image of its
own (the model's resize and crop leave a tile of its input size unchanged), and the
tiles' features, each layer L2-normalised when the featurizer normalises, are averaged
into one row. The cache stores every tile's raw features, so ``normalize`` can change
without encoding again.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
import PIL
import torch
from PIL import Image
from tqdm.auto import tqdm

from .._clip._image_layers import normalize_layers
from ._decoding import ordered_map
from ._reading import (
    ImageDecodeError,
    check_pixel_limit,
    content_hash,
    load_source,
    sample_errors,
)
from ._tiles import TILE_RULE, decode_tiles

__all__ = ["TileView"]


@dataclass
class _Tiles:
    index: int
    key: str = None
    raw: np.ndarray = None  # (count, dim) raw tile features, from the cache
    tiles: np.ndarray = None  # (count, size, size, 3) uint8
    error: ImageDecodeError = None


@dataclass
class TileView:
    """How one featurizer encodes the tile view of its images.

    Parameters
    ----------
    backbone : Backbone
        The loaded model; its input size is the tile size.
    layers : tuple
        Resolved image layers, read from every tile.
    widths : list of int
        Features of each layer.
    layer_output : str
        Read-out of intermediate class tokens.
    count : int
        Tiles per image.
    normalize : bool
        L2-normalise each layer of each tile before pooling.
    max_image_pixels, max_image_bytes : int or None
        The featurizer's limits.
    """

    backbone: object
    layers: tuple
    widths: list
    layer_output: str
    count: int
    normalize: bool
    max_image_pixels: int
    max_image_bytes: int

    @property
    def size(self):
        height, width = self.backbone.image_size
        if height != width:
            raise ValueError(
                f"The tiles view needs a square model input, got {height}x{width}."
            )
        return height

    def settings(self):
        """Everything that changes a tile's raw features, for cache keys."""
        return {"view": "tiles", "rule": TILE_RULE, "count": self.count, "size": self.size,
                "pillow": PIL.__version__}

    def features(self, images, *, cache, cache_key, batch_size, workers, fail, verbose):
        """Pooled tile features (n, sum(widths)) of ``images``; rows that fail stay NaN.

        ``cache_key(content_hash)`` gives a sample's cache key; ``fail(error)``
        raises or records an :class:`ImageDecodeError`.
        """
        dim = sum(self.widths)
        size, count = self.size, self.count
        pooled = np.full((len(images), dim), np.nan, dtype=np.float32)

        def prepare(index, item):
            sample = _Tiles(index)
            try:
                with sample_errors(index, item):
                    source = load_source(item, self.max_image_bytes)
                    if cache is not None:
                        sample.key = cache_key(content_hash(source))
                        stored = cache.get(sample.key, count * dim)
                        if stored is not None:
                            check_pixel_limit(source, self.max_image_pixels)
                            sample.raw = stored.reshape(count, dim)
                            return sample
                    sample.tiles = decode_tiles(source, size, count, self.max_image_pixels)
            except ImageDecodeError as error:
                sample.error = error
            return sample

        def encode(batch):
            pixels = torch.stack([
                self.backbone.preprocess_image(Image.fromarray(tile))
                for sample in batch for tile in sample.tiles
            ])
            raw = self.backbone.encode_image(pixels, self.layers, self.layer_output)
            raw = raw.cpu().numpy().reshape(len(batch), count, dim)
            for sample, rows in zip(batch, raw):
                sample.raw = rows
            if cache is not None:
                cache.put_many((sample.key, sample.raw.reshape(-1)) for sample in batch)
            for sample in batch:
                pooled[sample.index] = self.pool(sample.raw)
            batch.clear()

        per_batch = max(1, batch_size // count)  # tiles per forward pass ~ batch_size
        window = 2 * max(per_batch, workers)
        stream = ordered_map(prepare, images, workers, window)
        batch = []
        progress = tqdm(total=len(images), desc="CLIP tiles", unit="img", disable=verbose <= 0)
        with progress, contextlib.closing(stream):
            for sample in stream:
                progress.update()
                if sample.error is not None:
                    fail(sample.error)
                elif sample.raw is not None:
                    pooled[sample.index] = self.pool(sample.raw)
                else:
                    batch.append(sample)
                    if len(batch) >= per_batch:
                        encode(batch)
            if batch:
                encode(batch)
        return pooled

    def pool(self, raw):
        """One row from the (count, dim) raw features of an image's tiles."""
        if self.normalize:
            raw = normalize_layers(raw, self.widths)
        return raw.mean(axis=0)
