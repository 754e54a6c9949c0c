"""Where the evidence is: a score for every native-resolution cell of an image.

A detector whose features include the ``"tiles"`` view pools a few native-resolution
tiles of each image. :func:`tile_scores` scores every cell of the same grid, each as if
the image's tiles all looked like that cell (the rest of the features unchanged), so the
cells that push the score up stand out; :func:`plot_tile_scores` draws them over the
image. The cells the detector actually pools are marked.
"""

import numpy as np
import pandas as pd
from sklearn.base import clone

from .._images._reading import DecodeOptions, decode_image, load_source
from .._images._tiles import choose_tiles, enlarge_to
from ._common import check_pipeline, generated_label, new_figure, save_figure

__all__ = ["plot_tile_scores", "tile_scores"]


def tile_scores(detector, image):
    """Score every native-resolution grid cell of ``image`` with ``detector``.

    Parameters
    ----------
    detector : Pipeline
        A fitted detector whose featurizer computes the ``"tiles"`` view
        (``views="resize+tiles"`` or ``"tiles"``), such as the shipped one.
    image : str, path-like, bytes, PIL image or uint8 array
        One image.

    Returns
    -------
    DataFrame
        One row per grid cell, row-major, with columns ``left``, ``top``,
        ``right``, ``bottom`` (pixels of the image after EXIF orientation and,
        for images with a side under the tile size, enlargement), ``entropy``
        (the tile rule's score), ``pooled`` (whether the detector's tiles view
        uses this cell) and ``score`` (the probability of "generated" with
        every tile replaced by this cell). ``attrs["image_score"]`` holds the
        detector's score of the whole image.

    Raises
    ------
    ValueError
        When the detector has no tiles view.
    """
    check_pipeline(detector, "tile_scores")
    featurizer, head = detector[0], detector[-1]
    views = featurizer.views.split("+")
    if "tiles" not in views:
        raise ValueError(
            f"tile_scores needs a detector whose featurizer reads tiles (views="
            f"{featurizer.views!r}); use views='resize+tiles'."
        )
    source = load_source(image, featurizer.max_image_bytes)
    size = featurizer.load_backbone().image_size[0]
    options = DecodeOptions(draft=False, max_image_pixels=featurizer.max_image_pixels)
    picture = enlarge_to(decode_image(source, options), size)
    chosen, cells, entropies = choose_tiles(picture, size, featurizer.n_tiles)
    pixels = np.asarray(picture)
    crops = [pixels[top:bottom, left:right] for left, top, right, bottom in cells]
    whole = featurizer.transform([image])
    # Each cell's features, read as an image of the model's own size (its resize view).
    per_cell = clone(featurizer).set_params(views="resize").fit(None).transform(crops)
    width = per_cell.shape[1]
    tiles_start = views.index("tiles") * width
    rows = np.repeat(whole, len(crops), axis=0)
    rows[:, tiles_start:tiles_start + width] = per_cell
    positive = list(head.classes_).index(generated_label(head))
    table = pd.DataFrame(cells, columns=["left", "top", "right", "bottom"])
    table["entropy"] = entropies
    table["pooled"] = [cell in chosen for cell in cells]
    scorer = detector[1:]  # any steps between the featurizer and the head, then the head
    table["score"] = scorer.predict_proba(rows)[:, positive]
    table.attrs["image_score"] = float(scorer.predict_proba(whole)[0, positive])
    table.attrs["size"] = picture.size
    return table


def plot_tile_scores(image, table, *, ax=None, path=None, cmap="coolwarm"):
    """Draw ``image`` with the score of every cell of :func:`tile_scores` over it.

    Parameters
    ----------
    image : str, path-like, bytes, PIL image or uint8 array
        The image given to :func:`tile_scores`.
    table : DataFrame
        What :func:`tile_scores` returned for it.
    ax : matplotlib Axes or None, default=None
        Where to draw; None makes a new figure.
    path : str, path-like or None, default=None
        Also write the figure there (format from the extension), whole or not
        at all.
    cmap : str, default="coolwarm"
        Colour map of the scores, from 0 (real) to 1 (generated).

    Returns
    -------
    matplotlib Axes
        The axes drawn on.
    """
    import matplotlib as mpl

    picture = decode_image(load_source(image, None), DecodeOptions(draft=False,
                                                                   max_image_pixels=None))
    if picture.size != table.attrs.get("size", picture.size):
        picture = picture.resize(table.attrs["size"])
    if ax is None:
        _, (ax,) = new_figure(1, (8, 6), interactive=path is None)
    colours = mpl.colormaps[cmap]
    ax.imshow(picture)
    for row in table.itertuples():
        colour = colours(row.score)
        ax.add_patch(mpl.patches.Rectangle(
            (row.left, row.top), row.right - row.left, row.bottom - row.top,
            facecolor=(*colour[:3], 0.35), edgecolor="black" if row.pooled else "none",
            linewidth=2 if row.pooled else 0))
        ax.text((row.left + row.right) / 2, (row.top + row.bottom) / 2, f"{row.score:.2f}",
                ha="center", va="center", fontsize=8, color="white",
                bbox={"facecolor": "black", "alpha": 0.4, "pad": 1, "linewidth": 0})
    score = table.attrs.get("image_score")
    title = "score of each native-resolution cell (outlined: pooled by the detector)"
    ax.set_title(title if score is None else f"image score {score:.2f}; {title}", fontsize=9)
    ax.set_axis_off()
    if path is not None:
        save_figure(ax.figure, path, close=False)
    return ax
