"""Output files: checked before any work, written whole or not at all."""

import importlib.util
import os
from pathlib import Path

from ..exceptions import CommandError
from ._run import run

# What writing each kind of output file needs beyond the core install.
_OUTPUT_NEEDS = {
    ".parquet": ("pyarrow", "pip install pyarrow"),
    ".png": ("matplotlib", 'pip install "sklearn-clipdet[plot]"'),
}


def check_outputs(*paths):
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


def write_table(frame, path):
    """Write a .csv or .parquet table whole or not at all."""
    from .._utils._files import atomic_write

    write = frame.to_parquet if Path(path).suffix.lower() == ".parquet" else frame.to_csv
    run(atomic_write, path, lambda tmp: write(tmp, index=False))
