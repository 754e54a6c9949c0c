"""How a fitted detector's metrics change when its test images are perturbed."""

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from ._common import (
    binary_targets,
    check_finite_features,
    check_pipeline,
    default_threshold,
    generated_label,
    new_figure,
    positive_scores,
    save_figure,
    split_images,
    take,
)
from .metrics import detection_report
from .perturbations import (
    CenterCrop,
    GaussianBlur,
    GaussianNoise,
    ImagePerturbation,
    JPEGCompress,
    Resize,
)

__all__ = ["default_perturbations", "plot_robustness", "robustness_report"]

# Parameters whose smaller values are harsher: their plots run from high to low.
_DECREASING = {"quality", "scale", "fraction"}
# Decoded pixels of the images perturbed at once: the featurizer's decoding budget.
# A larger image is perturbed alone.
_PIXELS_HELD = DEFAULT_MAX_IMAGE_PIXELS


def default_perturbations(random_state=0):
    """The perturbations of :func:`robustness_report` when none are given.

    Parameters
    ----------
    random_state : int, RandomState instance or None, default=0
        Seed of the Gaussian noise.

    Returns
    -------
    perturbations : dict of str to list of transformers
        ``"jpeg"`` (quality 90, 75, 50, 30), ``"resize"`` (scale 0.75, 0.5,
        0.25), ``"blur"`` (sigma 1, 2, 4), ``"noise"`` (std 2, 5, 10 on the
        0-255 scale) and ``"crop"`` (centre fraction 0.9, 0.75, 0.5).
    """
    return {
        "jpeg": [JPEGCompress(quality) for quality in (90, 75, 50, 30)],
        "resize": [Resize(scale) for scale in (0.75, 0.5, 0.25)],
        "blur": [GaussianBlur(sigma) for sigma in (1.0, 2.0, 4.0)],
        "noise": [GaussianNoise(std, random_state=random_state) for std in (2.0, 5.0, 10.0)],
        "crop": [CenterCrop(fraction) for fraction in (0.9, 0.75, 0.5)],
    }


def robustness_report(
    pipe,
    X,
    y,
    perturbations=None,
    *,
    threshold=None,
    fpr_targets=(0.01, 0.05),
    n_bootstraps=0,
    confidence_level=0.95,
    random_state=None,
    pos_label=None,
    image_column=None,
    chunk_size=32,
    verbose=0,
):
    """Metrics of a fitted detector on clean and on perturbed copies of its test images.

    The feature steps of ``pipe`` (all steps but the last) encode the clean
    images once; then each distinct perturbation level perturbs the images and
    encodes them once, in chunks of ``chunk_size`` images (fewer when their
    decoded pixels pass the featurizer's decoding budget, about 89.5 million).
    Images are decoded within the first step's ``max_image_pixels`` and
    ``max_image_bytes`` (CLIPFeaturizer's). Levels that leave
    the images unchanged (``GaussianBlur(0)``, ``Resize(1)``, ...) reuse the
    clean features. The classifier (last step) only scores features.

    Parameters
    ----------
    pipe : Pipeline
        A fitted detector, e.g. from :func:`~sklearn_clipdet.make_detector`.
    X : DataFrame or sequence of images
        Held-out test samples, as the pipeline takes them. Other columns (such
        as captions) are passed on unchanged.
    y : array-like of shape (n_samples,)
        True labels.
    perturbations : dict of str to list of transformers, default=None
        Named series of perturbation levels, e.g.
        ``{"jpeg": [JPEGCompress(q) for q in (90, 50)]}``; a single transformer
        may stand for a one-level list. The level of a transformer is its
        ``level`` attribute (``quality`` of :class:`JPEGCompress`, ...), else
        its position in the list. None uses :func:`default_perturbations`.
    threshold : float or None, default=None
        Threshold of the accuracy; None means 0.5 when the classifier has
        ``predict_proba`` (scores are probabilities), else 0.
    fpr_targets : sequence of float, default=(0.01, 0.05)
        False-positive rates at which the true-positive rate is reported.
    n_bootstraps : int, default=0
        Bootstrap resamples of the intervals; by default none are computed
        (NaN bounds).
    confidence_level : float in (0, 1), default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling. All four as in
        :func:`~sklearn_clipdet.evaluation.detection_report`.
    pos_label : int, str or None, default=None
        Label of generated images, whose probability is the score; None means the
        classifier's ``generated_label_`` (``classes_[1]`` for classifiers without one).
    image_column : str or None, default=None
        Column of ``X`` holding the images; None takes the first step's
        ``image_column`` (CLIPFeaturizer's), else "image".
    chunk_size : int, default=32
        Images perturbed and encoded at a time; bounds the memory held by
        full-resolution perturbed images.
    verbose : int, default=0
        Show a progress bar over the perturbed images when > 0.

    Returns
    -------
    report : DataFrame
        Tidy table with columns ``perturbation`` (``"none"`` for the clean
        images), ``parameter`` (e.g. ``"quality"``), ``level``, ``metric``,
        ``value``, ``ci_low`` and ``ci_high``; one row per perturbation level
        and metric. ``report.attrs["encoded_images"]`` counts the images the
        feature steps encoded (clean ones included).

    Examples
    --------
    >>> from sklearn_clipdet.evaluation import JPEGCompress, robustness_report
    >>> report = robustness_report(  # doctest: +SKIP
    ...     detector, X_test, y_test, {"jpeg": [JPEGCompress(q) for q in (90, 50, 30)]})
    >>> report.query("metric == 'roc_auc'")  # doctest: +SKIP
    >>> plot_robustness(report, path="robustness.png")  # doctest: +SKIP
    """
    check_pipeline(pipe, "robustness_report")
    check_is_fitted(pipe)
    features_of, classifier = pipe[:-1], pipe[-1]
    if pos_label is None:
        pos_label = generated_label(classifier)
    targets, pos_label = binary_targets(y, pos_label)
    if len(targets) != len(X):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(targets)}.")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}.")
    series = _check_perturbations(default_perturbations() if perturbations is None
                                  else perturbations)
    first_step = pipe.steps[0][1]
    if image_column is None:
        image_column = getattr(first_step, "image_column", "image")
    limits = {"max_image_pixels": getattr(first_step, "max_image_pixels",
                                          DEFAULT_MAX_IMAGE_PIXELS),
              "max_image_bytes": getattr(first_step, "max_image_bytes", DEFAULT_MAX_IMAGE_BYTES)}
    if threshold is None:
        threshold = default_threshold(classifier)

    def report_rows(name, parameter, level, scores):
        table = detection_report(
            targets, scores, threshold=threshold, fpr_targets=fpr_targets,
            n_bootstraps=n_bootstraps, confidence_level=confidence_level,
            random_state=random_state,
        )
        table.insert(0, "perturbation", name)
        table.insert(1, "parameter", parameter)
        table.insert(2, "level", level)
        return table

    clean = features_of.transform(X)
    check_finite_features(clean, "the clean images")
    clean_scores = positive_scores(classifier, clean, pos_label)
    tables = [report_rows("none", None, np.nan, clean_scores)]
    to_encode = {_key(p): p for levels in series.values() for p in levels
                 if not getattr(p, "is_identity", False)}  # equal levels are encoded once
    perturbed_scores = {}
    with tqdm(total=len(to_encode) * len(X), desc="perturbed images", unit="img",
              disable=verbose <= 0) as progress:
        for key, perturbation in to_encode.items():
            features = _perturbed_features(
                features_of, X, perturbation, image_column, chunk_size, limits, progress
            )
            check_finite_features(features, f"the images perturbed by {perturbation!r}")
            perturbed_scores[key] = positive_scores(classifier, features, pos_label)
    for name, levels in series.items():
        for position, perturbation in enumerate(levels):
            if getattr(perturbation, "is_identity", False):
                scores = clean_scores
            else:
                scores = perturbed_scores[_key(perturbation)]
            parameter = getattr(perturbation, "level_param", None)
            level = getattr(perturbation, "level", position)
            tables.append(report_rows(name, parameter, level, scores))
    report = pd.concat(tables, ignore_index=True)
    report.attrs = {"encoded_images": len(X) * (1 + len(to_encode)), "n_samples": len(X)}
    return report


def plot_robustness(report, *, metric="roc_auc", ax=None, path=None):
    """Draw a metric against the perturbation level, one panel per perturbation.

    The clean value is a dashed horizontal line; bootstrap intervals, when
    present, a shaded band. Levels run from mild to harsh, left to right.

    Parameters
    ----------
    report : DataFrame
        A :func:`robustness_report` table.
    metric : str, default="roc_auc"
        The metric to draw (a value of the ``metric`` column).
    ax : matplotlib Axes or array of Axes, default=None
        One Axes per perturbation (a single Axes when there is one). None
        makes a new figure.
    path : str, path-like or None, default=None
        Write the figure to this file (PNG by its extension); a figure made
        here is then closed.

    Returns
    -------
    axes : ndarray of matplotlib Axes
        One Axes per perturbation, in the report's order.
    """
    rows = report[report["metric"] == metric]
    if rows.empty:
        raise ValueError(
            f"The report has no metric {metric!r}; it has {report['metric'].unique().tolist()}."
        )
    names = [name for name in rows["perturbation"].unique() if name != "none"]
    if not names:
        raise ValueError("The report holds no perturbed levels to plot.")
    own_figure = ax is None
    if own_figure:
        figure, axes = new_figure(len(names), (3.4, 3.0), interactive=path is None, sharey=True)
    else:
        axes = np.ravel(np.asarray(ax, dtype=object))
        if len(axes) != len(names):
            raise ValueError(
                f"ax must hold one Axes per perturbation ({len(names)}: {names}), "
                f"got {len(axes)}."
            )
        figure = axes[0].figure
    clean = rows.loc[rows["perturbation"] == "none", "value"]
    for axis, name in zip(axes, names):
        part = rows[rows["perturbation"] == name].sort_values("level")
        level = part["level"].to_numpy(dtype=float)
        axis.plot(level, part["value"], marker="o", label=name)
        if part["ci_low"].notna().all():
            axis.fill_between(level, part["ci_low"], part["ci_high"], alpha=0.2)
        if not clean.empty:
            axis.axhline(clean.iloc[0], linestyle="--", color="grey", linewidth=1, label="clean")
        parameter = part["parameter"].iloc[0]
        axis.set_xlabel(parameter if isinstance(parameter, str) else "level")
        if parameter in _DECREASING and not axis.xaxis_inverted():
            axis.invert_xaxis()
        axis.set_title(name)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[0].legend(loc="lower left", fontsize="small")
    if path is not None:
        save_figure(figure, path, close=own_figure)
    return axes


def _check_perturbations(perturbations):
    if not isinstance(perturbations, dict) or not perturbations:
        raise TypeError(
            "perturbations must be a non-empty dict of name -> list of transformers, e.g. "
            "{'jpeg': [JPEGCompress(90), JPEGCompress(50)]}."
        )
    series = {}
    for name, levels in perturbations.items():
        if name == "none":
            raise ValueError("'none' names the clean images in the report; rename it.")
        levels = [levels] if hasattr(levels, "transform") else list(levels)
        for level in levels:
            if not hasattr(level, "transform"):
                raise TypeError(
                    f"Perturbation {name!r} holds {level!r}, which is not a transformer."
                )
        series[str(name)] = levels
    return series


def _key(perturbation):
    return type(perturbation), repr(sorted(perturbation.get_params().items()))


def _perturbed_features(features_of, X, perturbation, image_column, chunk_size, limits,
                        progress):
    """Features of the perturbed samples, perturbing and encoding a chunk at a time:
    ``chunk_size`` samples, or fewer whose decoded pixels fill :data:`_PIXELS_HELD`."""
    own = isinstance(perturbation, ImagePerturbation)
    seed = perturbation.draw_seed() if own else None
    blocks = []
    start = 0
    while start < len(X):
        images, _ = split_images(take(X, slice(start, start + chunk_size)), image_column)
        if own:
            perturbed = perturbation.perturb_items(images, offset=start, seed=seed,
                                                   max_pixels_held=_PIXELS_HELD, **limits)
        else:
            perturbed = list(perturbation.transform(images))
            if len(perturbed) != len(images):
                raise ValueError(
                    f"Perturbation {perturbation!r} returned {len(perturbed)} images for "
                    f"{len(images)} (samples {start} to {start + len(images) - 1}); a "
                    "perturbation must return one image per input image, in order."
                )
        _, rebuild = split_images(take(X, slice(start, start + len(perturbed))), image_column)
        blocks.append(np.asarray(features_of.transform(rebuild(perturbed))))
        progress.update(len(perturbed))
        start += len(perturbed)
    return np.concatenate(blocks, axis=0)
