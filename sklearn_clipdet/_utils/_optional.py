"""Optional dependencies: imported where they are used, with an error naming the extra."""

import importlib


def import_optional(module, *, extra, purpose):
    """Import and return ``module``, or raise an ImportError that says what to install.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"matplotlib.figure"``.
    extra : str
        The sklearn-clipdet extra that installs it, e.g. ``"plot"``.
    purpose : str
        What needs the module, as the message's subject, e.g. ``"Plotting"``.

    Returns
    -------
    module : module
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed; install it "
            f'with: pip install "sklearn-clipdet[{extra}]"'
        ) from exc
