"""Options that several commands share, and the checks of argument values (argparse types).

Imports nothing heavy: ``clipdet --help`` needs no torch.
"""

import argparse
import functools
from pathlib import Path

from .._constants import (
    DEFAULT_FEATURIZER_BATCH_SIZE,
    DEFAULT_MODEL_NAME,
    DEFAULT_PRETRAINED,
    MODALITIES,
    ON_ERROR,
    PERTURBATIONS,
    PRECISIONS,
)

TABLE_SUFFIXES = (".csv", ".parquet")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to the command's --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ option groups


def add_model_options(command):
    """The CLIP model and how it runs, for the commands that make a featurizer."""
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
        "--featurizer-batch-size", type=positive_int, default=DEFAULT_FEATURIZER_BATCH_SIZE,
        help=f"images per CLIP forward pass (default {DEFAULT_FEATURIZER_BATCH_SIZE}); larger "
        "batches use a GPU better and need more memory",
    )


def add_detector_arguments(command, data_help):
    """``[model_file] data`` and the backbone options, for the commands that load a detector.

    Without ``model_file`` the command uses the shipped detector; see
    :func:`~sklearn_clipdet.cli._model.load_detector`.
    """
    command.add_argument(
        "model_file", nargs="?",
        help="detector file written by 'clipdet train'; leave it out to use the detector "
        "shipped with sklearn-clipdet (OpenAI CLIP ViT-B/16, downloaded on first use)",
    )
    command.add_argument("data", help=data_help)
    command.add_argument(
        "--model",
        help="CLIP model to use instead of the one recorded in the detector file (for "
        "example local-dir:FOLDER after the model folder moved); it must be the backbone "
        "the detector was trained with, which is checked; for the shipped detector, "
        "local-dir:FOLDER with a copy of OpenAI's ViT-B/16 (to work offline)",
    )
    command.add_argument("--pretrained", help="with --model: pretrained tag or checkpoint FILE")


def add_runtime_options(command, *, cache=True, on_error=True):
    """Device, cache, error policy and progress, for the commands that encode images.

    A command without ``cache`` or ``on_error`` gets no such option: no cache, and
    unreadable images are errors.
    """
    command.add_argument("--device", default="auto",
                         help="auto (default: CUDA when available), cpu, cuda, cuda:N or mps")
    if cache:
        command.add_argument("--cache-dir", help="on-disk feature cache folder")
    else:
        command.set_defaults(cache_dir=None)
    if on_error:
        command.add_argument(
            "--on-error", default=ON_ERROR[0], choices=list(ON_ERROR),
            help="unreadable images and CSV rows without an image: stop with an error (raise, "
            "the default) or give them NaN features and an empty score (nan)",
        )
    else:
        command.set_defaults(on_error=ON_ERROR[0])
    command.add_argument("--quiet", action="store_true", help="no progress bars")


def detector_file_after_options(args, extras):
    """``[model_file] data`` with options between the two: argparse gives the first to
    ``data`` and leaves the second over. Returns the arguments still left over."""
    if (getattr(args, "model_file", "") is None and len(extras) == 1
            and not extras[0].startswith("-")):
        args.model_file, args.data = args.data, extras[0]
        return []
    return extras


# ------------------------------------------------------------------ argument types


def perturbation_names(text):
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


table_file = functools.partial(_file_with_suffix, suffixes=TABLE_SUFFIXES,
                               kind=".csv or .parquet")
png_file = functools.partial(_file_with_suffix, suffixes=(".png",), kind=".png")
robustness_output = functools.partial(_file_with_suffix, suffixes=(*TABLE_SUFFIXES, ".png"),
                                      kind=".csv, .parquet or .png")


def _number(text, convert, accept, requirement):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {requirement}")
    return value


positive_int = functools.partial(_number, convert=int, accept=lambda v: v >= 1,
                                 requirement="an integer >= 1")
non_negative_int = functools.partial(_number, convert=int, accept=lambda v: v >= 0,
                                     requirement="an integer >= 0")
folds = functools.partial(_number, convert=int, accept=lambda v: v >= 2,
                          requirement="an integer >= 2")
open_probability = functools.partial(_number, convert=float, accept=lambda v: 0 < v < 1,
                                     requirement="a number in (0, 1)")
probability = functools.partial(_number, convert=float, accept=lambda v: 0 <= v <= 1,
                                requirement="a number in [0, 1]")
audit_threshold = functools.partial(_number, convert=float, accept=lambda v: 0.5 < v <= 1,
                                    requirement="a number in (0.5, 1]")


def training_batch(text):
    """'auto' or an integer >= 2 (BatchNorm normalises no batch of one row)."""
    if text == "auto":
        return text
    return _number(text, convert=int, accept=lambda v: v >= 2,
                   requirement="'auto' or an integer >= 2")
