"""Writing output files so that they are either complete or absent."""

import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


def _umask():
    """The process umask, read without changing it where the system tells it (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere the only way is to set it and put it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path, directory=False):
    """Ask the system to put ``path`` on disk (a folder: the names in it), where it can."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return  # folders cannot be opened on some systems (Windows)
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    The temporary file lies in the folder of ``path`` (a rename within one file
    system is atomic), so an interrupted or failed write leaves any earlier
    ``path`` untouched and no partial file behind; the content is synced to
    disk before the rename, so a power cut cannot leave a complete-looking
    partial file either. The new file gets the permissions an ordinary
    ``open`` would give it (``0o666`` less the umask), whatever the writer
    used for its temporary file.

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
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
