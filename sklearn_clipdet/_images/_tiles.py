"""Native-resolution tiles: which cells of an image the tile view encodes, and how.

Resizing an image to the model's input size averages away the pixel-level traces a
generator leaves; a crop at the image's own resolution keeps them. One crop is noisy, so the
tile view encodes several cells of a grid laid over the native image and pools their
features (TextureCrop and B-Free pool several crops too). The rule below is the one that
made the shared tile features in ``shared/data/features`` (their README), so that features
computed here and those files agree:

1. the decoded RGB image (EXIF orientation applied) is enlarged (bicubic) when its shorter
   side is under the tile size, so that it equals the tile size;
2. a grid of non-overlapping ``size`` x ``size`` cells, ``w // size`` by ``h // size``, is
   centred on the image; cells are numbered in row-major order;
3. each cell is scored by the Shannon entropy (bits) of the 256-bin histogram of its
   greyscale (PIL ``"L"``) pixels; the ``count`` highest are kept, in order of score (a stable
   sort: ties keep row-major order); with fewer cells, the best cell is repeated.
"""

import numpy as np
from PIL import Image

from ._decoding import DECODE_BUDGET
from ._reading import DecodeOptions, load_rgb, open_image

__all__ = ["TILE_RULE", "choose_tiles", "decode_tiles", "grid_cells", "native_tiles"]

#: Name of the rule above; part of the feature cache's key.
TILE_RULE = "entropy-grid-1"


def enlarge_to(image, size):
    """``image`` enlarged (bicubic) so that its shorter side is at least ``size``."""
    short = min(image.size)
    if short >= size:
        return image
    scale = size / short
    width, height = (max(size, round(side * scale)) for side in image.size)
    return image.resize((width, height), Image.Resampling.BICUBIC)


def grid_cells(width, height, size):
    """Boxes ``(left, top, right, bottom)`` of the centred grid of ``size`` cells, row-major."""
    columns, rows = width // size, height // size
    left0, top0 = (width - size * columns) // 2, (height - size * rows) // 2
    return [
        (left0 + size * i, top0 + size * j, left0 + size * (i + 1), top0 + size * (j + 1))
        for j in range(rows)
        for i in range(columns)
    ]


def entropy_bits(grey):
    """Shannon entropy (bits) of the 256-bin histogram of a uint8 array."""
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / grey.size
    return float(-(p * np.log2(p)).sum())


def choose_tiles(image, size, count):
    """The boxes of the ``count`` tiles the rule keeps, and every cell's box and entropy.

    Parameters
    ----------
    image : PIL.Image.Image
        An RGB image, already enlarged with :func:`enlarge_to`.
    size, count : int
        Tile side in pixels; tiles kept.

    Returns
    -------
    chosen : list of tuple
        ``count`` boxes, best first (the best repeated when the grid has fewer cells).
    cells : list of tuple
        All grid cells, row-major.
    entropies : ndarray of shape (n_cells,)
        The score of each cell.
    """
    cells = grid_cells(image.width, image.height, size)
    grey = np.asarray(image.convert("L"))
    entropies = np.array(
        [entropy_bits(grey[top:bottom, left:right]) for left, top, right, bottom in cells]
    )
    order = np.argsort(-entropies, kind="stable")[:count].tolist()
    order += order[:1] * (count - len(order))
    return [cells[i] for i in order], cells, entropies


def native_tiles(image, size, count):
    """``count`` native-resolution tiles of an RGB image, as a (count, size, size, 3) uint8 array.

    See the module docstring for the rule.
    """
    image = enlarge_to(image, size)
    chosen, _, _ = choose_tiles(image, size, count)
    pixels = np.asarray(image)
    return np.stack([pixels[top:bottom, left:right] for left, top, right, bottom in chosen])


def enlarged_pixels(width, height, size):
    """Pixels of a ``width`` x ``height`` image once :func:`enlarge_to` has enlarged it."""
    scale = max(1.0, size / min(width, height))
    return max(size, round(width * scale)) * max(size, round(height * scale))


def decode_tiles(source, size, count, max_image_pixels):
    """The tiles of a :func:`~sklearn_clipdet._images.load_source` result, decoded at full size.

    Decoding holds the image's pixels, as enlarged for a short side under
    ``size``, within the process's decoding budget (``DECODE_BUDGET``) until
    its tiles are cut; an image whose enlargement would pass ``max_image_pixels``
    (a thin strip) is refused like a larger one.
    """
    image = open_image(source, DecodeOptions(draft=False, max_image_pixels=max_image_pixels))
    pixels = enlarged_pixels(image.width, image.height, size)
    if max_image_pixels is not None and pixels > max_image_pixels:
        raise ValueError(
            f"image of {image.width}x{image.height} would have {pixels} pixels once its short "
            f"side is enlarged to {size} for the tiles, more than max_image_pixels="
            f"{max_image_pixels}"
        )
    with DECODE_BUDGET.reserve(pixels):
        try:
            return native_tiles(load_rgb(image), size, count)
        finally:
            if image is not source:  # ours: its pixels are freed within the budget
                image.close()
