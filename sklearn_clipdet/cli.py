"""The ``clipdet`` command: featurize, train, predict and evaluate over folders or CSV files.

Data arguments are either a folder laid out as :func:`load_image_folder`
expects (``real/`` and ``fake/`` sub-folders, ...) or a CSV file with an
``image`` column (paths relative to the CSV's folder), optional ``text`` and,
for training and evaluation, ``label`` (1 = generated, 0 = real).

Each command checks what it can before the long work starts (its arguments,
output paths, device, feature cache, data and labels, the detector file and
its backbone). A failure ends with one line on standard error and a non-zero
exit status: 2 for invalid arguments, 1 for other errors, 130 when
interrupted. Output files are written whole or not at all.
"""

import argparse
import contextlib
import functools
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._constants import (
    AUTO_BATCH_STEPS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_FEATURIZER_BATCH_SIZE,
    DEFAULT_MAX_EPOCHS,
    DEFAULT_MODEL_NAME,
    DEFAULT_PRETRAINED,
    MAX_AUTO_BATCH,
    MIN_AUTO_BATCH,
    MODALITIES,
    ON_ERROR,
    PERTURBATIONS,
    PRECISIONS,
)
from ._version import __version__
from .exceptions import CommandError

_TABLE_SUFFIXES = (".csv", ".parquet")
# What writing each kind of output file needs beyond the core install.
_OUTPUT_NEEDS = {
    ".parquet": ("pyarrow", "pip install pyarrow"),
    ".png": ("matplotlib", 'pip install "sklearn-clipdet[plot]"'),
}
_README_OFFLINE = "'Offline use' in the README"
_TINY_MODEL = (
    "python -c \"from sklearn_clipdet.testing import write_tiny_model; "
    "write_tiny_model('tiny-clip')\""
)


def main(argv=None):
    """Entry point of the ``clipdet`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    prog = f"clipdet {args.command}"
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("default")
        # Deprecations inside libraries are for developers, not for the command's user.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = functools.partial(_print_warning, prog)
        try:
            args.run(args)
        except CommandError as exc:
            advice = f" {_offline_advice(args)}" if exc.offline_hint else ""
            print(f"{prog}: error: {exc}{advice}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
    return 0


def _print_warning(prog, message, category, filename, lineno, file=None, line=None):
    """Show a warning as its message alone: the user needs no file and line of the code."""
    print(f"{prog}: warning: {message}", file=sys.stderr)


def _offline_advice(args):
    advice = ("Offline, pass --model local-dir:FOLDER (a folder with open_clip_config.json and "
              f"the weights) or --pretrained FILE (a checkpoint); see {_README_OFFLINE}.")
    if args.command in ("train", "featurize"):
        advice += (f" To try the commands without weights, write a tiny random model with "
                   f"{_TINY_MODEL} and pass --model local-dir:tiny-clip.")
    return advice


# ------------------------------------------------------------------ commands


def _featurize(args):
    _check_outputs(args.out)
    _check_runtime(args)
    data = _read_data(args.data, need_labels=False, on_error=args.on_error)
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

    _check_outputs(args.out)
    _check_runtime(args)
    data = _read_data(args.data, need_labels=True, on_error=args.on_error)
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
    # An interrupted fit raises KeyboardInterrupt: no detector file is written.
    _run(detector.fit, _model_input(data), data["label"].to_numpy())
    _run(save_detector, detector, args.out)
    print(f"trained on {len(data)} images ({modalities}); detector saved to {args.out}")


def _predict(args):
    _check_outputs(args.out)
    _check_runtime(args)
    data = _read_data(args.data, need_labels=False, on_error=args.on_error)
    detector = _load(args)
    scores, labels = _run(_predictions, detector, data)
    out = pd.DataFrame({"image": data["image"].to_numpy(), "score": scores, "label": labels})
    _write_table(out, args.out)
    print(f"wrote {len(out)} scores (probability that the image is generated) and predicted "
          f"labels to {args.out}")


def _evaluate(args):
    _check_outputs(args.roc, *(args.robustness_out or []))
    _check_runtime(args)
    data = _read_data(args.data, need_labels=True, on_error=args.on_error)
    detector = _load(args)
    robustness = args.robustness or args.robustness_out
    with contextlib.ExitStack() as stack:
        if robustness and args.cache_dir is None:
            # The robustness report then reads the clean features instead of encoding again.
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="clipdet-"))
            detector[0].set_params(cache_dir=cache)
        _evaluate_loaded(args, detector, data, robustness)


def _evaluate_loaded(args, detector, data, robustness):
    from .evaluation import detection_report

    scores, _ = _run(_predictions, detector, data, with_labels=False)
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
        _run(_plot_roc, y, scores, args.roc)
        print(f"ROC curve written to {args.roc}")
    if robustness:
        _evaluate_robustness(args, detector, data[valid])


def _evaluate_robustness(args, detector, data):
    """Metrics under the perturbations chosen by --perturbations; tables and plots written."""
    from .evaluation import default_perturbations, plot_robustness, robustness_report

    chosen = {name: levels for name, levels in default_perturbations().items()
              if name in args.perturbations}
    detector.steps[0][1].set_params(verbose=0)  # one progress bar for the whole report
    y = _as_detector_labels(detector[-1], data["label"].to_numpy())
    report = _run(robustness_report, detector, _model_input(data), y, chosen,
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
            _run(plot_robustness, report, path=path)
            print(f"robustness plot (ROC AUC against level) written to {path}")
        else:
            _write_table(report, path)
            print(f"robustness table written to {path}")


def _audit(args):
    from .evaluation import audit_shortcuts

    _check_outputs(args.out)
    data = _read_data(args.data, need_labels=True, on_error=None)
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


# ------------------------------------------------------------ checks first


def _check_outputs(*paths):
    """Refuse output files that cannot be written, before any work."""
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise CommandError(f"{path} is a folder; give the name of a file to write")
        if not path.parent.is_dir():
            raise CommandError(f"cannot write {path}: the folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise CommandError(f"cannot write {path}: no permission to write in {path.parent}")
        module, install = _OUTPUT_NEEDS.get(path.suffix.lower(), (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise CommandError(f"writing {path.suffix} files needs {module}, which is not "
                               f"installed; install it with: {install}")


def _check_runtime(args):
    """Check --device and --cache-dir before loading models or reading images."""
    _check_device(args.device)
    if args.cache_dir is not None:
        from ._clip._cache import FeatureCache

        try:
            FeatureCache(args.cache_dir).close()
        except (OSError, RuntimeError) as exc:  # unusable sqlite files come as either
            raise CommandError(f"--cache-dir {args.cache_dir}: {_first_line(exc)}") from exc


def _check_device(device):
    from ._utils._device import check_device

    try:
        check_device(device)
    except ValueError as exc:
        raise CommandError(f"--{exc}") from None


def _read_data(source, *, need_labels, on_error):
    """The samples of a folder or CSV file, checked: images named, labels 0/1 of both classes.

    ``on_error`` is the command's --on-error ("raise" or "nan"), or None for a
    command without it.
    """
    from .datasets import NoClassFolderError, load_image_folder

    path = Path(source)
    if path.is_dir():
        with warnings.catch_warnings():
            # The labels are checked below, where the command needs them.
            warnings.filterwarnings("ignore", message="Only (real|generated) images were found")
            try:
                data = load_image_folder(path)
            except NoClassFolderError as exc:
                if need_labels:
                    raise CommandError(_first_line(exc)) from exc
                # Images to score or featurize need no labels: every image of the folder.
                data = pd.DataFrame({"image": exc.images})
            except (ValueError, OSError) as exc:
                raise CommandError(_first_line(exc)) from exc
    elif path.is_file() and path.suffix.lower() == ".csv":
        data = _read_csv(path, on_error)
    else:
        raise CommandError(f"{source} is neither a folder of images nor a .csv file")
    if need_labels:
        _check_labels(data, source)
    return data


def _read_csv(path, on_error):
    try:
        # Only empty cells are missing: a caption "NA" or a file named "null" stays as it is.
        data = pd.read_csv(path, dtype={"image": str}, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise CommandError(f"{path} is empty") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise CommandError(f"{path} cannot be read as CSV: {_first_line(exc)}") from exc
    if "image" not in data:
        raise CommandError(f"{path} has no 'image' column (columns: {list(data.columns)})")
    if data.empty:
        raise CommandError(f"{path} has a header but no rows")
    images = [None if pd.isna(item) or not item.strip() else item for item in data["image"]]
    lenient = " or pass --on-error nan to give them an empty score" if on_error else ""
    _refuse_rows(path, [i for i, item in enumerate(images) if item is None],
                 "have no image", f"fill them in{lenient}", unless=on_error == "nan")
    images = [None if item is None else str(path.parent / item) for item in images]
    absent = [i for i, item in enumerate(images) if item is not None and not os.path.exists(item)]
    if absent:
        _refuse_rows(path, absent, f"name images that do not exist (first: {images[absent[0]]})",
                     f"correct the paths (relative to {path.parent}){lenient}",
                     unless=on_error == "nan")
    data["image"] = images
    return data


def _refuse_rows(path, rows, problem, advice, unless=False):
    """A CommandError naming the CSV lines of ``rows`` (the header is line 1), if any."""
    from ._utils._validation import preview

    if rows and not unless:
        lines = preview(row + 2 for row in rows)
        raise CommandError(f"{path}: {len(rows)} row(s) {problem}: lines {lines}; {advice}")


def _check_labels(data, source):
    if "label" not in data:
        raise CommandError(f"{source} has no labels (need a 'label' column or class folders)")
    labels = pd.to_numeric(data["label"], errors="coerce")
    bad = np.flatnonzero(~labels.isin([0, 1]))
    _refuse_rows(source, bad.tolist(), "have a label other than 0 (real) or 1 (generated)",
                 "fix them")
    data["label"] = labels.astype(int)
    present = set(data["label"])
    if len(present) < 2:
        only = "generated (1)" if present == {1} else "real (0)"
        raise CommandError(f"{source} holds only {only} images; training and evaluation need "
                           "both real (0) and generated (1) images")


# ------------------------------------------------------------------- helpers


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
    """The detector of ``args.model_file``, on the backbone it was trained with (checked)."""
    from sklearn.pipeline import Pipeline

    from .persistence import load_detector

    path = Path(args.model_file)
    if not path.is_file():
        raise CommandError(f"no detector file at {path}")
    if args.pretrained is not None and args.model is None:
        raise CommandError("--pretrained needs --model (the architecture it belongs to)")
    source = {} if args.model is None else {"model_name": args.model,
                                             "pretrained": args.pretrained}
    detector = _run(load_detector, path, device=args.device, **source)
    if not isinstance(detector, Pipeline):
        raise CommandError(f"{path} holds a classifier without its featurizer")
    featurizer = detector[0]
    # Settings that change how, not what, the detector computes.
    featurizer.set_params(
        on_error=args.on_error, cache_dir=args.cache_dir, verbose=0 if args.quiet else 1
    )
    _check_backbone(featurizer, path, args)
    return detector


def _check_backbone(featurizer, path, args):
    """Refuse, before encoding, a backbone other than the one the detector was trained with."""
    expected = featurizer.backbone_fingerprint
    actual = _run(featurizer.load_backbone).fingerprint
    if expected is None or actual == expected:
        return
    if args.model is None:
        given = (f"The backbone recorded in {path} ({featurizer.model_name}, pretrained "
                 f"{featurizer.pretrained})")
    else:
        given = f"--model {args.model}" + (f" --pretrained {args.pretrained}"
                                           if args.pretrained else "")
    raise CommandError(
        f"{given} is not the backbone {path} was trained with: its weights, preprocessing, "
        f"tokenizer or open_clip version differ (fingerprint {actual[:12]}, the detector's "
        f"{expected[:12]}), so its scores would be meaningless; pass --model and --pretrained "
        "of the backbone used in training"
    )


def _predictions(detector, data, with_labels=True):
    """Probability of the generated label and predicted label of each image (NaN and None
    for unreadable images; labels all None without ``with_labels``)."""
    from .evaluation._common import generated_label, positive_scores

    features = detector[:-1].transform(_model_input(data))
    classifier = detector[-1]
    scores = np.full(len(data), np.nan)
    labels = np.full(len(data), None, dtype=object)
    readable = ~np.isnan(features).any(axis=1)
    if readable.any():
        scores[readable] = positive_scores(classifier, features[readable],
                                           generated_label(classifier))
        if with_labels:
            labels[readable] = classifier.predict(features[readable])
    return scores, labels


def _as_detector_labels(classifier, y):
    """Data labels (1 = generated, 0 = real) in the classifier's own labels."""
    from .evaluation._common import generated_label

    generated = generated_label(classifier)
    real = next(label for label in classifier.classes_ if label != generated)
    return np.where(y == 1, generated, real)


def _plot_roc(y, scores, path):
    from sklearn.metrics import RocCurveDisplay

    from .evaluation._common import new_figure, save_figure

    figure, (ax,) = new_figure(1, (5, 5), interactive=False)
    RocCurveDisplay.from_predictions(y, scores, ax=ax, name="detector")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    save_figure(figure, path, close=False)


def _write_table(frame, path):
    """Write a .csv or .parquet table whole or not at all."""
    from ._utils._files import atomic_write

    write = frame.to_parquet if Path(path).suffix.lower() == ".parquet" else frame.to_csv
    _run(atomic_write, path, lambda tmp: write(tmp, index=False))


def _run(function, *args, **kwargs):
    """Call into the library, turning its errors into one-line command errors."""
    from .exceptions import WeightsUnavailableError

    try:
        return function(*args, **kwargs)
    except WeightsUnavailableError as exc:
        source = exc.model_name if exc.pretrained is None else \
            f"{exc.model_name} (pretrained {exc.pretrained})"
        raise CommandError(f"cannot load the CLIP model {source}: {exc.reason}.",
                           offline_hint=exc.offline_hint) from exc
    except (ValueError, OSError, ImportError) as exc:
        raise CommandError(_first_line(exc)) from exc


def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# -------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to the command's --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser():
    parser = _Parser(
        prog="clipdet",
        description="Detect diffusion-generated images with CLIP features and a robust MLP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    featurize = commands.add_parser("featurize", help="write CLIP features of images to a table")
    featurize.add_argument("data", help="image folder or CSV file")
    featurize.add_argument("--out", required=True, type=_table_file,
                           help="output table (.csv or .parquet)")
    _add_model_options(featurize)
    _add_runtime_options(featurize)
    featurize.set_defaults(run=_featurize)

    train = commands.add_parser("train", help="train a detector on labelled images")
    train.add_argument("data", help="image folder (real/ and fake/ ...) or labelled CSV file")
    train.add_argument("--out", required=True, help="detector file to write (.safetensors)")
    _add_model_options(train)
    _add_runtime_options(train)
    train.add_argument("--epochs", type=_positive_int, default=DEFAULT_MAX_EPOCHS,
                       help=f"training epochs (default {DEFAULT_MAX_EPOCHS})")
    train.add_argument("--batch-size", type=_training_batch, default=DEFAULT_BATCH_SIZE,
                       help=f"training batch: 'auto' (default: n // {AUTO_BATCH_STEPS} rows, "
                       f"{MIN_AUTO_BATCH} to {MAX_AUTO_BATCH}, about {AUTO_BATCH_STEPS} steps "
                       "per epoch) or an integer >= 2")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.set_defaults(run=_train)

    for name, help_text, run in [
        ("predict", "score images with a trained detector", _predict),
        ("evaluate", "measure a detector on labelled images", _evaluate),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("model_file", help="detector file written by 'clipdet train'")
        command.add_argument("data", help="image folder or CSV file")
        _add_backbone_options(command)
        _add_runtime_options(command)
        command.set_defaults(run=run)
    commands.choices["predict"].add_argument(
        "--out", required=True, type=_table_file,
        help="output table (.csv or .parquet): image, score (probability that the image is "
        "generated) and label (the detector's decision at its threshold)",
    )
    evaluate = commands.choices["evaluate"]
    evaluate.add_argument("--roc", type=_png_file, help="write the ROC curve to this PNG file")
    evaluate.add_argument("--threshold", type=_probability, default=0.5,
                          help="score from which an image counts as generated, for the "
                          "accuracy (default 0.5)")
    evaluate.add_argument(
        "--bootstraps", type=_non_negative_int, default=0,
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
        "--perturbations", type=_perturbation_names, default=PERTURBATIONS,
        help=f"comma-separated perturbations for --robustness (default {','.join(PERTURBATIONS)})",
    )

    audit = commands.add_parser(
        "audit", help="check whether trivial properties (size, format, captions) give away "
        "the labels",
    )
    audit.add_argument("data", help="labelled image folder or CSV file")
    audit.add_argument("--threshold", type=_audit_threshold, default=0.8,
                       help="AUC from which a property is flagged, in (0.5, 1] (default 0.8)")
    audit.add_argument("--cv", type=_folds, default=5,
                       help="cross-validation folds, at least 2 (default 5)")
    audit.add_argument("--out", type=_table_file,
                       help="write the audit table (.csv or .parquet)")
    audit.add_argument("--strict", action="store_true",
                       help="exit with status 1 when a shortcut is flagged (default: warn)")
    audit.set_defaults(run=_audit)
    return parser


def _perturbation_names(text):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PERTURBATIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown perturbation(s) {unknown or [text]}; choose from {','.join(PERTURBATIONS)}"
        )
    return names


def _file_with_suffix(path, suffixes, kind):
    if Path(path).suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{path}: use a {kind} file")
    return path


_table_file = functools.partial(_file_with_suffix, suffixes=_TABLE_SUFFIXES,
                                kind=".csv or .parquet")
_png_file = functools.partial(_file_with_suffix, suffixes=(".png",), kind=".png")
_robustness_output = functools.partial(_file_with_suffix, suffixes=(*_TABLE_SUFFIXES, ".png"),
                                       kind=".csv, .parquet or .png")


def _number(text, convert, accept, requirement):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {requirement}")
    return value


_positive_int = functools.partial(_number, convert=int, accept=lambda v: v >= 1,
                                  requirement="an integer >= 1")
_non_negative_int = functools.partial(_number, convert=int, accept=lambda v: v >= 0,
                                      requirement="an integer >= 0")
_folds = functools.partial(_number, convert=int, accept=lambda v: v >= 2,
                           requirement="an integer >= 2")
_probability = functools.partial(_number, convert=float, accept=lambda v: 0 <= v <= 1,
                                 requirement="a number in [0, 1]")
_audit_threshold = functools.partial(_number, convert=float, accept=lambda v: 0.5 < v <= 1,
                                     requirement="a number in (0.5, 1]")


def _training_batch(text):
    """'auto' or an integer >= 2 (BatchNorm normalises no batch of one row)."""
    if text == "auto":
        return text
    return _number(text, convert=int, accept=lambda v: v >= 2,
                   requirement="'auto' or an integer >= 2")


def _add_model_options(command):
    command.add_argument(
        "--model", default=DEFAULT_MODEL_NAME,
        help=f"open_clip architecture (default {DEFAULT_MODEL_NAME}), hf-hub:ORG/REPO, or "
        "local-dir:FOLDER for a model on disk (open_clip_config.json and weights)",
    )
    command.add_argument(
        "--pretrained", default=DEFAULT_PRETRAINED,
        help="pretrained tag of the architecture, downloaded on first use (default "
        f"{DEFAULT_PRETRAINED}), "
        "or a checkpoint FILE",
    )
    command.add_argument(
        "--modalities", default="auto", choices=["auto", *MODALITIES],
        help="auto: image+text when the data has captions, else image",
    )
    command.add_argument("--default-text", help="caption for images without one")
    command.add_argument(
        "--precision", default=PRECISIONS[0], choices=list(PRECISIONS),
        help="numeric precision of the CLIP model: fp32 (default); fp16 or bf16, GPU only "
        "(half-size weights); int8, CPU only (quantised linear layers); the features of the "
        "last three differ slightly from fp32",
    )
    command.add_argument(
        "--featurizer-batch-size", type=_positive_int, default=DEFAULT_FEATURIZER_BATCH_SIZE,
        help=f"images per CLIP forward pass (default {DEFAULT_FEATURIZER_BATCH_SIZE}); larger "
        "batches use a GPU better and need more memory",
    )


def _add_backbone_options(command):
    command.add_argument(
        "--model",
        help="CLIP model to use instead of the one recorded in the detector file (for "
        "example local-dir:FOLDER after the model folder moved); it must be the backbone "
        "the detector was trained with, which is checked",
    )
    command.add_argument("--pretrained", help="with --model: pretrained tag or checkpoint FILE")


def _add_runtime_options(command):
    command.add_argument("--device", default="auto",
                         help="auto (default: CUDA when available), cpu, cuda, cuda:N or mps")
    command.add_argument("--cache-dir", help="on-disk feature cache folder")
    command.add_argument(
        "--on-error", default=ON_ERROR[0], choices=list(ON_ERROR),
        help="unreadable images and CSV rows without an image: stop with an error (raise, "
        "the default) or give them NaN features and an empty score (nan)",
    )
    command.add_argument("--quiet", action="store_true", help="no progress bars")


if __name__ == "__main__":
    sys.exit(main())
