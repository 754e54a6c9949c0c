"""Calls into the library, with its errors turned into one-line command errors."""

from ..exceptions import CommandError


def run(function, *args, **kwargs):
    """Call ``function``; its weights, value, file and import errors become CommandErrors."""
    from ..exceptions import WeightsUnavailableError

    try:
        return function(*args, **kwargs)
    except WeightsUnavailableError as exc:
        source = exc.model_name if exc.pretrained is None else \
            f"{exc.model_name} (pretrained {exc.pretrained})"
        raise CommandError(f"cannot load the CLIP model {source}: {exc.reason}.",
                           offline_hint=exc.offline_hint) from exc
    except (ValueError, OSError, ImportError) as exc:
        raise CommandError(first_line(exc)) from exc


def first_line(exc):
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
