"""The ``clipdet`` command: featurize, train, predict and evaluate over folders or CSV files.

Data arguments are either a folder laid out as :func:`load_image_folder`
expects (``real/`` and ``fake/`` sub-folders, ...) or a CSV file with an
``image`` column (paths relative to the CSV's folder), optional ``text`` and,
for training and evaluation, ``label`` (1 = generated, 0 = real).
"""

import argparse
import contextlib
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._version import __version__


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def main(argv=None):
    """Entry point of the ``clipdet`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except CommandError as exc:
        print(f"clipdet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clipdet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


# ------------------------------------------------------------------ commands


def _featurize(args):
    data = _read_data(args.data, need_labels=False)
    featurizer = _make_featurizer(args, data)
    features = _run(featurizer.fit_transform, _model_input(data))
    frame = pd.DataFrame(features, columns=featurizer.get_feature_names_out())
    frame.insert(0, "image", data["image"].to_numpy())
    if "label" in data:
        frame.insert(1, "label", data["label"].to_numpy())
    _write_table(frame, args.out)
    print(f"wrote {features.shape[0]} x {features.shape[1]} features to {args.out}")


def _train(args):
    from .persistence import save_detector
    from .pipeline import make_detector

    data = _read_data(args.data, need_labels=True)
    modalities = _choose_modalities(args, data)
    detector = make_detector(
        args.model,
        args.pretrained,
        modalities=modalities,
        cache_dir=args.cache_dir,
        device=args.device,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        featurizer_params=_featurizer_params(args),
        classifier_params={"max_epochs": args.epochs, "batch_size": args.batch_size},
    )
    _run(detector.fit, _model_input(data), data["label"].to_numpy())
    save_detector(detector, args.out)
    print(f"trained on {len(data)} images ({modalities}); detector saved to {args.out}")


def _predict(args):
    detector = _load(args)
    data = _read_data(args.data, need_labels=False)
    scores = _run(_scores, detector, data)
    out = pd.DataFrame({"image": data["image"].to_numpy(), "score": scores})
    _write_table(out, args.out)
    print(f"wrote {len(out)} scores (probability of 'generated') to {args.out}")


def _evaluate(args):
    if args.roc or any(Path(path).suffix.lower() == ".png" for path in args.robustness_out or []):
        from ._optional import import_optional

        # Before any image is encoded, so that a missing extra costs no wait.
        _run(import_optional, "matplotlib", extra="plot", purpose="A PNG plot")
    detector = _load(args)
    data = _read_data(args.data, need_labels=True)
    robustness = args.robustness or args.robustness_out
    with contextlib.ExitStack() as stack:
        if robustness and args.cache_dir is None:
            # The robustness report then reads the clean features instead of encoding again.
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="clipdet-"))
            detector[0].set_params(cache_dir=cache)
        _evaluate_loaded(args, detector, data, robustness)


def _evaluate_loaded(args, detector, data, robustness):
    from .evaluation import detection_report

    scores = _run(_scores, detector, data)
    y = data["label"].to_numpy()
    valid = ~np.isnan(scores)
    if not valid.all():
        print(f"{(~valid).sum()} images could not be read and are left out of the metrics")
    y, scores = y[valid], scores[valid]
    if len(np.unique(y)) < 2:
        raise CommandError("evaluation needs images of both classes (real and generated)")
    print(f"images: {len(y)} ({int(y.sum())} generated, {int((1 - y).sum())} real)")
    report = detection_report(
        y, scores, threshold=args.threshold, n_bootstraps=args.bootstraps, random_state=0
    )
    columns = ["metric", "value"] + (["ci_low", "ci_high"] if args.bootstraps else [])
    print(report[columns].to_string(index=False, float_format="%.4f"))
    if args.roc:
        _plot_roc(y, scores, args.roc)
        print(f"ROC curve written to {args.roc}")
    if robustness:
        _evaluate_robustness(args, detector, data[valid])


def _evaluate_robustness(args, detector, data):
    """Metrics under the perturbations chosen by --perturbations; tables and plots written."""
    from .evaluation import default_perturbations, plot_robustness, robustness_report

    chosen = {name: levels for name, levels in default_perturbations().items()
              if name in args.perturbations}
    detector.steps[0][1].set_params(verbose=0)  # one progress bar for the whole report
    report = _run(robustness_report, detector, _model_input(data), data["label"].to_numpy(),
                  chosen, threshold=args.threshold, verbose=0 if args.quiet else 1)
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
            plot_robustness(report, path=path)
            print(f"robustness plot (ROC AUC against level) written to {path}")
        else:
            _write_table(report, path)
            print(f"robustness table written to {path}")


def _audit(args):
    from .evaluation import audit_shortcuts

    data = _read_data(args.data, need_labels=True)
    table = _run(_quiet_audit, audit_shortcuts, data, data["label"].to_numpy(),
                 threshold=args.threshold, cv=args.cv)
    print(f"shortcut audit of {len(data)} images: cross-validated AUC of models that see only "
          "one trivial property (0.5 = no information)")
    print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"))
    if args.out:
        _write_table(table, args.out)
        print(f"audit table written to {args.out}")
    flagged = table[table["flagged"]]
    if flagged.empty:
        print(f"no shortcut found (no AUC >= {args.threshold})")
        return
    found = ", ".join(f"{p} (AUC {a:.2f})" for p, a in zip(flagged["property"], flagged["auc"]))
    message = (f"shortcut found: {found}; a detector can separate these images without "
               "looking at their content")
    if args.strict:
        raise CommandError(message)
    print(f"clipdet audit: warning: {message}", file=sys.stderr)


def _quiet_audit(audit_shortcuts, *args, **kwargs):
    """The audit without its ShortcutWarning: the command reports flagged rows itself."""
    from .evaluation import ShortcutWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortcutWarning)
        return audit_shortcuts(*args, **kwargs)


# ------------------------------------------------------------------- helpers


def _read_data(source, need_labels):
    from .datasets import load_image_folder

    path = Path(source)
    if path.is_dir():
        data = _run(load_image_folder, path)
    elif path.is_file() and path.suffix.lower() == ".csv":
        data = pd.read_csv(path)
        if "image" not in data:
            raise CommandError(f"{path} has no 'image' column (columns: {list(data.columns)})")
        data["image"] = [
            str(p if Path(p).is_absolute() else path.parent / p) for p in data["image"]
        ]
    else:
        raise CommandError(f"{source} is neither a folder of images nor a .csv file")
    if need_labels and "label" not in data:
        raise CommandError(f"{source} has no labels (need a 'label' column or class folders)")
    if need_labels:
        bad = ~data["label"].isin([0, 1])
        if bad.any():
            rows = np.flatnonzero(bad)[:10].tolist()
            raise CommandError(
                f"{source}: rows {rows} have a label other than 0 (real) or 1 (generated)"
            )
        data["label"] = data["label"].astype(int)
    return data


def _model_input(data):
    columns = ["image", "text"] if "text" in data else ["image"]
    return data[columns].reset_index(drop=True)


def _choose_modalities(args, data):
    if args.modalities != "auto":
        return args.modalities
    has_text = "text" in data and data["text"].notna().any()
    chosen = "image+text" if has_text or args.default_text else "image"
    print(f"modalities: {chosen} ({'captions found' if has_text else 'no captions in the data'})")
    return chosen


def _featurizer_params(args):
    return {
        "batch_size": args.featurizer_batch_size,
        "default_text": args.default_text,
        "on_error": args.on_error,
        "precision": args.precision,
    }


def _make_featurizer(args, data):
    from .featurizer import CLIPFeaturizer

    return CLIPFeaturizer(
        args.model,
        args.pretrained,
        modalities=_choose_modalities(args, data),
        cache_dir=args.cache_dir,
        device=args.device,
        verbose=0 if args.quiet else 1,
        **_featurizer_params(args),
    )


def _load(args):
    from sklearn.pipeline import Pipeline

    from .persistence import load_detector

    if not Path(args.model_file).is_file():
        raise CommandError(f"no detector file at {args.model_file}")
    detector = _run(load_detector, args.model_file, device=args.device)
    if not isinstance(detector, Pipeline):
        raise CommandError(f"{args.model_file} holds a classifier without its featurizer")
    # Settings that change how, not what, the detector computes.
    detector.steps[0][1].set_params(
        on_error=args.on_error, cache_dir=args.cache_dir, verbose=0 if args.quiet else 1
    )
    return detector


def _scores(detector, data):
    """Probability that each image is generated (label 1), NaN for unreadable images."""
    from .evaluation._common import positive_scores

    features = detector[:-1].transform(_model_input(data))
    scores = np.full(len(data), np.nan)
    readable = ~np.isnan(features).any(axis=1)
    if readable.any():
        scores[readable] = positive_scores(detector[-1], features[readable], pos_label=1)
    return scores


def _plot_roc(y, scores, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y, scores, ax=ax, name="detector")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _write_table(frame, path):
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _run(function, *args, **kwargs):
    """Call into the library, turning its errors into one-line command errors."""
    from ._backbone import WeightsUnavailableError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return function(*args, **kwargs)
    except WeightsUnavailableError as exc:
        raise CommandError(
            f"{_first_line(exc)} Offline, pass --model local-dir:/path/to/model-folder "
            "(open_clip_config.json + weights) or --pretrained /path/to/checkpoint."
        ) from exc
    except (ValueError, OSError, ImportError) as exc:
        raise CommandError(_first_line(exc)) from exc


def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# -------------------------------------------------------------------- parser


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="clipdet",
        description="Detect diffusion-generated images with CLIP features and a robust MLP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    featurize = commands.add_parser("featurize", help="write CLIP features of images to a table")
    featurize.add_argument("data", help="image folder or CSV file")
    featurize.add_argument("--out", required=True, help="output .csv or .parquet file")
    _add_model_options(featurize)
    _add_runtime_options(featurize)
    featurize.set_defaults(run=_featurize)

    train = commands.add_parser("train", help="train a detector on labelled images")
    train.add_argument("data", help="image folder (real/ and fake/ ...) or labelled CSV file")
    train.add_argument("--out", required=True, help="detector file to write (.safetensors)")
    _add_model_options(train)
    _add_runtime_options(train)
    train.add_argument("--epochs", type=int, default=32, help="training epochs (default 32)")
    train.add_argument("--batch-size", type=int, default=2048, help="training batch (2048)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.set_defaults(run=_train)

    for name, help_text, run in [
        ("predict", "score images with a trained detector", _predict),
        ("evaluate", "measure a detector on labelled images", _evaluate),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("model_file", help="detector file written by 'clipdet train'")
        command.add_argument("data", help="image folder or CSV file")
        _add_runtime_options(command)
        command.set_defaults(run=run)
    commands.choices["predict"].add_argument("--out", required=True, help="output CSV of scores")
    evaluate = commands.choices["evaluate"]
    evaluate.add_argument("--roc", help="write the ROC curve to this PNG file")
    evaluate.add_argument("--threshold", type=float, default=0.5, help="for accuracy (0.5)")
    evaluate.add_argument(
        "--bootstraps", type=int, default=0,
        help="bootstrap resamples for 95%% confidence intervals (default 0: none)",
    )
    evaluate.add_argument(
        "--robustness", action="store_true",
        help="also measure the detector on perturbed copies of the images (JPEG, resize, "
        "blur, noise, crop)",
    )
    evaluate.add_argument(
        "--robustness-out", action="append", type=_robustness_output, metavar="FILE",
        help="write the robustness table (.csv, .parquet) or its AUC plot (.png); "
        "repeatable; implies --robustness",
    )
    evaluate.add_argument(
        "--perturbations", type=_perturbation_names, default=_PERTURBATIONS,
        help=f"comma-separated perturbations for --robustness (default {','.join(_PERTURBATIONS)})",
    )

    audit = commands.add_parser(
        "audit", help="check whether trivial properties (size, format, captions) give away "
        "the labels",
    )
    audit.add_argument("data", help="labelled image folder or CSV file")
    audit.add_argument("--threshold", type=float, default=0.8,
                       help="AUC from which a property is flagged (default 0.8)")
    audit.add_argument("--cv", type=int, default=5, help="cross-validation folds (default 5)")
    audit.add_argument("--out", help="write the audit table (.csv or .parquet)")
    audit.add_argument("--strict", action="store_true",
                       help="exit with status 1 when a shortcut is flagged (default: warn)")
    audit.set_defaults(run=_audit)
    return parser


_PERTURBATIONS = ("jpeg", "resize", "blur", "noise", "crop")


def _perturbation_names(text):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in _PERTURBATIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown perturbation(s) {unknown or [text]}; choose from {','.join(_PERTURBATIONS)}"
        )
    return names


def _robustness_output(path):
    if Path(path).suffix.lower() not in (".csv", ".parquet", ".png"):
        raise argparse.ArgumentTypeError(f"{path}: use a .csv, .parquet or .png file")
    return path


def _add_model_options(command):
    command.add_argument(
        "--model", default="ViT-L-14",
        help="open_clip architecture, or hf-hub:ORG/REPO, or local-dir:FOLDER for a model "
        "on disk (default ViT-L-14)",
    )
    command.add_argument(
        "--pretrained", default="openai",
        help="pretrained tag or local checkpoint file (default openai)",
    )
    command.add_argument(
        "--modalities", default="auto", choices=["auto", "image+text", "image", "text"],
        help="auto: image+text when the data has captions, else image",
    )
    command.add_argument("--default-text", help="caption for images without one")
    command.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8"])
    command.add_argument("--featurizer-batch-size", type=int, default=32)


def _add_runtime_options(command):
    command.add_argument("--device", default="auto", help="torch device (default: auto)")
    command.add_argument("--cache-dir", help="on-disk feature cache folder")
    command.add_argument(
        "--on-error", default="raise", choices=["raise", "nan"],
        help="unreadable images: stop (raise) or score them NaN (nan)",
    )
    command.add_argument("--quiet", action="store_true", help="no progress bars")


if __name__ == "__main__":
    sys.exit(main())
