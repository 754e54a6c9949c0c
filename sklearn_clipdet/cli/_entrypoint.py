"""``main``: the parser of all commands, and how a command's failures reach its user."""

import contextlib
import functools
import signal
import sys
import threading
import warnings

from .._version import __version__
from ..exceptions import CommandError
from . import _audit, _calibrate, _evaluate, _explain, _featurize, _predict, _train
from ._options import Parser, detector_file_after_options

_COMMANDS = (_featurize, _train, _predict, _calibrate, _evaluate, _explain, _audit)
_README_OFFLINE = "'Offline use' in the README"
_TINY_MODEL = (
    "python -c \"from sklearn_clipdet.testing import write_tiny_model; "
    "write_tiny_model('tiny-clip')\""
)


def main(argv=None):
    """Entry point of the ``clipdet`` console script; returns the exit status."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    extras = detector_file_after_options(args, extras)
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    prog = f"clipdet {args.command}"
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("default")
        # Deprecations inside libraries are for developers, not for the command's user.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = functools.partial(_print_warning, prog)
        try:
            with _sigterm_raises():
                args.run(args)
        except CommandError as exc:
            advice = f" {_offline_advice(args)}" if exc.offline_hint else ""
            print(f"{prog}: error: {exc}{advice}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except _Terminated:
            print(f"{prog}: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
    return 0


class _Terminated(BaseException):
    """SIGTERM, raised where the command is so that its cleanup runs (not an Exception:
    nothing that handles errors may swallow it)."""


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM (kill, docker stop, Slurm) into :class:`_Terminated` while the command runs,
    as Ctrl-C is turned into KeyboardInterrupt, so that partial files and temporary folders are
    removed. Later SIGTERMs are ignored until the cleanup is done (SIGKILL still ends it); the
    previous handler is put back afterwards. Handlers are set in the main thread only: elsewhere
    the command runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back; the default ends.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def build_parser():
    """The ``clipdet`` parser: each command module adds its own sub-parser and options."""
    parser = Parser(
        prog="clipdet",
        description="Detect diffusion-generated images with CLIP features and a robust MLP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


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
