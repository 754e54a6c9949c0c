"""CLIPFeaturizer: frozen open_clip embeddings of images and captions as a sklearn transformer."""

import contextlib
import hashlib
import json
import numbers
import os
import warnings
from collections.abc import Hashable

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._clip._backbone import load_backbone
from ._clip._cache import FeatureCache
from ._clip._image_layers import LAYER_OUTPUTS, layer_names, normalize_layers
from ._clip._inputs import fill_missing_texts, split_input
from ._constants import MODALITIES, ON_ERROR, PRECISIONS
from ._images._cuda_copies import InFlight
from ._images._decoding import (
    BatchRunner,
    ImageDecoder,
    Prepared,
    default_workers,
    jpeg_batch_device,
    ordered_map,
)
from ._images._reading import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageDecodeError,
    ImageDecodeWarning,
    check_pixel_limit,
    content_hash,
    describe_input,
    load_source,
    sample_errors,
)
from ._images._tile_view import TileView
from ._utils._sklearn_compat import Interval, StrOptions
from ._utils._validation import preview

__all__ = ["CLIPFeaturizer"]

_VIEWS = ("resize", "tiles", "resize+tiles")
_CACHE_FORMAT = 2  # bump when the meaning of stored vectors changes
_GPU_TEXT_BATCH = 1024  # captions per forward pass on a GPU, at least


class CLIPFeaturizer(TransformerMixin, BaseEstimator):
    """Embed images and captions with a frozen open_clip model.

    Each sample becomes one float32 row: the image embedding, then the text
    embedding (see ``modalities``). The model is loaded on the first
    transform, shared by featurizers with the same model settings in a
    process, and never pickled: a pickled featurizer holds its parameters
    only and reloads the model when used.

    Parameters
    ----------
    model_name : str, default="ViT-B-16"
        An open_clip architecture ("ViT-B-32", "ViT-L-14", ...), or a source
        with its own weights: ``"hf-hub:org/repo"`` or
        ``"local-dir:/path/to/folder"`` (a folder with ``open_clip_config.json``
        and the weights). ``pretrained`` is ignored for those two.
    pretrained : str or None, default="openai"
        A pretrained tag of ``model_name`` (see ``open_clip.list_pretrained()``),
        a local checkpoint file, or None for random weights.
    modalities : {"image+text", "image", "text"}, default="image+text"
        Which embeddings to compute; with both, the image block comes first.
    image_layers : "auto", "final", int or sequence of int and "final", default="auto"
        Which outputs of the image tower form the image block. ``"final"`` is
        the model's image embedding. A block number selects the class token
        after that transformer block, counted from 1 (``8`` is block 8 of 12;
        ``-1`` the last block); several layers are concatenated in the given
        order, all from one forward pass. ``"auto"`` is the class tokens of
        the blocks at one half, two thirds and five sixths of the tower's
        depth (blocks 6, 8 and 10 of 12 in ViT-B; 12, 16 and 20 of 24 in
        ViT-L/14), or ``"final"`` for towers without one (ResNet, timm
        towers). Intermediate blocks generalise better to generators not seen
        in training than the final embedding (UnivFD, RINE), and three blocks
        better than one (leave-one-source-out AUC of a linear probe on six
        photoreal-era sources: final 0.715, block 8 0.739, blocks 6+8+10
        0.769; ``benchmarks/bench_wild.py``). Reading up to block 10 of 12
        skips the last two blocks.
    views : {"resize", "tiles", "resize+tiles"}, default="resize"
        How the image tower sees each image. ``"resize"``: the model's own
        preprocessing (resize and centre crop to its input size). ``"tiles"``:
        ``n_tiles`` crops of the model's input size at the image's native
        resolution (the cells with the most varied grey levels of a grid laid
        over the image), each encoded on its own, their features (each layer
        L2-normalised if ``normalize``) averaged into one block. Resizing
        averages away the pixel-level traces of generation that native tiles
        keep: with both views, the leave-one-source-out AUC of a linear probe
        on six photoreal-era sources rose from 0.706 to 0.781
        (``benchmarks/bench_wild.py``). The tiles cost ``n_tiles`` more
        forward passes per image and a full-size decode; their block reads
        the same ``image_layers``.
    n_tiles : int, default=4
        Tiles per image in the ``"tiles"`` view (the best cell is repeated
        when an image has fewer cells).
    layer_output : {"norm", "raw", "projected"}, default="norm"
        How the class token of an intermediate block is read out: through the
        tower's final LayerNorm (``"norm"``), as it is (``"raw"``), or through
        the LayerNorm and the output projection (``"projected"``, the read-out
        the final embedding uses). Ignored for ``"final"``.
    image_column, text_column : str, default="image", "text"
        Columns of a DataFrame input holding the images and the captions.
    default_text : str or None, default=None
        Caption used for samples without one (None, NaN or an empty string)
        when text is requested; a warning gives the count. With None, such
        samples are an error.
    device : str, default="auto"
        Torch device; "auto" uses CUDA when available, else the CPU.
    precision : {"fp32", "fp16", "bf16", "int8"}, default="fp32"
        "fp16" and "bf16" need a GPU; "int8" is dynamic quantisation of the
        linear layers on CPU.
    batch_size : int, default=32
        Images per forward pass. Captions go in batches of the same size on
        the CPU, and of at least 1024 on a GPU (their forward pass is light).
    normalize : bool, default=True
        Scale each embedding (each image layer and the text separately) to
        unit L2 norm. The classifier standardises its inputs, after which
        this made no measurable difference to detection (see "Defaults,
        measured" in the user guide); it matters for heads that compare raw
        distances.
    on_error : {"raise", "nan"}, default="raise"
        What to do with an image that cannot be read (missing file, empty or
        truncated file, not an image, None, a path that is not a regular file,
        a file over ``max_image_bytes``, an image over ``max_image_pixels``).
        "raise" raises an
        :class:`~sklearn_clipdet.exceptions.ImageDecodeError` naming the sample;
        "nan" gives the sample a row of NaN, warns once with the indices and
        records them in ``failed_indices_``.
    max_image_pixels : int or None, default=89478485
        Encoded images with more pixels are refused as possible decompression
        bombs (PIL's default limit). None removes the limit. PIL's own
        process-wide ``PIL.Image.MAX_IMAGE_PIXELS`` is neither used nor changed.
    max_image_bytes : int or None, default=268435456
        Image files (and bytes) larger than this (256 MiB) are refused without
        being read. None removes the limit.
    draft_decode : bool, default=True
        Fast decoding: large JPEGs are decoded at a reduced scale (1/2, 1/4 or
        1/8) that stays at least three times the size the preprocessing
        resizes to, images are resized with torchvision's tensor kernels, and,
        when the model runs on CUDA, JPEGs are decoded on the GPU by nvJPEG.
        Much faster, with features very close to open_clip's (see the user
        guide); set False for results bit-identical to open_clip's own
        preprocessing, decoded by PIL on the CPU.
    cache_dir : str, path-like or None, default=None
        Folder of an on-disk cache of per-sample embeddings, keyed by the
        image content (or the text) and everything that changes the
        embedding. Shared safely by several processes. A cache that cannot be
        used (damaged or read-only file, a file given as folder) raises
        :class:`~sklearn_clipdet.exceptions.FeatureCacheError`.
    num_workers : int or None, default=None
        Threads that read and decode images while the model runs; None uses
        one per CPU core available to the process, 0 decodes in the calling
        thread. Whatever the number, decoding holds at most about 89.5 million
        decoded pixels at a time in the process (see the user guide).
    backbone_fingerprint : str or None, default=None
        Fingerprint of the backbone (its weights, preprocessing, tokenizer and
        open_clip version) that the features must come from, as recorded by
        :func:`~sklearn_clipdet.save_detector`. When the loaded backbone differs,
        transform warns: a classifier trained on other features gives
        meaningless scores. None skips the check.
    verbose : int, default=0
        Show a progress bar when > 0.

    Attributes
    ----------
    modalities_ : tuple of str
        The embeddings computed, in output order: ("image", "text"),
        ("image",) or ("text",).
    failed_indices_ : ndarray of int
        Indices of the samples that could not be read in the **last call to
        transform** (empty after ``fit``). Unlike other fitted attributes it
        is updated by ``transform``: it reports on the data just transformed.
    failures_ : list of ImageDecodeError
        The errors behind ``failed_indices_``, in the same order: each has the
        sample's ``index``, its ``source`` (path or kind) and the ``reason``.

    Notes
    -----
    ``fit`` learns nothing: it validates the parameters and the layout of
    ``X``. The input is images and text, not a numeric matrix, so
    ``n_features_in_`` is not defined.

    Images are read with EXIF orientation applied, the first frame of
    animated images, transparency composited on white and 16-bit images
    scaled to 8 bits; floating-point (mode "F") images are refused. With
    ``draft_decode=False`` and ``image_layers="final"`` the features equal
    open_clip's ``model.encode_image(preprocess(image))`` and
    ``model.encode_text(tokenizer(text))`` (L2-normalised if ``normalize``).
    Captions longer than the model's context length are cut by its tokenizer.

    The cache stores embeddings before normalisation, so changing
    ``normalize`` or ``modalities`` reuses entries; every other setting that
    changes an embedding (weights, precision, preprocessing, ``draft_decode``,
    decoding on the GPU or the CPU) misses.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_clipdet import CLIPFeaturizer
    >>> X = pd.DataFrame({"image": ["cat.jpg", "dog.png"], "text": ["a cat", None]})
    >>> featurizer = CLIPFeaturizer("ViT-B-32", pretrained="openai", default_text="a photo")
    >>> features = featurizer.fit_transform(X)  # doctest: +SKIP
    >>> features.shape  # doctest: +SKIP
    (2, 2816)

    The 2816 columns are the class tokens of blocks 6, 8 and 10 of 12
    (768 each) and the caption's embedding (512).
    """

    _parameter_constraints = {
        "model_name": [str],
        "pretrained": [str, os.PathLike, None],
        "modalities": [StrOptions(set(MODALITIES))],
        "image_layers": [StrOptions({"auto", "final"}), numbers.Integral, list, tuple],
        "views": [StrOptions(set(_VIEWS))],
        "n_tiles": [Interval(numbers.Integral, 1, None, closed="left")],
        "layer_output": [StrOptions(set(LAYER_OUTPUTS))],
        "image_column": [Hashable],
        "text_column": [Hashable],
        "default_text": [str, None],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "on_error": [StrOptions(set(ON_ERROR))],
        "max_image_pixels": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_image_bytes": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "draft_decode": ["boolean"],
        "cache_dir": [str, os.PathLike, None],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "backbone_fingerprint": [str, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model_name="ViT-B-16",
        pretrained="openai",
        *,
        modalities="image+text",
        image_layers="auto",
        views="resize",
        n_tiles=4,
        layer_output="norm",
        image_column="image",
        text_column="text",
        default_text=None,
        device="auto",
        precision="fp32",
        batch_size=32,
        normalize=True,
        on_error="raise",
        max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
        max_image_bytes=DEFAULT_MAX_IMAGE_BYTES,
        draft_decode=True,
        cache_dir=None,
        num_workers=None,
        backbone_fingerprint=None,
        verbose=0,
    ):
        self.model_name = model_name
        self.pretrained = pretrained
        self.modalities = modalities
        self.image_layers = image_layers
        self.views = views
        self.n_tiles = n_tiles
        self.layer_output = layer_output
        self.image_column = image_column
        self.text_column = text_column
        self.default_text = default_text
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.normalize = normalize
        self.on_error = on_error
        self.max_image_pixels = max_image_pixels
        self.max_image_bytes = max_image_bytes
        self.draft_decode = draft_decode
        self.cache_dir = cache_dir
        self.num_workers = num_workers
        self.backbone_fingerprint = backbone_fingerprint
        self.verbose = verbose

    # --- sklearn API -------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Validate the parameters and the layout of ``X``; nothing is learnt.

        Parameters
        ----------
        X : DataFrame, sequence or None
            A DataFrame with ``image_column`` and/or ``text_column``, or a
            sequence of images (of captions when ``modalities="text"``). None
            skips the layout check (the featurizer learns nothing from data).
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        self : CLIPFeaturizer
            The fitted featurizer.
        """
        self._validate_params()
        if X is not None:
            split_input(self, X)
        self.modalities_ = tuple(self.modalities.split("+"))
        self.failed_indices_ = np.array([], dtype=np.intp)
        self.failures_ = []
        return self

    def transform(self, X):
        """Embed each sample of ``X``.

        Parameters
        ----------
        X : DataFrame or sequence
            As in :meth:`fit`. Images may be str or path-like file paths,
            bytes, PIL images, or (H, W) / (H, W, C) uint8 arrays.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features), dtype float32
            One row per sample, in input order; the image block, then the
            text block. Rows of unreadable images are NaN when
            ``on_error="nan"``.
        """
        check_is_fitted(self)
        self._validate_params()
        images, texts = split_input(self, X)
        n_samples = len(X) if isinstance(X, pd.DataFrame) else len(
            images if images is not None else texts
        )
        if "text" in self.modalities_:
            texts = fill_missing_texts(self, texts, n_samples)
        backbone = self.load_backbone()
        if self.backbone_fingerprint not in (None, backbone.fingerprint):
            warnings.warn(
                f"The backbone {self.model_name!r} (pretrained={self.pretrained!r}) is not the "
                "one the detector was trained with: its weights, preprocessing, tokenizer or "
                "open_clip version changed, so the classifier's scores may be meaningless.",
                UserWarning,
                stacklevel=3,
            )
        blocks, errors, failed = [], [], np.zeros(n_samples, dtype=bool)
        with self._open_cache() as cache:
            if "image" in self.modalities_:
                image_blocks, errors = self._image_views(images, backbone, cache)
                blocks += image_blocks
                failed[[error.index for error in errors]] = True
            if "text" in self.modalities_:
                blocks.append(self._text_features(texts, backbone, cache))
        features = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        features[failed] = np.nan
        self.failed_indices_ = np.flatnonzero(failed)
        self.failures_ = errors
        if failed.any():
            warnings.warn(
                f"{failed.sum()} of {n_samples} images could not be read and got NaN features "
                f"(indices {preview(self.failed_indices_)}); first error: {errors[0]}. "
                "The indices are in failed_indices_.",
                ImageDecodeWarning,
                stacklevel=3,  # transform is wrapped by sklearn's set_output
            )
        return features

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the image block, then ``text_0, ...``.

        The image block is ``image_0, ...`` for the final embedding and
        ``image_block8_0, ...`` for the class token of block 8, in the order
        of ``image_layers``; the tiles view follows as ``tiles_block8_0, ...``.
        Loads the model (if not loaded yet) to learn the sizes.

        Parameters
        ----------
        input_features : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output column.
        """
        check_is_fitted(self)
        backbone = self.load_backbone()
        names = []
        if "image" in self.modalities_:
            layers, widths = self._image_layout(backbone)
            for view in self.views.split("+"):
                for prefix, width in zip(layer_names(layers), widths):
                    prefix = prefix if view == "resize" else prefix.replace("image", view, 1)
                    names += [f"{prefix}_{i}" for i in range(width)]
        if "text" in self.modalities_:
            names += [f"text_{i}" for i in range(backbone.text_dim)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    # --- validation --------------------------------------------------------------------------

    def _validate_params(self):
        super()._validate_params()  # scikit-learn checks _parameter_constraints
        if not self.model_name:
            raise ValueError("model_name must be a non-empty str.")
        if self.cache_dir is not None and not os.fspath(self.cache_dir):
            raise ValueError(
                "cache_dir='' would put the cache in the current folder; name a folder, or "
                "use None for no cache."
            )

    # --- model and cache ---------------------------------------------------------------------

    def load_backbone(self):
        """The open_clip backbone these settings select, loaded on first use.

        Featurizers with the same model settings (``model_name``,
        ``pretrained``, ``device``, ``precision``) share one loaded model per
        process, which is never pickled with them.

        Returns
        -------
        Backbone
            The model with its preprocessing, tokenizer and ``fingerprint``.
        """
        pretrained = os.fspath(self.pretrained) if self.pretrained is not None else None
        return load_backbone(
            self.model_name, pretrained, device=self.device, precision=self.precision
        )

    def _open_cache(self):
        if self.cache_dir is None:
            return contextlib.nullcontext()
        return FeatureCache(self.cache_dir)

    def _image_layout(self, backbone):
        """The image layers ``image_layers`` selects and the number of features of each."""
        layers = backbone.image_layers(self.image_layers)
        return layers, backbone.image_widths(layers, self.layer_output)

    def _cache_prefix(self, kind, backbone, decoder=None):
        # What changes a stored vector; never a FEATURE_NEUTRAL_PARAMS setting, nor normalize
        # or modalities (applied to the vectors after the cache).
        settings = {"format": _CACHE_FORMAT, "kind": kind, "backbone": backbone.fingerprint}
        if decoder is not None:
            settings["decoding"] = decoder.settings()
        if kind in ("image", "tiles"):
            layers = backbone.image_layers(self.image_layers)
            settings["layers"] = list(layers)
            if layers != ("final",):
                settings["layer_output"] = self.layer_output
        return json.dumps(settings, sort_keys=True)

    @staticmethod
    def _cache_key(prefix, content):
        return hashlib.blake2b(f"{prefix}|{content}".encode(), digest_size=20).hexdigest()

    def _encode_images(self, backbone, pixels):
        """Raw (not normalised) image features (n, d) of a (n, 3, H, W) batch of model inputs.

        Every image forward pass goes through this method. The backbone is the
        one the whole transform uses (and whose fingerprint keys the cache);
        the features are those of ``image_layers``. Returns a float32 tensor on
        the model's device (computed asynchronously there on a GPU; the caller
        copies it back) or an array.
        """
        layers = backbone.image_layers(self.image_layers)
        return backbone.encode_image(pixels, layers, self.layer_output)

    def _finish(self, block, widths=None):
        """``block``, each embedding (of ``widths`` columns each, default all) L2-normalised
        if ``normalize``."""
        return normalize_layers(block, widths) if self.normalize else block

    # --- images -------------------------------------------------------------------------------

    def _image_views(self, images, backbone, cache):
        """The image blocks of ``views``, in order, and the errors of either view (one a sample)."""
        blocks, errors = [], {}
        if "resize" in self.views:
            block, resize_errors = self._image_features(images, backbone, cache)
            blocks.append(block)
            errors.update((error.index, error) for error in resize_errors)
        if "tiles" in self.views:
            blocks.append(self._tile_features(images, backbone, cache, errors))
        return blocks, [errors[index] for index in sorted(errors)]

    def _tile_features(self, images, backbone, cache, errors):
        """The tiles view's block; images that failed already (``errors``) are not read again."""
        layers, widths = self._image_layout(backbone)
        view = TileView(backbone, layers, widths, self.layer_output, self.n_tiles,
                        bool(self.normalize), self.max_image_pixels, self.max_image_bytes)
        prefix = None
        if cache is not None:
            prefix = self._cache_prefix("tiles", backbone, view)

        def fail(error):
            if self.on_error == "raise":
                raise error
            errors.setdefault(error.index, error)

        pending = [index for index in range(len(images)) if index not in errors]
        block = np.full((len(images), sum(widths)), np.nan, dtype=np.float32)
        block[pending] = view.features(
            [images[index] for index in pending], cache=cache,
            cache_key=lambda content: self._cache_key(prefix, content),
            batch_size=self.batch_size,
            workers=default_workers() if self.num_workers is None else self.num_workers,
            fail=lambda error: fail(ImageDecodeError(pending[error.index], error.source,
                                                     error.reason)),
            verbose=self.verbose,
        )
        return block

    def _image_features(self, images, backbone, cache):
        """Embed all images, streaming: decoding runs ahead of the model in worker threads."""
        fast = bool(self.draft_decode)
        decoder = ImageDecoder(backbone, fast=fast, max_image_pixels=self.max_image_pixels,
                               jpeg_device=jpeg_batch_device(backbone.device, fast))
        prefix = self._cache_prefix("image", backbone, decoder) if cache is not None else None
        _, widths = self._image_layout(backbone)
        dim = sum(widths)
        features = np.full((len(images), dim), np.nan, dtype=np.float32)
        errors = []
        done = {}  # cache key -> row already computed in this call
        waiting = {}  # cache key -> rows with the same content as an image on its way

        def prepare(index, item):
            prepared = Prepared(index, item)
            try:
                with sample_errors(index, item):
                    source = load_source(item, self.max_image_bytes)
                    if cache is not None:
                        prepared.key = self._cache_key(prefix, content_hash(source))
                if cache is not None:
                    prepared.vector = cache.get(prepared.key, dim)
                    if prepared.vector is not None:
                        with sample_errors(index, item):
                            check_pixel_limit(source, self.max_image_pixels)
                        return prepared
                decoder.prepare(prepared, source)
            except ImageDecodeError as error:
                prepared.error = error
            return prepared

        def fail(error):
            if self.on_error == "raise":
                raise error
            errors.append(error)

        def failed_in_batch(prepared):
            fail(prepared.error)
            for row in waiting.pop(prepared.key, []):  # the same content fails the same way
                fail(ImageDecodeError(row, describe_input(images[row]), prepared.error.reason))

        def embedded(batch, vectors):
            for prepared, vector in zip(batch, vectors):
                features[prepared.index] = vector
                if prepared.key is not None:
                    done[prepared.key] = prepared.index
                    features[waiting.pop(prepared.key, [])] = vector
            if cache is not None:
                cache.put_many((prepared.key, vector) for prepared, vector in zip(batch, vectors))

        workers = default_workers() if self.num_workers is None else self.num_workers
        window = 2 * max(self.batch_size, workers)  # bounds the samples held ahead of the model
        stream = ordered_map(prepare, images, workers, window)
        runner = BatchRunner(decoder, lambda pixels: self._encode_images(backbone, pixels),
                             self.batch_size, on_done=embedded, on_error=failed_in_batch)
        progress = tqdm(total=len(images), desc="CLIP images", unit="img",
                        disable=self.verbose <= 0)
        with progress, contextlib.closing(stream), runner:
            for prepared in stream:
                progress.update()
                if prepared.error is not None:
                    fail(prepared.error)
                elif prepared.vector is not None:
                    features[prepared.index] = prepared.vector
                elif prepared.key in done:
                    features[prepared.index] = features[done[prepared.key]]
                elif prepared.key in waiting:
                    waiting[prepared.key].append(prepared.index)
                else:
                    if prepared.key is not None:
                        waiting[prepared.key] = []
                    runner.add(prepared)
            runner.finish()
        errors.sort(key=lambda error: error.index)
        return self._finish(features, widths), errors

    # --- texts -------------------------------------------------------------------------------

    def _text_features(self, texts, backbone, cache):
        """Embed the captions; each distinct caption is encoded (or read from the cache) once.

        On a GPU the captions of the next batch are tokenised while the device
        encodes the current one.
        """
        unique = list(dict.fromkeys(texts))
        vectors = {}
        keys = {}
        if cache is not None:
            prefix = self._cache_prefix("text", backbone)
            keys = {text: self._cache_key(prefix, text) for text in unique}
            stored = cache.get_many(keys.values(), backbone.text_dim)
            vectors = {text: stored[key] for text, key in keys.items() if key in stored}
        todo = [text for text in unique if text not in vectors]
        batch_size = self.batch_size
        if backbone.device.type == "cuda":
            batch_size = max(batch_size, _GPU_TEXT_BATCH)
        in_flight = InFlight()

        def deliver(wait):
            for chunk, encoded in in_flight.arrived(wait):
                vectors.update(zip(chunk, encoded))
                if cache is not None:
                    cache.put_many((keys[text], vector) for text, vector in zip(chunk, encoded))

        starts = range(0, len(todo), batch_size)
        for start in tqdm(starts, desc="CLIP texts", unit="batch",
                          disable=self.verbose <= 0 or not todo):
            chunk = todo[start:start + batch_size]
            in_flight.add(chunk, backbone.encode_text(backbone.tokenizer(chunk)))
            deliver(wait=False)
        deliver(wait=True)
        features = np.empty((len(texts), backbone.text_dim), dtype=np.float32)
        for i, text in enumerate(texts):
            features[i] = vectors[text]
        return self._finish(features)
