import sqlite3
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from sklearn_clipdet._clip._cache import FeatureCache, FeatureCacheError


def vectors(n, dim=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_round_trip(tmp_path):
    with FeatureCache(tmp_path) as cache:
        cache.put_many([("a", vectors(1)[0]), ("b", vectors(1, seed=1)[0])])
        np.testing.assert_array_equal(cache.get("a", 8), vectors(1)[0])
        assert cache.get("missing", 8) is None
        assert set(cache.get_many(["a", "b", "c"], 8)) == {"a", "b"}
    # persists across objects
    with FeatureCache(tmp_path) as cache:
        np.testing.assert_array_equal(cache.get("b", 8), vectors(1, seed=1)[0])


def test_wrong_dimension_is_a_miss(tmp_path):
    with FeatureCache(tmp_path) as cache:
        cache.put_many([("a", vectors(1)[0])])
        assert cache.get("a", 16) is None


def test_many_keys_at_once(tmp_path):
    data = vectors(1200)
    with FeatureCache(tmp_path) as cache:
        cache.put_many((str(i), v) for i, v in enumerate(data))
        found = cache.get_many([str(i) for i in range(1200)], 8)
    assert len(found) == 1200
    np.testing.assert_array_equal(found["1100"], data[1100])


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "swap"])
def test_corrupt_entries_are_detected_and_deleted(tmp_path, damage):
    with FeatureCache(tmp_path) as cache:
        cache.put_many([("a", vectors(1)[0]), ("b", vectors(1, seed=1)[0])])
        path = cache.path
    with sqlite3.connect(path) as connection:
        row = connection.execute("SELECT data FROM features WHERE key='a'").fetchone()
        data = bytearray(row[0])
        if damage == "flip_byte":
            data[5] ^= 0xFF
            connection.execute("UPDATE features SET data=? WHERE key='a'", (bytes(data),))
        elif damage == "truncate":
            connection.execute("UPDATE features SET data=? WHERE key='a'", (bytes(data[:-4]),))
        else:  # another entry's intact bytes and checksum under this key
            connection.execute(
                "UPDATE features SET (data, checksum) = "
                "(SELECT data, checksum FROM features WHERE key='b') WHERE key='a'"
            )
    with FeatureCache(tmp_path) as cache:
        assert cache.get("a", 8) is None
        assert cache.get("b", 8) is not None
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM features WHERE key='a'").fetchone()[0] == 0


def test_unreadable_database_gives_clear_error(tmp_path):
    path = tmp_path / "clip_features.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(FeatureCacheError, match="damaged or is not a feature cache.*delete it") \
            as info:
        FeatureCache(tmp_path)
    assert str(path) in str(info.value) and isinstance(info.value, OSError)


def test_cache_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    for cache_dir in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(FeatureCacheError, match=f"cache_dir {cache_dir} is not a folder"):
            FeatureCache(cache_dir)


def test_read_only_cache_is_refused_when_opened(tmp_path, monkeypatch):
    with FeatureCache(tmp_path) as cache:
        cache.put_many([("a", vectors(1)[0])])
    # Open the file read-only, as sqlite does for a file this user cannot write (permissions
    # alone cannot make it so for root, who runs some test machines).
    from sklearn_clipdet._clip import _cache

    connect = sqlite3.connect
    monkeypatch.setattr(_cache.sqlite3, "connect", lambda path, **kwargs: connect(
        f"file:{path}?mode=ro", uri=True, **kwargs))
    with pytest.raises(FeatureCacheError, match="read-only. Give write permission") as info:
        FeatureCache(tmp_path)  # refused at once, not after features have been computed
    assert str(tmp_path / "clip_features.sqlite3") in str(info.value)
    assert "delete" not in str(info.value)


def test_errors_while_reading_are_feature_cache_errors(tmp_path):
    with FeatureCache(tmp_path) as cache:
        cache.put_many([("a", vectors(1)[0])])
        with sqlite3.connect(tmp_path / "clip_features.sqlite3") as other:
            other.execute("DROP TABLE features")
        with pytest.raises(FeatureCacheError, match="clip_features.sqlite3 cannot be used"):
            cache.get_many(["a", "b"], 8)
        with pytest.raises(FeatureCacheError, match="clip_features.sqlite3 cannot be used"):
            cache.put_many([("b", vectors(1)[0])])


def test_threads_share_one_cache(tmp_path):
    cache = FeatureCache(tmp_path)
    data = vectors(400)

    read_back = {}

    def work(part):
        mine = [str(i) for i in range(part, 400, 4)]
        cache.put_many((key, data[int(key)]) for key in mine)
        read_back[part] = cache.get_many(mine, 8)  # asserted below, in the main thread

    threads = [threading.Thread(target=work, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for part, found in read_back.items():
        assert sorted(found, key=int) == [str(i) for i in range(part, 400, 4)]
        for key, vector in found.items():
            np.testing.assert_array_equal(vector, data[int(key)])
    assert len(read_back) == 4
    assert len(cache.get_many([str(i) for i in range(400)], 8)) == 400
    cache.close()


def test_several_processes_write_and_read_concurrently(tmp_path):
    # The cache needs the stdlib, numpy and the (leaf) errors module: the processes start fast.
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from sklearn_clipdet._clip._cache import FeatureCache
        assert "torch" not in sys.modules
        worker = int(sys.argv[1])
        cache = FeatureCache({str(tmp_path)!r})
        for start in range(0, 300, 10):
            cache.put_many((f"{{worker}}-{{i}}", np.full(8, i, np.float32))
                           for i in range(start, start + 10))
            cache.get_many([f"{{1 - worker}}-{{i}}" for i in range(300)], 8)
        cache.close()
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in (0, 1)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    with FeatureCache(tmp_path) as cache:
        found = cache.get_many([f"{w}-{i}" for w in (0, 1) for i in range(300)], 8)
    assert len(found) == 600
    np.testing.assert_array_equal(found["1-299"], np.full(8, 299, np.float32))
