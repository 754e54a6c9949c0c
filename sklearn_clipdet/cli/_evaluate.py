"""``clipdet evaluate``: detection metrics of a detector on labelled images, the ROC curve,
and metrics under perturbations (--robustness)."""

import contextlib
import tempfile
from pathlib import Path

import numpy as np

from .._constants import PERTURBATIONS
from ..exceptions import CommandError
from . import _options
from ._data import model_input, read_data
from ._model import load_detector
from ._outputs import check_outputs, write_table
from ._run import run
from ._runtime import check_runtime


def add_parser(commands):
    evaluate = commands.add_parser("evaluate", help="measure a detector on labelled images")
    _options.add_detector_arguments(evaluate, data_help="image folder or CSV file")
    _options.add_runtime_options(evaluate)
    evaluate.add_argument("--roc", type=_options.png_file,
                          help="write the ROC curve to this PNG file")
    evaluate.add_argument("--threshold", type=_options.probability, default=0.5,
                          help="score from which an image counts as generated, for the "
                          "accuracy (default 0.5)")
    evaluate.add_argument(
        "--bootstraps", type=_options.non_negative_int, default=0,
        help="bootstrap resamples for 95%% confidence intervals (default 0: none)",
    )
    evaluate.add_argument(
        "--robustness", action="store_true",
        help="also measure the detector on perturbed copies of the images (JPEG, resize, "
        "blur, noise, crop)",
    )
    evaluate.add_argument(
        "--robustness-out", action="append", type=_options.robustness_output, metavar="FILE",
        help="write the robustness table (.csv, .parquet) or its AUC plot (.png); "
        "repeatable; implies --robustness",
    )
    evaluate.add_argument(
        "--perturbations", type=_options.perturbation_names, default=PERTURBATIONS,
        help=f"comma-separated perturbations for --robustness (default {','.join(PERTURBATIONS)})",
    )
    evaluate.set_defaults(run=main)
    return evaluate


def main(args):
    check_outputs(args.roc, *(args.robustness_out or []))
    check_runtime(args)
    data = read_data(args.data, need_labels=True, on_error=args.on_error)
    detector = load_detector(args)
    robustness = args.robustness or args.robustness_out
    with contextlib.ExitStack() as stack:
        if robustness and args.cache_dir is None:
            # The robustness report then reads the clean features instead of encoding again.
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="clipdet-"))
            detector[0].set_params(cache_dir=cache)
        _evaluate_loaded(args, detector, data, robustness)


def _evaluate_loaded(args, detector, data, robustness):
    from ..evaluation import detection_report, score_images

    scores = run(score_images, detector, model_input(data))
    y = data["label"].to_numpy()
    valid = ~np.isnan(scores)
    if not valid.all():
        print(f"{(~valid).sum()} images could not be read and are left out of the metrics")
    y, scores = y[valid], scores[valid]
    if len(np.unique(y)) < 2:
        raise CommandError("evaluation needs readable images of both classes (real and "
                           "generated)")
    print(f"images: {len(y)} ({int(y.sum())} generated, {int((1 - y).sum())} real)")
    report = detection_report(
        y, scores, threshold=args.threshold, n_bootstraps=args.bootstraps, random_state=0
    )
    columns = ["metric", "value"] + (["ci_low", "ci_high"] if args.bootstraps else [])
    print(report[columns].to_string(index=False, float_format="%.4f"))
    if args.roc:
        run(_plot_roc, y, scores, args.roc)
        print(f"ROC curve written to {args.roc}")
    if robustness:
        _evaluate_robustness(args, detector, data[valid])


def _evaluate_robustness(args, detector, data):
    """Metrics under the perturbations chosen by --perturbations; tables and plots written."""
    import pandas as pd

    from ..evaluation import default_perturbations, plot_robustness, robustness_report

    chosen = {name: levels for name, levels in default_perturbations().items()
              if name in args.perturbations}
    detector.steps[0][1].set_params(verbose=0)  # one progress bar for the whole report
    y = _as_detector_labels(detector[-1], data["label"].to_numpy())
    report = run(robustness_report, detector, model_input(data), y, chosen,
                 threshold=args.threshold, verbose=0 if args.quiet else 1)
    rows = []
    for (name, level), part in report.groupby(["perturbation", "level"], sort=False,
                                              dropna=False):
        values = part.set_index("metric")["value"]
        rows.append({"perturbation": name, "level": "-" if pd.isna(level) else f"{level:g}",
                     **{metric: values[metric] for metric in ("roc_auc", "average_precision",
                                                              "eer")}})
    print("robustness (perturbation 'none' is the clean images):")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for path in args.robustness_out or []:
        if Path(path).suffix.lower() == ".png":
            run(plot_robustness, report, path=path)
            print(f"robustness plot (ROC AUC against level) written to {path}")
        else:
            write_table(report, path)
            print(f"robustness table written to {path}")


def _as_detector_labels(classifier, y):
    """Data labels (1 = generated, 0 = real) in the classifier's own labels."""
    from ..evaluation._common import generated_label

    generated = generated_label(classifier)
    real = next(label for label in classifier.classes_ if label != generated)
    return np.where(y == 1, generated, real)


def _plot_roc(y, scores, path):
    from sklearn.metrics import RocCurveDisplay

    from ..evaluation._common import new_figure, save_figure

    figure, (ax,) = new_figure(1, (5, 5), interactive=False)
    RocCurveDisplay.from_predictions(y, scores, ax=ax, name="detector")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    save_figure(figure, path, close=False)
