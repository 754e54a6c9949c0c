"""``clipdet calibrate``: a detector file whose threshold comes from the user's own real
photos, with a stated false-positive rate (split-conformal, see ``calibration``)."""

from ..exceptions import CommandError
from . import _options
from ._data import model_input, read_data
from ._model import load_detector
from ._outputs import check_outputs
from ._run import run
from ._runtime import check_runtime

DEFAULT_FPR = 0.01


def add_parser(commands):
    calibrate = commands.add_parser(
        "calibrate",
        help="set a detector's threshold on images known to be real, for a stated "
        "false-positive rate",
    )
    _options.add_detector_arguments(
        calibrate, data_help="folder (or CSV file) of images known to be real, taken the way "
        "the images to judge will be",
    )
    calibrate.add_argument(
        "--fpr", type=_options.open_probability, default=DEFAULT_FPR,
        help=f"false-positive rate to guarantee on real images like these (default "
        f"{DEFAULT_FPR}); it needs at least (1 - FPR) / FPR of them: 99 for 0.01, 19 for 0.05",
    )
    calibrate.add_argument(
        "--out", required=True,
        help="calibrated detector file to write (.safetensors); 'clipdet predict' labels "
        "with its threshold",
    )
    _options.add_runtime_options(calibrate, on_error=False)
    calibrate.set_defaults(run=main)
    return calibrate


def main(args):
    from ..calibration import calibrate, min_real_images
    from ..persistence import save_detector

    check_outputs(args.out)
    check_runtime(args)
    data = read_data(args.data, need_labels=False, on_error=None)
    if "label" in data and (data["label"] == 1).any():
        raise CommandError(f"{args.data} holds generated images (a generated-class folder or "
                           "label 1); calibrate on images known to be real only")
    needed = min_real_images(args.fpr)
    if len(data) < needed:  # the library says the same after scoring; say it before
        raise CommandError(
            f"--fpr {args.fpr} needs at least {needed} real images, {args.data} holds "
            f"{len(data)}: with n real images the smallest rate that can be guaranteed is "
            f"1/(n+1) = {1 / (len(data) + 1):.3g}; add real images or pass a higher --fpr")
    detector = load_detector(args)
    # calibrate refuses a detector whose generated label is not classes_[1], before scoring.
    calibrated = run(calibrate, detector, model_input(data), fpr=args.fpr)
    threshold = calibrated[-1].threshold
    run(save_detector, calibrated, args.out)
    print(f"threshold: {threshold:.6g} (score above it: generated), set on n = {len(data)} "
          f"real images for a false-positive rate of at most {args.fpr:g} on real images "
          "like them")
    print(f"calibrated detector saved to {args.out}")
