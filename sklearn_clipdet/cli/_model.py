"""The models a command runs: a featurizer made from the options, or a detector loaded from
its file (or the shipped one) with its backbone checked before any image is encoded."""

from pathlib import Path

from ..exceptions import CommandError
from ._run import run


def choose_modalities(args, data):
    """--modalities, with "auto" resolved from the data (and said)."""
    if args.modalities != "auto":
        return args.modalities
    has_text = "text" in data and data["text"].notna().any()
    chosen = "image+text" if has_text or args.default_text else "image"
    print(f"modalities: {chosen} ({'captions found' if has_text else 'no captions in the data'})")
    return chosen


def featurizer_params(args):
    """The CLIPFeaturizer settings given by the model options."""
    return {
        "batch_size": args.featurizer_batch_size,
        "default_text": args.default_text,
        "on_error": args.on_error,
        "precision": args.precision,
    }


def make_featurizer(args, modalities):
    from ..featurizer import CLIPFeaturizer

    return CLIPFeaturizer(
        args.model,
        args.pretrained,
        modalities=modalities,
        cache_dir=args.cache_dir,
        device=args.device,
        verbose=0 if args.quiet else 1,
        **featurizer_params(args),
    )


def load_detector(args):
    """The detector of ``args.model_file``, or the shipped one without it, with its backbone
    checked and the command's run-time settings."""
    from sklearn.pipeline import Pipeline

    if args.model_file is None:
        detector = _load_shipped(args)  # its backbone checked on probe images
    else:
        detector = _load_file(args)
        if not isinstance(detector, Pipeline):
            raise CommandError(f"{args.model_file} holds a classifier without its featurizer")
    featurizer = detector[0]
    # Settings that change how, not what, the detector computes.
    featurizer.set_params(
        on_error=args.on_error, cache_dir=args.cache_dir, verbose=0 if args.quiet else 1
    )
    if args.model_file is not None:
        _check_backbone(featurizer, Path(args.model_file), args)
    return detector


def _load_file(args):
    from ..persistence import load_detector as load

    path = Path(args.model_file)
    if not path.is_file():
        raise CommandError(f"no detector file at {path}")
    if args.pretrained is not None and args.model is None:
        raise CommandError("--pretrained needs --model (the architecture it belongs to)")
    source = {} if args.model is None else {"model_name": args.model,
                                             "pretrained": args.pretrained}
    return run(load, path, device=args.device, **source)


def _load_shipped(args):
    """The shipped detector on OpenAI's ViT-B/16: downloaded, or --model local-dir:FOLDER."""
    from .. import pretrained

    path = Path(pretrained.PRETRAINED_DETECTOR)  # read now, so that tests can point it elsewhere
    if not path.is_file():
        raise CommandError(f"this installation has no shipped detector ({path} is missing); "
                           "pass a detector file written by 'clipdet train'")
    # Without --model, load_pretrained's defaults: ViT-B-16 with the "openai" weights.
    source = {} if args.model is None else {"model_name": args.model,
                                             "pretrained": args.pretrained}
    if args.model is None and args.pretrained is not None:
        source = {"pretrained": args.pretrained}  # a checkpoint FILE of ViT-B-16
    # A backbone whose features disagree on the probe images is a DetectorFileError,
    # whose message names the backbone to use.
    return run(pretrained.load_pretrained, device=args.device, path=path, **source)


def _check_backbone(featurizer, path, args):
    """Refuse, before encoding, a backbone other than the one the detector was trained with."""
    expected = featurizer.backbone_fingerprint
    actual = run(featurizer.load_backbone).fingerprint
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
