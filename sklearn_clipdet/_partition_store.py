"""The on-disk store of :mod:`sklearn_clipdet.distributed`: an output folder of Parquet
partitions, its manifest and failures, and the tokens that say whether a partition is
finished for a run's settings and input. Needs pyarrow, not Dask.

Nothing read back is trusted: the manifest's fields are checked, and each partition
carries a checksum of its columns and summary (written with it, checked whenever it is
read) and its own number, so a damaged, swapped or renamed file is found.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from ._constants import FEATURE_NEUTRAL_PARAMS
from ._images._reading import describe_input, is_missing
from ._utils._files import atomic_write
from ._utils._optional import import_optional
from ._utils._validation import preview

# 2: the backbone fingerprint and the files' size and mtime are recorded.
# 3: each partition holds a checksum of its columns and summary.
_FORMAT = 3
_MANIFEST = "_clipdet_features.json"
_FAILURES = "_failures.csv"
_METADATA_KEY = b"sklearn_clipdet"
_CHECKSUM = "checksum"
_PART_PATTERN = re.compile(r"^part-(\d+)\.parquet$")
_TEMP_PATTERN = re.compile(
    r"^\.(part-\d+\.parquet|_failures\.csv|_clipdet_features\.json)\..+\.tmp$"
)
_FAILURE_COLUMNS = ["index", "image", "error"]
# Parameters that cannot change the values of the features. The limits on image size are
# compared across runs all the same: they decide which images fail, and the folder records
# the failures.
_UNRELATED_PARAMS = {name for name, kind in FEATURE_NEUTRAL_PARAMS.items() if kind != "limit"}


def _import_pyarrow():
    import_optional("pyarrow.parquet", extra="dask",
                    purpose="Writing the features' Parquet files")
    import pyarrow  # imported by pyarrow.parquet above

    return pyarrow


# --- output folder ---------------------------------------------------------------------------


def _part_name(k):
    return f"part-{k:05d}.parquet"


def _prepare_output(output, settings, n_partitions, partition_size, overwrite):
    """Create or check the output folder and its manifest."""
    output.mkdir(parents=True, exist_ok=True)
    manifest_path = output / _MANIFEST
    ours = [p for p in output.iterdir()
            if _PART_PATTERN.match(p.name) or _TEMP_PATTERN.match(p.name)
            or p.name in (_MANIFEST, _FAILURES)]
    if overwrite:
        for path in ours:
            path.unlink()
        ours = []
    manifest = {
        "format": _FORMAT,
        "n_partitions": n_partitions,
        "partition_size": partition_size,
        "settings": settings,
        "token": _token(settings),
    }
    if manifest_path.is_file():
        previous = _read_manifest(output)
        changed = [key for key in ("n_partitions", "partition_size", "token")
                   if previous.get(key) != manifest[key]]
        if changed:
            details = "; ".join(f"{key}: {previous.get(key)!r} before, {manifest[key]!r} now"
                                for key in changed if key != "token")
            if "token" in changed:
                details = "; ".join(filter(None, [details, _settings_diff(
                    previous.get("settings", {}), settings)]))
            raise ValueError(
                f"{output} holds features of another run ({details}). Use another output "
                "folder, or overwrite=True to delete them."
            )
    elif any(_PART_PATTERN.match(p.name) for p in ours):
        raise ValueError(f"{output} holds part-*.parquet files but no {_MANIFEST}; they were "
                         "not written by featurize. Use another output folder.")
    # Temporary files of an interrupted run are incomplete by construction.
    for path in ours:
        if _TEMP_PATTERN.match(path.name) and path.exists():
            path.unlink(missing_ok=True)
    atomic_write(manifest_path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


def _read_manifest(output):
    """The manifest of ``output``, its fields checked; a ValueError names what is wrong."""
    path = output / _MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _damaged_manifest(path, f"not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise _damaged_manifest(path, "not a JSON object")
    fields = {
        "format": (_is_count, "an int >= 1"),
        "n_partitions": (_is_count, "an int >= 1"),
        "partition_size": (lambda value: value is None or _is_count(value), "an int >= 1 or null"),
        "token": (lambda value: isinstance(value, str), "a str"),
        "settings": (lambda value: isinstance(value, dict), "an object"),
    }
    for key, (valid, expected) in fields.items():
        if key not in manifest:
            raise _damaged_manifest(path, f"{key} is missing")
        if not valid(manifest[key]):
            raise _damaged_manifest(path, f"{key} is {manifest[key]!r}, not {expected}")
        if key == "format" and manifest[key] != _FORMAT:
            raise ValueError(
                f"{output} holds features in store format {manifest[key]} of another version "
                f"of sklearn-clipdet; this version reads format {_FORMAT}, whose partitions "
                "carry checksums. Featurize again into another folder, or with overwrite=True."
            )
    return manifest


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _damaged_manifest(path, problem):
    return ValueError(
        f"{path} is damaged ({problem}): the run it describes is unknown. Featurize again "
        "into another folder, or with overwrite=True to delete the features there."
    )


def _digest(data):
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _column_digest(column):
    """Hash of one column's values."""
    import pyarrow as pa

    if pa.types.is_floating(column.type):
        return _digest(column.to_numpy().tobytes())
    return _digest(repr(column.to_pylist()).encode())


def _summary_digest(summary):
    return _digest(json.dumps(summary, sort_keys=True).encode())


def _checksum(table, summary):
    """Hashes of a partition's summary and of each of its columns, by name: a reader of
    some columns checks those alone."""
    return {"summary": _summary_digest(summary),
            "columns": {name: _column_digest(column)
                        for name, column in zip(table.column_names, table.columns)}}


def _write_partition(output, k, index, names, features, summary):
    """Write partition ``k``: its index labels, features and ``summary`` with a checksum."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # From the pandas index, so that an empty partition keeps the type of the labels.
    labels = pa.Array.from_pandas(pd.Series(index, copy=False))
    arrays = [labels] + [pa.array(features[:, j]) for j in range(features.shape[1])]
    table = pa.Table.from_arrays(arrays, names=["index", *names])
    summary = {**summary, _CHECKSUM: _checksum(table, summary)}
    table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(summary).encode()})
    atomic_write(output / _part_name(k), lambda tmp: pq.write_table(table, tmp))


class _DamagedPartition(Exception):
    """A partition file that cannot be trusted; the message says why."""


def _read_partition(output, k, columns=None):
    """``(table, summary)`` of partition ``k`` (its ``index`` and feature ``columns``;
    None: all), without metadata, after checking that it is partition ``k`` and that
    the summary and the columns read match their checksums.

    Raises
    ------
    _DamagedPartition
        When the file cannot be read or fails a check.
    ValueError
        When ``columns`` names columns the partition does not have.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = output / _part_name(k)
    try:
        schema = pq.read_schema(path)
        summary = json.loads((schema.metadata or {}).get(_METADATA_KEY, b"null"))
        checksum = summary.pop(_CHECKSUM, None) if isinstance(summary, dict) else None
        if (not isinstance(checksum, dict) or not isinstance(checksum.get("summary"), str)
                or not isinstance(checksum.get("columns"), dict)
                or set(checksum["columns"]) != set(schema.names)):
            raise _DamagedPartition("its metadata lack the checksums of its columns")
        if columns is not None:
            _check_columns(output, columns, schema.names)
            columns = ["index", *columns]
        table = pq.read_table(path, columns=columns).replace_schema_metadata(None)
        intact = (checksum["summary"] == _summary_digest(summary)
                  and all(checksum["columns"][name] == _column_digest(column)
                          for name, column in zip(table.column_names, table.columns)))
    except (OSError, TypeError, pa.ArrowException) as exc:
        raise _DamagedPartition(f"unreadable: {str(exc).rstrip('.')}") from exc
    except ValueError as exc:
        if isinstance(exc, _UnknownColumns):
            raise
        raise _DamagedPartition(f"unreadable: {str(exc).rstrip('.')}") from exc
    if not intact:
        raise _DamagedPartition("its data do not match the checksum written with them")
    if summary.get("partition") != k:
        raise _DamagedPartition(
            f"it holds partition {summary.get('partition')!r}, not {k}: files were renamed"
        )
    return table, summary


class _UnknownColumns(ValueError):
    """Feature columns asked for that a store does not have."""


def _check_columns(output, columns, names):
    unknown = [name for name in columns if name == "index" or name not in names]
    if unknown:
        raise _UnknownColumns(
            f"columns {preview(unknown)} are not features in {output}; its features are "
            f"{preview(names[1:])}."
        )


def _read_features_table(output, k, token, columns):
    """The ``index`` and feature ``columns`` (None: all) of partition ``k`` of the run
    ``token``, checked (see :func:`_read_partition`); a ValueError names a bad file."""
    path = output / _part_name(k)
    try:
        table, summary = _read_partition(output, k, columns)
    except _DamagedPartition as exc:
        raise ValueError(
            f"{path} is damaged ({exc}). Call featurize again with the same input and "
            "settings: it computes damaged partitions again."
        ) from exc
    if summary.get("token") != token:
        raise ValueError(
            f"{path} holds features of another run than {output / _MANIFEST} (copied from "
            "another output folder?). Delete it and call featurize again to compute it."
        )
    return table


def _finished_partition(output, k, token, input_token, files_token):
    """``(summary, None)`` if partition ``k`` is finished for this run and input (given by
    its :func:`_input_token` and :func:`_files_token`), else ``(None, why)``, why being
    "absent", "files changed" (image files of the partition have another size or
    modification time than when it was written) or "damaged: <reason>" (see
    :func:`_read_partition`). A partition of other settings or another input is an error.
    """
    path = output / _part_name(k)
    if not path.is_file():
        return None, "absent"
    try:
        _, stored = _read_partition(output, k)
    except _DamagedPartition as exc:
        return None, f"damaged: {exc}"
    if stored.get("token") != token or stored.get("input_token") != input_token:
        raise ValueError(
            f"{path} holds features of another input than partition {k} of this one (the "
            "input changed since the earlier run). Use another output folder, or "
            "overwrite=True to delete the earlier features."
        )
    if stored.get("files_token") != files_token:
        return None, "files changed"
    return {**stored, "status": "skipped", "warnings": []}, None


def _write_failures(output, failures):
    atomic_write(output / _FAILURES, lambda tmp: failures.to_csv(tmp, index=False))


def _failure_table(summaries):
    rows = [failure for summary in summaries for failure in summary["failures"]]
    return pd.DataFrame(rows, columns=_FAILURE_COLUMNS)


def _settings(featurizer):
    """The featurizer parameters that determine the feature values, JSON-ready."""
    from .featurizer import CLIPFeaturizer

    if not isinstance(featurizer, CLIPFeaturizer):
        raise TypeError(f"featurizer must be a CLIPFeaturizer, got {type(featurizer).__name__}.")
    clone(featurizer).fit(None)  # checks the parameters
    params = featurizer.get_params(deep=False)
    return {
        name: os.fspath(value) if isinstance(value, os.PathLike) else value
        for name, value in sorted(params.items())
        if name not in _UNRELATED_PARAMS
    }


def _settings_diff(before, now):
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return "; ".join(_describe_change(k, before.get(k), now.get(k)) for k in changed)


def _describe_change(key, before, now):
    if key == "backbone":
        return (f"backbone: other weights, preprocessing, tokenizer or open_clip version "
                f"(fingerprint {str(before)[:12]} before, {str(now)[:12]} now)")
    return f"{key}: {before!r} before, {now!r} now"


def _token(obj):
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _as_sequence_or_frame(images, featurizer):
    if isinstance(images, pd.DataFrame):
        return images
    if isinstance(images, pd.Series):  # keep its index
        column = featurizer.text_column if featurizer.modalities == "text" else \
            featurizer.image_column
        return images.to_frame(name=column)
    if isinstance(images, (str, bytes, os.PathLike)) or not hasattr(images, "__len__"):
        raise TypeError(
            "images must be a sequence of images, a pandas DataFrame or Series, or a dask "
            "DataFrame, got "
            f"{type(images).__name__}."
        )
    return list(images)


@dataclass
class _Positional:
    """A partition of a sequence input: its samples and the position of the first one."""

    samples: list
    start: int

    def __len__(self):
        return len(self.samples)


def _labels(part):
    """The index labels of a partition, as plain Python values."""
    if isinstance(part, _Positional):
        return list(range(part.start, part.start + len(part.samples)))
    return [label.item() if isinstance(label, np.generic) else label for label in part.index]


def _json_label(label):
    return label if isinstance(label, (int, float, str)) else str(label)


def _samples_by_kind(part, featurizer):
    """``{"image": samples, "text": samples}``: the inputs of a partition the featurizer reads."""
    if isinstance(part, _Positional):
        return {"text" if featurizer.modalities == "text" else "image": part.samples}
    wanted = {"image": featurizer.image_column, "text": featurizer.text_column}
    return {kind: part[column] for kind, column in wanted.items()
            if kind in featurizer.modalities and column in part.columns}


def _input_token(part, featurizer):
    """Hash of the index labels and the samples of a partition (image paths or data, texts)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(_labels(part)).encode())
    for kind, samples in _samples_by_kind(part, featurizer).items():
        digest.update(f"|{kind}|".encode())
        for item in samples:
            digest.update(_sample_bytes(item))
    return digest.hexdigest()


def _files_token(part, featurizer):
    """Hash of the size and modification time of the image files of a partition.

    With the paths in the input token, they stand for the content of the files:
    hashing the content would read every file again on each resume.
    """
    digest = hashlib.blake2b(digest_size=16)
    for item in _samples_by_kind(part, featurizer).get("image", []):
        if not isinstance(item, (str, os.PathLike)):
            digest.update(b"-;")  # in-memory data: part of the input token
            continue
        try:
            stat = os.stat(item)
        except OSError:
            digest.update(b"absent;")
            continue
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def _sample_bytes(item):
    if is_missing(item):
        content = b"m"
    elif isinstance(item, (str, os.PathLike)):
        content = b"s" + os.fsencode(item)
    elif isinstance(item, bytes):
        content = b"b" + hashlib.blake2b(item, digest_size=16).digest()
    elif isinstance(item, np.ndarray):
        meta = f"a{item.shape}{item.dtype}".encode()
        content = meta + hashlib.blake2b(np.ascontiguousarray(item).tobytes(),
                                         digest_size=16).digest()
    elif hasattr(item, "tobytes") and hasattr(item, "mode"):  # PIL image
        meta = f"i{item.size}{item.mode}".encode()
        content = meta + hashlib.blake2b(item.tobytes(), digest_size=16).digest()
    else:
        content = b"r" + repr(item).encode()
    return len(content).to_bytes(8, "little") + content


def _image_value(part, row, featurizer):
    """The image input of a row: its path, or a short description of other inputs."""
    item = part[featurizer.image_column].iloc[row] if isinstance(part, pd.DataFrame) else part[row]
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else describe_input(item)

