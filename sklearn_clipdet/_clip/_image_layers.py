"""Image features from intermediate blocks of a CLIP vision transformer.

The class (CLS) token after an intermediate transformer block carries more of
the low-level evidence of generation than the final, contrastively trained
embedding, and detectors built on it generalise better to unseen generators
(UnivFD reads the pre-projection feature; RINE, ECCV 2024, combines
intermediate blocks). This module turns a layer specification into the blocks
to read and reads them in one forward pass with open_clip's own
``VisionTransformer.forward_intermediates``.

A specification is ``"auto"``, ``"final"``, a block number, or a sequence of
block numbers and ``"final"``. Blocks are counted from 1 (block 8 of 12 is
``8``), negative numbers from the end (``-1`` is the last block); ``"final"``
is the model's image embedding. ``"auto"`` picks the blocks at one half, two
thirds and five sixths of the depth (6, 8 and 10 of 12; 12, 16 and 20 of 24) where
the tower has a class token, else ``"final"``: on six photoreal-era sources, left
out one at a time, blocks 6+8+10 of ViT-B/16 beat block 8 alone and the final
embedding (``benchmarks/bench_wild.py``); deeper towers read the same fractions.
"""

import numbers

import numpy as np
import torch

__all__ = [
    "LAYER_OUTPUTS",
    "encode_image_layers",
    "layer_names",
    "layer_widths",
    "normalize_layers",
    "resolve_image_layers",
    "tower_depth",
]

#: How an intermediate class token is read out: as it is, through the tower's
#: final LayerNorm, or through the LayerNorm and the output projection.
LAYER_OUTPUTS = ("raw", "norm", "projected")
FINAL = "final"
AUTO_DEPTHS = (1 / 2, 2 / 3, 5 / 6)  # fractions of the depth that "auto" reads


def tower_depth(visual):
    """Number of transformer blocks of an open_clip vision transformer, or None for other towers.

    Only towers with a class token and open_clip's ``forward_intermediates`` count:
    open_clip's own ``VisionTransformer`` (the OpenAI and LAION ViT models).
    """
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if (
        blocks is None
        or getattr(visual, "class_embedding", None) is None
        or not hasattr(visual, "forward_intermediates")
    ):
        return None
    return len(blocks)


def resolve_image_layers(spec, visual):
    """The image-tower outputs a specification selects, as a tuple of block numbers and "final".

    Parameters
    ----------
    spec : "auto", "final", int or sequence of int and "final"
        See the module docstring.
    visual : torch.nn.Module
        The model's image tower (``model.visual``).

    Returns
    -------
    tuple
        Block numbers (1-based, positive) and ``"final"``, in the order given.

    Raises
    ------
    ValueError
        For a block number outside the tower, a repeated entry, an empty
        sequence, or block numbers on a tower without class tokens.
    """
    depth = tower_depth(visual)
    if isinstance(spec, str) and spec == "auto":
        if depth is None:
            return (FINAL,)
        return tuple(dict.fromkeys(max(1, round(f * depth)) for f in AUTO_DEPTHS))
    entries = (spec,) if isinstance(spec, (str, numbers.Integral)) else tuple(spec)
    if not entries:
        raise ValueError("image_layers must name at least one layer.")
    resolved = []
    for entry in entries:
        if isinstance(entry, str) and entry == FINAL:
            resolved.append(FINAL)
            continue
        if not isinstance(entry, numbers.Integral) or isinstance(entry, bool):
            raise ValueError(
                f"image_layers entries must be block numbers or 'final', got {entry!r}."
            )
        if depth is None:
            raise ValueError(
                f"image_layers={spec!r} asks for intermediate blocks, but the image tower "
                f"({type(visual).__name__}) is not a vision transformer with a class token; "
                "use image_layers='final'."
            )
        block = int(entry) + depth + 1 if entry < 0 else int(entry)
        if not 1 <= block <= depth:
            raise ValueError(
                f"image_layers entry {entry} is outside the tower's {depth} blocks (use 1 to "
                f"{depth}, or -1 to -{depth} counting from the end)."
            )
        resolved.append(block)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"image_layers {spec!r} names a layer twice.")
    return tuple(resolved)


def layer_names(layers):
    """Feature-name prefix of each layer: ``"image"`` (final embedding) or ``"image_block8"``."""
    return ["image" if layer == FINAL else f"image_block{layer}" for layer in layers]


def normalize_layers(rows, widths=None):
    """``rows`` (..., sum(widths)) with each layer's block of ``widths`` columns scaled to unit
    L2 norm (all columns as one block when ``widths`` is None), as torch's ``normalize``
    does: a norm under 1e-12 counts as 1e-12."""
    widths = [rows.shape[-1]] if widths is None else widths
    parts = np.split(rows, np.cumsum(widths)[:-1], axis=-1)
    return np.concatenate(
        [part / np.maximum(np.linalg.norm(part, axis=-1, keepdims=True), 1e-12)
         for part in parts], axis=-1
    ).astype(rows.dtype, copy=False)


def layer_widths(visual, layers, layer_output, final_width):
    """Number of features each layer contributes (``final_width`` for the final embedding)."""
    if any(layer != FINAL for layer in layers) and layer_output == "projected":
        token_width = final_width if visual.proj is None else visual.proj.shape[1]
    else:
        token_width = visual.transformer.width if tower_depth(visual) else None
    return [final_width if layer == FINAL else token_width for layer in layers]


def encode_image_layers(visual, pixels, layers, layer_output="norm"):
    """Image features of the selected layers, concatenated in order, from one forward pass.

    Parameters
    ----------
    visual : torch.nn.Module
        The image tower, in eval mode.
    pixels : torch.Tensor of shape (n, 3, H, W)
        Model input, on the tower's device and in its dtype.
    layers : tuple
        As returned by :func:`resolve_image_layers`.
    layer_output : {"raw", "norm", "projected"}, default="norm"
        Read-out of the intermediate class tokens (see :data:`LAYER_OUTPUTS`).

    Returns
    -------
    torch.Tensor of shape (n, n_features)
        On the tower's device, in its dtype.
    """
    if layer_output not in LAYER_OUTPUTS:
        raise ValueError(f"layer_output must be one of {LAYER_OUTPUTS}, got {layer_output!r}.")
    blocks = [layer for layer in layers if layer != FINAL]
    indices = sorted({block - 1 for block in blocks})
    out = visual.forward_intermediates(
        pixels,
        indices=indices,
        stop_early=FINAL not in layers,
        intermediates_only=FINAL not in layers,
        output_fmt="NLC",
        output_extra_tokens=True,
    )
    class_tokens = {
        index + 1: prefix[:, 0] for index, prefix in zip(indices, out["image_intermediates_prefix"])
    }
    parts = []
    for layer in layers:
        if layer == FINAL:
            parts.append(out["image_features"])
            continue
        token = class_tokens[layer]
        if layer_output in ("norm", "projected"):
            token = visual.ln_post(token)
        if layer_output == "projected" and visual.proj is not None:
            token = token @ visual.proj
        parts.append(token)
    return torch.cat(parts, dim=-1)
