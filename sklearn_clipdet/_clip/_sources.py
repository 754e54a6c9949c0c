"""Where a CLIP model comes from: check its source before loading, explain why loading failed.

A mistyped architecture, tag, file or ``local-dir:`` folder is found here, before
open_clip builds a model, and reported as what it is (with close matches). Only
failures that weights on disk could fix (a download that failed, say) get the
advice on working offline.
"""

import contextlib
import difflib
import logging
import os
from pathlib import Path

import open_clip

from .._utils._open_clip import parse_model_name
from .._utils._validation import preview
from ..exceptions import WeightsUnavailableError

__all__ = [
    "WeightsUnavailableError",
    "check_source",
    "open_clip_logs_to_debug",
    "source_files",
    "weights_error",
]

_CONFIG_FILE = "open_clip_config.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")
_FILE_SUFFIXES = (*_WEIGHT_SUFFIXES, ".pt", ".ckpt")
_OFFLINE_ADVICE = (
    "If the machine is offline or the weights live elsewhere, pass a local checkpoint file as "
    "pretrained='/path/to/weights.bin' (or .safetensors) with the matching architecture as "
    "model_name, or put open_clip_config.json and the weights in a folder and use "
    "model_name='local-dir:/path/to/folder'. Weights already in the Hugging Face cache load "
    "offline with HF_HUB_OFFLINE=1."
)

logger = logging.getLogger("sklearn_clipdet._sources")  # the name the user guide gives


def _error(model_name, pretrained, reason, offline_hint=False):
    advice = f" {_OFFLINE_ADVICE}" if offline_hint else ""
    return WeightsUnavailableError(
        f"Could not load the CLIP model model_name={model_name!r}, pretrained={pretrained!r}: "
        f"{reason}.{advice}",
        reason=reason,
        offline_hint=offline_hint,
        model_name=model_name,
        pretrained=pretrained,
    )


def weights_error(model_name, pretrained, exc):
    """The WeightsUnavailableError for an exception open_clip (or the download) raised."""
    lines = str(exc).strip().splitlines() or [""]
    reason = f"{type(exc).__name__}: {lines[0]}".rstrip(": ")
    return _error(model_name, pretrained, reason, offline_hint=True)


def check_source(model_name, pretrained):
    """Raise WeightsUnavailableError when the source cannot be loaded, without loading it.

    Checks what is known locally: a ``local-dir:`` folder exists and holds
    ``open_clip_config.json`` and a weights file; an architecture name is one
    open_clip knows; ``pretrained`` is a known tag of it or an existing file.
    """
    schema, identifier = parse_model_name(model_name)
    if schema == "local-dir":
        reason = _local_dir_problem(Path(identifier).resolve())
    elif schema is None:
        reason = _architecture_problem(model_name) or _pretrained_problem(model_name, pretrained)
    else:
        reason = None  # hf-hub: only the hub can tell
    if reason:
        raise _error(model_name, pretrained, reason)


def source_files(model_name, pretrained):
    """The identity of the local files a source is loaded from, to tell when they change.

    For a ``local-dir:`` folder, the files of the model in it (configuration,
    weights, tokenizer files; other files, a log say, may change freely); for
    a checkpoint file given as ``pretrained``, that file. Each is named with
    its size, modification time (ns) and inode, as the image files of a
    distributed run are: the content is not read.

    Returns
    -------
    identity : tuple or None
        ``((name, size, mtime_ns, inode), ...)``; None for a source known by
        name only (a pretrained tag, ``hf-hub:``), whose files the download
        cache manages.
    """
    schema, identifier = parse_model_name(model_name)
    if schema == "local-dir":
        try:
            paths = sorted(path for path in Path(identifier).iterdir()
                           if _model_file(path.name) and path.is_file())
        except OSError:
            return ()  # no folder: check_source says why
    elif schema is None and pretrained and os.path.isfile(pretrained):
        paths = [Path(pretrained)]
    else:
        return None
    identity = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue  # removed since it was listed
        identity.append((path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(identity)


_TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "special_tokens", "spiece", "sentencepiece")


def _model_file(name):
    """Whether a file of a ``local-dir:`` folder is one open_clip may load the model from."""
    return (name in (_CONFIG_FILE, "config.json", "added_tokens.json")
            or name.endswith(_WEIGHT_SUFFIXES)
            or name.startswith(_TOKENIZER_FILES) or name.endswith((".model", ".txt.gz")))


def _local_dir_problem(folder):
    if not folder.exists():
        return f"the local-dir folder {folder} does not exist"
    if not folder.is_dir():
        return f"local-dir:{folder} is a file, not a folder"
    names = sorted(path.name for path in folder.iterdir())
    if _CONFIG_FILE not in names:
        return f"the local-dir folder {folder} has no {_CONFIG_FILE} (it holds {_few(names)})"
    if not any(name.endswith(_WEIGHT_SUFFIXES) for name in names):
        return (f"the local-dir folder {folder} has no weights file (open_clip_model.safetensors "
                f"or open_clip_pytorch_model.bin; it holds {_few(names)})")
    return None


def _architecture_problem(model_name):
    known = open_clip.list_models()
    if model_name.replace("/", "-") in known:
        return None
    reason = f"{model_name!r} is not one of the {len(known)} open_clip architectures"
    matches = _close_matches(model_name, known)
    if matches:
        reason += f"; close matches: {', '.join(matches)}"
    if os.path.isdir(model_name):
        reason += f"; a folder of that name exists (a model on disk is 'local-dir:{model_name}')"
    return reason


def _pretrained_problem(model_name, pretrained):
    if not pretrained or os.path.isfile(pretrained):
        return None
    architecture = model_name.replace("/", "-")
    tags = open_clip.list_pretrained_tags_by_model(architecture)
    if pretrained in tags or open_clip.get_pretrained_cfg(architecture, pretrained):
        return None
    if os.sep in pretrained or "/" in pretrained or pretrained.lower().endswith(_FILE_SUFFIXES):
        return f"the pretrained weights file {os.path.abspath(pretrained)} does not exist"
    matches = _close_matches(pretrained, tags)
    known = f"close matches: {', '.join(matches)}" if matches else f"its tags: {_few(tags)}"
    return f"{pretrained!r} is neither a pretrained tag of {model_name!r} ({known}) nor a file"


def _close_matches(word, choices):
    """Up to 5 of ``choices`` close to ``word``, ignoring case."""
    by_lower = {choice.lower(): choice for choice in choices}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), by_lower, n=5)]


def _few(names, limit=8):
    return preview(names, limit) if names else "nothing"


class _LastResort(logging.Handler):
    """Does what Python does with records when the root logger has no handler.

    Stands in for "no handler" while open_clip loads, so that records of other
    threads in that time are shown as they would be without it.
    """

    def emit(self, record):
        others = [handler for handler in logging.getLogger().handlers if handler is not self]
        last_resort = logging.lastResort
        if not others and last_resort is not None and record.levelno >= last_resort.level:
            last_resort.handle(record)


@contextlib.contextmanager
def open_clip_logs_to_debug():
    """Pass open_clip's log records to this module's logger at DEBUG level while loading.

    open_clip logs through the root logger (``logging.error(...)``); in a process
    without logging configured that call installs a handler for good
    (``logging.basicConfig``) and prints an ``ERROR:root:`` line repeating what the
    raised exception says. The root logger is restored on exit.
    """
    root = logging.getLogger()
    package = os.path.dirname(open_clip.__file__)

    def reroute(record):
        if not record.pathname.startswith(package):
            return True
        logger.debug("open_clip: %s", record.getMessage())
        return False

    placeholder = _LastResort()  # root has a handler: logging.error calls no basicConfig
    root.addHandler(placeholder)
    root.addFilter(reroute)
    try:
        yield
    finally:
        root.removeFilter(reroute)
        root.removeHandler(placeholder)
