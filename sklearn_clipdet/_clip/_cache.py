"""A per-sample on-disk store of embedding vectors, in one sqlite file.

Keys are opaque strings built by the featurizer from everything that
determines a vector (model weights, precision, preprocessing, decoding, the
image content hash or the text). Each row stores the vector's length and a
checksum next to its float32 bytes; a row that fails either check is treated
as a miss, deleted, and recomputed by the caller. sqlite's write-ahead log
and busy timeout make the file safe to share between threads and processes.
A cache that cannot be used at all (a damaged or read-only file, a
``cache_dir`` that is not a folder) raises :class:`FeatureCacheError`.
"""

import contextlib
import hashlib
import logging
import random
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from ..exceptions import FeatureCacheError

__all__ = ["FeatureCache", "FeatureCacheError"]

_FILENAME = "clip_features.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    key TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL,
    checksum BLOB NOT NULL
)
"""
_TIMEOUT_S = 60.0
_SQL_BATCH = 500  # stays below sqlite's limit on query parameters

logger = logging.getLogger("sklearn_clipdet._cache")  # its name before the move


def _checksum(key, data):
    return hashlib.blake2b(key.encode() + b"\0" + data, digest_size=16).digest()


def _cache_error(path, exc):
    """A :class:`FeatureCacheError` that explains an sqlite error on the cache file ``path``."""
    name = getattr(exc, "sqlite_errorname", "")  # Python >= 3.11
    text = str(exc).lower()
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        advice = (
            "the file or its folder is read-only. Give write permission to both (SQLite also "
            f"writes {path.name}-wal and {path.name}-shm beside it), or choose another cache_dir"
        )
    elif name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text \
            or "malformed" in text:
        advice = (
            "the file is damaged or is not a feature cache. It only holds features that are "
            "computed again when missing: delete it, or choose another cache_dir"
        )
    elif name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        advice = (
            "it cannot be opened or created; check that its folder exists and is writable "
            "(SQLite writes journal files beside it), or choose another cache_dir"
        )
    else:
        advice = "choose another cache_dir, or delete the file if it is damaged"
    return FeatureCacheError(f"The feature cache {path} cannot be used ({exc}): {advice}.")


class FeatureCache:
    """Embedding vectors stored by key in ``<directory>/clip_features.sqlite3``.

    Each thread gets its own connection. Call :meth:`close` when done.

    Parameters
    ----------
    directory : str or path-like
        Folder of the cache file; created if needed.
    """

    def __init__(self, directory):
        directory = Path(directory)
        self.path = directory / _FILENAME
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise FeatureCacheError(
                f"cache_dir {directory} is not a folder: it, or a folder above it, is a file. "
                "Choose a folder (it is created if needed)."
            ) from exc
        except OSError as exc:
            raise FeatureCacheError(
                f"cache_dir {directory} cannot be created ({exc}); choose a folder you can "
                "write to."
            ) from exc
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()
        self._connection()  # create the schema now, so errors surface early

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            with self._errors():
                connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _connect(self):
        # Switching a new file to WAL needs an exclusive lock and does not wait on the busy
        # timeout, so processes that open a fresh cache together retry here.
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            connection = sqlite3.connect(self.path, timeout=_TIMEOUT_S, check_same_thread=False)
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                with connection:
                    connection.execute(_SCHEMA)
                    # A write that changes nothing: a read-only cache fails here, not after
                    # the first batch of features has been computed.
                    connection.execute("DELETE FROM features WHERE 0")
                return connection
            except sqlite3.OperationalError as exc:
                connection.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.01, 0.05))
            except BaseException:
                connection.close()
                raise

    @contextlib.contextmanager
    def _errors(self):
        try:
            yield
        except sqlite3.Error as exc:
            raise _cache_error(self.path, exc) from exc

    def get_many(self, keys, dim):
        """Return ``{key: float32 vector}`` for the keys found intact, of length ``dim``.

        Corrupt rows (wrong length or checksum) are deleted and left out.
        """
        keys = list(dict.fromkeys(keys))
        connection = self._connection()
        with self._errors():
            found, corrupt = self._read(connection, keys, dim)
        if corrupt:
            logger.warning("Recomputing %d corrupt feature cache entries in %s", len(corrupt),
                           self.path)
            with self._errors(), connection:
                connection.executemany("DELETE FROM features WHERE key = ?",
                                       [(key,) for key in corrupt])
        return found

    @staticmethod
    def _read(connection, keys, dim):
        """``({key: vector}, [corrupt keys])`` for the rows stored under ``keys``."""
        found, corrupt = {}, []
        for start in range(0, len(keys), _SQL_BATCH):
            chunk = keys[start:start + _SQL_BATCH]
            rows = connection.execute(
                "SELECT key, dim, data, checksum FROM features WHERE key IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for key, row_dim, data, checksum in rows:
                data = bytes(data)
                intact = row_dim == dim and len(data) == 4 * dim
                if not intact or bytes(checksum) != _checksum(key, data):
                    corrupt.append(key)
                    continue
                found[key] = np.frombuffer(data, dtype=np.float32)
        return found, corrupt

    def get(self, key, dim):
        """The vector stored under ``key``, or None."""
        return self.get_many([key], dim).get(key)

    def put_many(self, items):
        """Store ``(key, vector)`` pairs, replacing existing entries."""
        rows = []
        for key, vector in items:
            data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            rows.append((key, len(data) // 4, data, _checksum(key, data)))
        if rows:
            connection = self._connection()
            with self._errors(), connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO features (key, dim, data, checksum) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )

    def close(self):
        """Close every connection opened by this object."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
