"""Image perturbations as scikit-learn transformers, applied before the featurizer.

Each transformer reads images of any kind :class:`~sklearn_clipdet.CLIPFeaturizer`
accepts (paths, bytes, PIL images, uint8 arrays), alone in a sequence or in the
image column of a DataFrame, and returns the same container with perturbed
images: PIL RGB images, or JPEG bytes for :class:`JPEGCompress`. They learn
nothing, so they can be put in front of a fitted detector::

    make_pipeline(JPEGCompress(quality=50), detector)

Images are decoded at full resolution (EXIF orientation applied), so the
perturbation acts on the picture a user would share, before the model's own
resizing. Expect memory of about ``3 * width * height`` bytes per image held.
Images over the featurizer's default pixel and file-size limits are refused
before their pixels are decoded.
"""

import io
from numbers import Integral, Real

import numpy as np
from PIL import Image, ImageFilter
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from .._images import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DecodeOptions,
    load_rgb,
    load_source,
    open_image,
    sample_errors,
)
from .._utils._sklearn_compat import Interval, StrOptions, validate_parameter_constraints
from ._common import split_images

__all__ = ["CenterCrop", "GaussianBlur", "GaussianNoise", "JPEGCompress", "Resize"]

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImagePerturbation(TransformerMixin, BaseEstimator):
    """Base class: input handling, validation and the per-image loop.

    Subclasses set ``level_param`` (the parameter that sets the strength) and
    implement ``_perturb(image, index, seed)``; images at an identity level
    (``is_identity``) are copied without calling it.
    """

    level_param = None
    _parameter_constraints = {"image_column": [str]}

    def fit(self, X, y=None):
        """Check the parameters and the layout of ``X``; nothing is learnt.

        Parameters
        ----------
        X : DataFrame or sequence of images
            Images, or a DataFrame with an ``image_column``.
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        split_images(X, self.image_column)
        return self

    def transform(self, X):
        """Perturb every image of ``X``.

        Parameters
        ----------
        X : DataFrame or sequence of images
            Images (file paths, bytes, PIL images or uint8 arrays), or a
            DataFrame whose ``image_column`` holds them. ``X`` is not modified.

        Returns
        -------
        X_perturbed : DataFrame, Series or list
            A DataFrame (a copy: other columns unchanged) or Series for those
            inputs, a list otherwise, holding the perturbed images.

        Raises
        ------
        sklearn_clipdet.exceptions.ImageDecodeError
            If an image cannot be read; the message names its index.
        """
        self._check_params()
        images, rebuild = split_images(X, self.image_column)
        return rebuild(self.perturb_items(images, offset=0, seed=self.draw_seed()))

    @property
    def level(self):
        """Value of the parameter that sets the strength (e.g. ``quality``)."""
        return getattr(self, self.level_param)

    @property
    def is_identity(self):
        """True when the perturbation leaves the pixels unchanged (e.g. ``sigma=0``)."""
        return False

    def __sklearn_is_fitted__(self):
        return True  # stateless

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    # --- shared by transform and robustness_report (which calls it chunk by chunk) ----------

    def draw_seed(self):
        """Seed of one transform call; per-image generators derive from it and the index."""
        return None

    def perturb_items(self, images, offset, seed, *, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
                      max_image_bytes=DEFAULT_MAX_IMAGE_BYTES, max_pixels_held=None):
        """Perturb ``images``, the samples ``offset, offset + 1, ...`` of the whole input.

        Parameters
        ----------
        images : list
            The images, of any kind the featurizer reads.
        offset : int
            Index of the first image in the whole input (for errors and the noise).
        seed : int or None
            The seed of :meth:`draw_seed`.
        max_image_pixels, max_image_bytes : int or None
            Images with more pixels, or files with more bytes, are refused before
            their pixels are decoded (None: no limit), as by the featurizer.
        max_pixels_held : int or None, default=None
            Stop before the image whose decoded pixels would take the total of the
            images perturbed past this number (the first image is always
            perturbed); None perturbs every image.

        Returns
        -------
        list
            The perturbed images, the first ``len(images)`` or, with
            ``max_pixels_held``, fewer.
        """
        self._check_params()
        options = DecodeOptions(max_image_pixels=max_image_pixels)
        out, held = [], 0
        for i, item in enumerate(images, start=offset):
            with sample_errors(i, item):
                image = open_image(load_source(item, max_image_bytes), options)  # header only
                pixels = image.width * image.height
                if max_pixels_held is not None and out and held + pixels > max_pixels_held:
                    break
                image = load_rgb(image)
                out.append(image.copy() if self.is_identity else self._perturb(image, i, seed))
                held += pixels
        return out

    def _check_params(self):
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), type(self).__name__
        )


class JPEGCompress(ImagePerturbation):
    """Re-encode each image as JPEG at a given quality.

    Parameters
    ----------
    quality : int in [1, 100], default=75
        JPEG quality (PIL/libjpeg scale); lower is harsher.
    image_column : str, default="image"
        Column holding the images when ``X`` is a DataFrame.

    Notes
    -----
    The output is the encoded JPEG bytes (4:2:0 chroma subsampling, PIL's
    default), so the featurizer decodes exactly what a viewer would.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clipdet.evaluation import JPEGCompress
    >>> out = JPEGCompress(quality=30).fit_transform([np.zeros((8, 8, 3), np.uint8)])
    >>> out[0][:2]
    b'\\xff\\xd8'
    """

    level_param = "quality"
    _parameter_constraints = {
        **ImagePerturbation._parameter_constraints,
        "quality": [Interval(Integral, 1, 100, closed="both")],
    }

    def __init__(self, quality=75, *, image_column="image"):
        self.quality = quality
        self.image_column = image_column

    def _perturb(self, image, index, seed):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(self.quality))
        return buffer.getvalue()


class Resize(ImagePerturbation):
    """Rescale each image by a factor.

    Parameters
    ----------
    scale : float > 0, default=0.5
        Factor applied to width and height (rounded, at least 1 pixel).
        Below 1 removes detail; 1 leaves the image unchanged.
    resample : {"bicubic", "bilinear", "lanczos", "nearest"}, default="bicubic"
        PIL resampling filter.
    image_column : str, default="image"
        Column holding the images when ``X`` is a DataFrame.
    """

    level_param = "scale"
    _parameter_constraints = {
        **ImagePerturbation._parameter_constraints,
        "scale": [Interval(Real, 0, None, closed="neither")],
        "resample": [StrOptions(set(_RESAMPLING))],
    }

    def __init__(self, scale=0.5, *, resample="bicubic", image_column="image"):
        self.scale = scale
        self.resample = resample
        self.image_column = image_column

    @property
    def is_identity(self):
        """Whether the perturbation leaves the pixels unchanged: scale == 1.

        Returns
        -------
        bool
            True for ``scale == 1``, whose transform returns the images as given.
        """
        return self.scale == 1

    def _perturb(self, image, index, seed):
        size = (max(1, round(image.width * self.scale)), max(1, round(image.height * self.scale)))
        return image.resize(size, _RESAMPLING[self.resample])


class GaussianBlur(ImagePerturbation):
    """Blur each image with a Gaussian kernel.

    Parameters
    ----------
    sigma : float >= 0, default=1.0
        Standard deviation of the kernel in pixels of the full-size image;
        0 leaves the image unchanged.
    image_column : str, default="image"
        Column holding the images when ``X`` is a DataFrame.
    """

    level_param = "sigma"
    _parameter_constraints = {
        **ImagePerturbation._parameter_constraints,
        "sigma": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, sigma=1.0, *, image_column="image"):
        self.sigma = sigma
        self.image_column = image_column

    @property
    def is_identity(self):
        """Whether the perturbation leaves the pixels unchanged: sigma == 0.

        Returns
        -------
        bool
            True for ``sigma == 0``, whose transform returns the images as given.
        """
        return self.sigma == 0

    def _perturb(self, image, index, seed):
        return image.filter(ImageFilter.GaussianBlur(radius=float(self.sigma)))


_STRIP_VALUES = 1 << 22  # pixel values GaussianNoise perturbs at a time (16 MiB of float32)


class GaussianNoise(ImagePerturbation):
    """Add i.i.d. Gaussian noise to every pixel value, then clip to [0, 255].

    Parameters
    ----------
    std : float >= 0, default=5.0
        Standard deviation of the noise on the 0-255 pixel scale; 0 leaves
        the image unchanged.
    random_state : int, RandomState instance or None, default=None
        Seeds the noise. With an int, a sample's noise depends only on the
        seed and its position in ``X``, so repeated calls give the same
        images.
    image_column : str, default="image"
        Column holding the images when ``X`` is a DataFrame.
    """

    level_param = "std"
    _parameter_constraints = {
        **ImagePerturbation._parameter_constraints,
        "std": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, std=5.0, *, random_state=None, image_column="image"):
        self.std = std
        self.random_state = random_state
        self.image_column = image_column

    @property
    def is_identity(self):
        """Whether the perturbation leaves the pixels unchanged: std == 0.

        Returns
        -------
        bool
            True for ``std == 0``, whose transform returns the images as given.
        """
        return self.std == 0

    def draw_seed(self):
        """Seed of one transform call, drawn from ``random_state``.

        Returns
        -------
        int
            The seed from which each image's noise generator derives, with the
            image's index.
        """
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _perturb(self, image, index, seed):
        rng = np.random.default_rng([seed, index])
        pixels = np.array(image, dtype=np.uint8)
        # Strips of rows: float copies of a strip, not of the image (the draws are the same).
        step = max(1, _STRIP_VALUES // max(1, pixels[0].size))
        for start in range(0, len(pixels), step):
            strip = pixels[start:start + step]
            noisy = strip.astype(np.float32)
            noisy += rng.standard_normal(strip.shape, dtype=np.float32) * np.float32(self.std)
            strip[...] = np.clip(np.rint(noisy), 0, 255)
        return Image.fromarray(pixels)


class CenterCrop(ImagePerturbation):
    """Keep the central part of each image.

    Parameters
    ----------
    fraction : float in (0, 1], default=0.8
        Fraction of the width and of the height kept (the area kept is
        ``fraction ** 2``); 1 leaves the image unchanged.
    image_column : str, default="image"
        Column holding the images when ``X`` is a DataFrame.
    """

    level_param = "fraction"
    _parameter_constraints = {
        **ImagePerturbation._parameter_constraints,
        "fraction": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, fraction=0.8, *, image_column="image"):
        self.fraction = fraction
        self.image_column = image_column

    @property
    def is_identity(self):
        """Whether the perturbation leaves the pixels unchanged: fraction == 1.

        Returns
        -------
        bool
            True for ``fraction == 1``, whose transform returns the images as given.
        """
        return self.fraction == 1

    def _perturb(self, image, index, seed):
        width = max(1, round(image.width * self.fraction))
        height = max(1, round(image.height * self.fraction))
        left, top = (image.width - width) // 2, (image.height - height) // 2
        return image.crop((left, top, left + width, top + height))
