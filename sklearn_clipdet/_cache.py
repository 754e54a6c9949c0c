"""A per-sample on-disk store of embedding vectors, in one sqlite file.

Keys are opaque strings built by the featurizer from everything that
determines a vector (model weights, precision, preprocessing, decoding, the
image content hash or the text). Each row stores the vector's length and a
checksum next to its float32 bytes; a row that fails either check is treated
as a miss, deleted, and recomputed by the caller. sqlite's write-ahead log
and busy timeout make the file safe to share between threads and processes.
"""

import hashlib
import logging
import random
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["FeatureCache"]

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

logger = logging.getLogger(__name__)


def _checksum(key, data):
    return hashlib.blake2b(key.encode() + b"\0" + data, digest_size=16).digest()


class FeatureCache:
    """Embedding vectors stored by key in ``<directory>/clip_features.sqlite3``.

    Each thread gets its own connection. Call :meth:`close` when done.

    Parameters
    ----------
    directory : str or path-like
        Folder of the cache file; created if needed.
    """

    def __init__(self, directory):
        self.path = Path(directory) / _FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()
        self._connection()  # create the schema now, so errors surface early

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = self._connect()
            except sqlite3.DatabaseError as exc:
                raise RuntimeError(
                    f"The feature cache {self.path} cannot be used ({exc}); delete the file "
                    "or choose another cache_dir."
                ) from exc
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
                return connection
            except sqlite3.OperationalError as exc:
                connection.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.01, 0.05))
            except BaseException:
                connection.close()
                raise

    def get_many(self, keys, dim):
        """Return ``{key: float32 vector}`` for the keys found intact, of length ``dim``.

        Corrupt rows (wrong length or checksum) are deleted and left out.
        """
        keys = list(dict.fromkeys(keys))
        found, corrupt = {}, []
        connection = self._connection()
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
        if corrupt:
            logger.warning("Recomputing %d corrupt feature cache entries in %s", len(corrupt),
                           self.path)
            with connection:
                connection.executemany("DELETE FROM features WHERE key = ?",
                                       [(key,) for key in corrupt])
        return found

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
            with connection:
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
