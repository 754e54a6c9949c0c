"""Writing output files so that they are either complete or absent."""

import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    The temporary file lies in the folder of ``path`` (a rename within one file
    system is atomic), so an interrupted or failed write leaves any earlier
    ``path`` untouched and no partial file behind. The new file gets the
    permissions an ordinary ``open`` would give it (``0o666`` less the umask).

    Parameters
    ----------
    path : str or path-like
        The file to write.
    write : callable
        Writes the whole content to the path it is given.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
