"""Checks of where and how a command computes (--device, --precision, --cache-dir), before
it loads a model or reads an image."""

from ..exceptions import CommandError
from ._run import first_line


def check_runtime(args):
    """Check --device, --precision (where the command has it) and --cache-dir."""
    check_device(args.device)
    precision = getattr(args, "precision", None)
    if precision is not None:
        check_precision(precision, args.device)
    if args.cache_dir is not None:
        from .._clip._cache import FeatureCache

        try:
            FeatureCache(args.cache_dir).close()
        except (OSError, RuntimeError) as exc:  # unusable sqlite files come as either
            raise CommandError(f"--cache-dir {args.cache_dir}: {first_line(exc)}") from exc


def check_device(device):
    from .._utils._device import check_device as check

    try:
        check(device)
    except ValueError as exc:
        raise CommandError(f"--{exc}") from None


def check_precision(precision, device):
    """fp16 and bf16 run on a CUDA device only, int8 on the CPU only."""
    from .._utils._device import resolve_device

    on_cuda = resolve_device(device).startswith("cuda")
    if precision in ("fp16", "bf16") and not on_cuda:
        where = "no CUDA device on this machine" if device == "auto" else f"--device {device}"
        raise CommandError(f"--precision {precision} needs a CUDA device ({where}); use "
                           "--precision fp32 or int8 on a CPU")
    if precision == "int8" and on_cuda:
        raise CommandError("--precision int8 (quantised linear layers) runs on the CPU only; "
                           "pass --device cpu, or use --precision fp16 or bf16 on a GPU")
