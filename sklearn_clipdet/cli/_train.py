"""``clipdet train``: a detector trained on labelled images, written to a detector file."""

from .._constants import (
    AUTO_BATCH_STEPS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_EPOCHS,
    MAX_AUTO_BATCH,
    MIN_AUTO_BATCH,
)
from . import _options
from ._data import check_captions, model_input, read_data
from ._model import choose_modalities, featurizer_params
from ._outputs import check_outputs
from ._run import run
from ._runtime import check_runtime


def add_parser(commands):
    train = commands.add_parser("train", help="train a detector on labelled images")
    train.add_argument("data", help="image folder (real/ and fake/ ...) or labelled CSV file")
    train.add_argument("--out", required=True, help="detector file to write (.safetensors)")
    _options.add_model_options(train)
    _options.add_runtime_options(train)
    train.add_argument("--epochs", type=_options.positive_int, default=DEFAULT_MAX_EPOCHS,
                       help=f"training epochs (default {DEFAULT_MAX_EPOCHS})")
    train.add_argument("--batch-size", type=_options.training_batch, default=DEFAULT_BATCH_SIZE,
                       help=f"training batch: 'auto' (default: n // {AUTO_BATCH_STEPS} rows, "
                       f"{MIN_AUTO_BATCH} to {MAX_AUTO_BATCH}, about {AUTO_BATCH_STEPS} steps "
                       "per epoch) or an integer >= 2")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.set_defaults(run=main)
    return train


def main(args):
    from ..persistence import save_detector
    from ..pipeline import make_detector

    check_outputs(args.out)
    check_runtime(args)
    data = read_data(args.data, need_labels=True, on_error=args.on_error)
    modalities = choose_modalities(args, data)
    check_captions(data, args.data, modalities, args.default_text)
    detector = make_detector(
        args.model,
        args.pretrained,
        modalities=modalities,
        cache_dir=args.cache_dir,
        device=args.device,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        featurizer_params=featurizer_params(args),
        classifier_params={"max_epochs": args.epochs, "batch_size": args.batch_size},
    )
    # An interrupted fit raises KeyboardInterrupt: no detector file is written.
    run(detector.fit, model_input(data), data["label"].to_numpy())
    run(save_detector, detector, args.out)
    print(f"trained on {len(data)} images ({modalities}); detector saved to {args.out}")
