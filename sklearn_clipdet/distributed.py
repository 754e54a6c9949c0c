"""Featurize large image collections on a Dask cluster, resumably, into Parquet partitions.

:func:`featurize` splits the input into partitions, runs a
:class:`~sklearn_clipdet.CLIPFeaturizer` on each one as a task on a
``dask.distributed`` cluster and writes one Parquet file per partition;
:func:`read_features` reads them back in input order. Each worker process
loads the CLIP model once, on its first task, and keeps it for the following
tasks (the per-process model cache of the featurizer); ``device="auto"``
resolves on each worker, so GPU workers use their GPU.

Dask and pyarrow are optional dependencies, imported only when these
functions run: ``pip install "sklearn-clipdet[dask]"``.

Layout of an output folder::

    _clipdet_features.json   settings of the run, number of partitions
    part-00000.parquet       "index" column (input index) + feature columns; its metadata
                             hold its number and a checksum of its columns, checked on read
    part-00001.parquet
    ...
    _failures.csv            index, image, error of every unreadable image

Only the partitions end in ``.parquet`` (and the other files start with "_"), so
``pandas.read_parquet(output)`` and ``dask.dataframe.read_parquet(output)`` read
them alone, in input order (as long as there are fewer than 100000).

For grid searches and cross-validation on a cluster, use scikit-learn with
``joblib.parallel_backend("dask")`` (see the user guide page
``docs/distributed.md``); nothing in this module is needed for that.
"""

import math
import re
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from ._partition_store import (
    _FAILURES,
    _MANIFEST,
    _as_sequence_or_frame,
    _failure_table,
    _files_token,
    _finished_partition,
    _image_value,
    _import_pyarrow,
    _input_token,
    _json_label,
    _labels,
    _part_name,
    _Positional,
    _prepare_output,
    _read_features_table,
    _read_manifest,
    _settings,
    _token,
    _write_failures,
    _write_partition,
)
from ._utils._optional import import_optional
from ._utils._validation import preview
from .exceptions import ImageDecodeError, ImageDecodeWarning

__all__ = ["FeaturizeResult", "featurize", "read_features"]

_DEFAULT_PARTITION_SIZE = 1024
_WARNINGS_LOCK = threading.Lock()


def _import_distributed():
    return import_optional("distributed", extra="dask",
                           purpose="sklearn_clipdet.distributed (dask.distributed)")


def _is_dask_dataframe(data):
    # Checked by module name, so that a plain list or pandas input never imports dask.
    module = type(data).__module__ or ""
    return module.split(".")[0] in ("dask", "dask_expr") and hasattr(data, "to_delayed")


@dataclass
class FeaturizeResult:
    """What :func:`featurize` did.

    :func:`featurize` makes it; its fields are its parameters.

    Parameters
    ----------
    output : pathlib.Path
        The output folder; read it with :func:`read_features`.
    n_samples : int
        Samples in the input, over all partitions.
    n_partitions : int
        Number of partitions (Parquet files).
    computed : list of int
        Partitions featurized by this call.
    skipped : list of int
        Partitions already finished by an earlier call and left untouched.
    failures : pandas.DataFrame
        One row per image that could not be read (all partitions, including
        skipped ones), with columns ``index`` (the input index), ``image``
        (the input, or a short description of it) and ``error``. Empty when
        every image was read. Also written to ``output/_failures.csv``.
    workers : dict
        ``{worker address: {"partitions": int, "device": str}}`` for the
        workers that computed partitions in this call.
    elapsed_s : float
        Wall-clock time of the call, in seconds.
    """

    output: Path
    n_samples: int
    n_partitions: int
    computed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failures: pd.DataFrame = None
    workers: dict = field(default_factory=dict)
    elapsed_s: float = 0.0


# --- public functions ------------------------------------------------------------------------


def featurize(
    images,
    featurizer,
    output,
    *,
    client=None,
    partition_size=None,
    overwrite=False,
    retry_failed=False,
    resources=None,
    progress=False,
):
    """Run a featurizer over partitions of ``images`` on a Dask cluster, writing Parquet files.

    Each partition becomes one task. A task featurizes its samples with a
    copy of ``featurizer`` and writes ``output/part-<k>.parquet`` (under a
    temporary name, then renamed, so a partition file is either complete or
    absent). A later call with the same input, settings and ``output`` skips
    the partitions already written, so an interrupted run resumes where it
    stopped.

    A run is identified by the featurizer's settings and by the fingerprint of
    the backbone the workers load (its weights, preprocessing, tokenizer and
    open_clip version): new weights behind the same ``local-dir:`` folder or
    checkpoint path make a resume an error, never a mix of two models, and a
    worker whose backbone differs from the run's refuses its task. A sample
    is identified by its index and its input (the path of an image file, or
    the data of an in-memory image); a file that changed at the same path
    (another size or modification time; the content is not read) makes its
    partition be computed again, with a warning. So does a partition file
    that is damaged or out of its place: each holds its number and a
    checksum of its data, checked whenever it is read.

    Every worker process loads the CLIP model once and reuses it for the
    following tasks; a first small task loads it on one worker to learn the
    backbone's fingerprint. The model loads on the workers, never on the
    client, and is never sent over the network, so the client needs neither
    the weights nor a GPU. With ``device="auto"`` each worker uses its own
    CUDA device when it has one.

    Parameters
    ----------
    images : list, pandas.DataFrame or dask.dataframe.DataFrame
        The samples, in any form :meth:`CLIPFeaturizer.transform` accepts: a
        sequence of images (file paths in practice: the workers read them,
        so they must be reachable from every worker), or a DataFrame with the
        featurizer's ``image_column`` and ``text_column``. A sequence is
        indexed by position; a DataFrame by its index. A dask DataFrame is
        processed partition by partition as it is, which lets the list of
        images itself be read on the cluster (``dd.read_parquet``,
        ``dd.read_csv``).
    featurizer : CLIPFeaturizer
        The settings to use; it need not be fitted, and is not modified.
        Its ``on_error`` policy applies: with ``"raise"`` the first
        unreadable image stops the run with an
        :class:`~sklearn_clipdet.exceptions.ImageDecodeError` naming the sample
        by its index; with ``"nan"`` such samples get NaN features and are
        listed in :attr:`FeaturizeResult.failures`.
    output : str or path-like
        Folder of the Parquet files, created if needed. It must be on a file
        system shared by the client and all workers.
    client : distributed.Client or None, default=None
        The cluster to run on; None uses the current default client
        (``distributed.get_client()``).
    partition_size : int or None, default=None
        Samples per partition for a list or a pandas DataFrame; None means
        1024. Larger partitions cost less scheduling overhead, smaller ones
        balance the load better and lose less work when interrupted. Must be
        None for a dask DataFrame, whose own partitions are used.
    overwrite : bool, default=False
        Delete the files of an earlier run in ``output`` first. Without it, a
        folder holding features of other settings or other input is an error.
    retry_failed : bool, default=False
        Recompute finished partitions that have unreadable images (after
        fixing the files, say), instead of skipping them.
    resources : dict or None, default=None
        Dask worker resources each task needs, e.g. ``{"GPU": 1}`` to run
        only on workers started with ``--resources GPU=1``.
    progress : bool, default=False
        Show a progress bar of finished partitions.

    Returns
    -------
    result : FeaturizeResult
        The output folder, the partitions computed and skipped, the table of
        unreadable images and the workers used.

    Raises
    ------
    ImageDecodeError
        With ``featurizer.on_error="raise"``, for the first unreadable image;
        the partitions finished until then are kept, so fixing the input and
        calling again resumes the run.
    ValueError
        When ``output`` holds features of other settings, another backbone or
        another input, or a damaged manifest or one of another store format
        (use ``overwrite=True`` or another folder), or for invalid arguments.
    RuntimeError
        When a worker loads another backbone than the run's (other model
        files or software on that machine).

    See Also
    --------
    read_features : Read the features back in input order.

    Notes
    -----
    A sample is identified by its position in a sequence, by its index
    label in a DataFrame: labels should be unique, and of a type Parquet
    can store (integers or strings).

    With ``pretrained=None`` (random weights) and an architecture name, each
    worker would draw different random weights, so the features of
    different partitions would not be comparable; a warning says so. Write
    such a model to a folder once and use ``"local-dir:<folder>"`` instead.

    Examples
    --------
    >>> from distributed import Client  # doctest: +SKIP
    >>> from sklearn_clipdet import CLIPFeaturizer
    >>> from sklearn_clipdet.distributed import featurize, read_features
    >>> client = Client("tcp://scheduler:8786")  # doctest: +SKIP
    >>> featurizer = CLIPFeaturizer("ViT-L-14", "openai", modalities="image", on_error="nan")
    >>> result = featurize(paths, featurizer, "/shared/features", client=client)  # doctest: +SKIP
    >>> result.failures  # doctest: +SKIP
    >>> X = read_features("/shared/features").to_numpy()  # doctest: +SKIP
    """
    distributed = _import_distributed()
    _import_pyarrow()
    start_time = time.perf_counter()
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError as exc:
            raise ValueError(
                "featurize needs a dask.distributed Client: create one first "
                "(distributed.Client(...)) or pass client=."
            ) from exc
    for name, value in (("overwrite", overwrite), ("retry_failed", retry_failed)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}.")
    settings = _settings(featurizer)
    _check_random_weights(featurizer)
    output = Path(output).resolve()

    is_dask = _is_dask_dataframe(images)
    if is_dask:
        if partition_size is not None:
            raise ValueError(
                "partition_size must be None for a dask DataFrame, whose own partitions are "
                "used; repartition the DataFrame instead (images.repartition(npartitions=...))."
            )
        clone(featurizer).fit(images._meta)  # checks the columns before anything runs
        parts = images.to_delayed()
        n_partitions, partition_size = len(parts), None
    else:
        if partition_size is None:
            partition_size = _DEFAULT_PARTITION_SIZE
        if (not isinstance(partition_size, (int, np.integer)) or isinstance(partition_size, bool)
                or partition_size < 1):
            raise ValueError(f"partition_size must be an int >= 1, got {partition_size!r}.")
        partition_size = int(partition_size)
        images = _as_sequence_or_frame(images, featurizer)
        if len(images) == 0:
            raise ValueError("images is empty: there is nothing to featurize.")
        clone(featurizer).fit(images[:0])  # checks the layout before anything runs
        n_partitions = math.ceil(len(images) / partition_size)
        parts = [images[k * partition_size:(k + 1) * partition_size] for k in range(n_partitions)]
        if isinstance(images, list):
            # Samples of a sequence are named by their position in the whole input.
            parts = [_Positional(part, k * partition_size) for k, part in enumerate(parts)]

    # The run's backbone, loaded where the features are computed: on a worker.
    backbone = client.submit(_backbone_fingerprint, featurizer, resources=resources,
                             pure=False).result()
    settings["backbone"] = backbone
    _prepare_output(output, settings, n_partitions, partition_size, overwrite)
    token = _token(settings)

    summaries, pending = {}, []
    for k, part in enumerate(parts):
        if not is_dask:
            # The input of a list or pandas partition is known here: skip finished ones
            # without a round trip to the cluster.
            state = None
            if (output / _part_name(k)).is_file():
                state, _ = _finished_partition(output, k, token, _input_token(part, featurizer),
                                               _files_token(part, featurizer))
            if state is not None and not (retry_failed and state["failures"]):
                summaries[k] = state
                continue
        pending.append((k, part))

    futures = _submit(client, pending, (featurizer, str(output), token, backbone, retry_failed),
                      resources, is_dask)
    summaries.update(_collect(client, futures, n_partitions, len(summaries), progress,
                              distributed))

    failures = _failure_table([summaries[k] for k in range(n_partitions)])
    _write_failures(output, failures)
    _reemit_warnings(summaries.values())
    _warn_computed_again(summaries)
    n_samples = sum(summary["n_rows"] for summary in summaries.values())
    if len(failures):
        first = failures.iloc[0]
        warnings.warn(
            f"{len(failures)} of {n_samples} images could not be read and got NaN features; "
            f"first: sample {first['index']} ({first['image']}): {first['error']}. The list is "
            f"in the result's failures and in {output / _FAILURES}.",
            ImageDecodeWarning,
            stacklevel=2,
        )
    workers = {}
    for summary in summaries.values():
        if summary["status"] == "computed":
            entry = workers.setdefault(summary["worker"], {"partitions": 0,
                                                           "device": summary["device"]})
            entry["partitions"] += 1
    return FeaturizeResult(
        output=output,
        n_samples=n_samples,
        n_partitions=n_partitions,
        computed=sorted(k for k, s in summaries.items() if s["status"] == "computed"),
        skipped=sorted(k for k, s in summaries.items() if s["status"] == "skipped"),
        failures=failures,
        workers=workers,
        elapsed_s=time.perf_counter() - start_time,
    )


def read_features(output, *, columns=None):
    """Read the features written by :func:`featurize`, in input order.

    Parameters
    ----------
    output : str or path-like
        The output folder of :func:`featurize`.
    columns : list of str or None, default=None
        Feature columns to read (names as in
        :meth:`CLIPFeaturizer.get_feature_names_out`); None reads all.

    Returns
    -------
    features : pandas.DataFrame
        One float32 row per input sample, indexed by the input index (the
        position for a sequence input), in input order. Rows of unreadable
        images are NaN.

    Raises
    ------
    FileNotFoundError
        When ``output`` holds no features, or some partitions are missing (a
        run that did not finish: call :func:`featurize` again to complete it).
    ValueError
        When the manifest or a partition is damaged (a partition whose data
        do not match their checksum, or that is out of its place), a
        partition is of another run, or ``columns`` names no feature. The
        message names the file; :func:`featurize` computes damaged partitions
        again.
    """
    pa = _import_pyarrow()
    output = Path(output)
    if not (output / _MANIFEST).is_file():
        raise FileNotFoundError(f"{output} holds no features written by featurize "
                                f"(no {_MANIFEST}).")
    manifest = _read_manifest(output)
    paths = [output / _part_name(k) for k in range(manifest["n_partitions"])]
    missing = [k for k, path in enumerate(paths) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} partitions are missing in {output} "
            f"(partitions {preview(missing)}): the run did not finish. Call featurize again "
            "with the same input and settings to compute them."
        )
    tables = [_read_features_table(output, k, manifest["token"], columns)
              for k in range(len(paths))]
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    return frame.set_index("index")


# --- the task that runs on a worker ----------------------------------------------------------


def _featurize_partition(k, part, featurizer, output, token, backbone, retry_failed):
    """Featurize one partition and write it; return a small summary (runs on a worker).

    ``backbone`` is the fingerprint of the run's backbone: a worker whose
    backbone differs (other weights or software) refuses to compute.
    """
    from ._utils._device import resolve_device

    output = Path(output)
    if not isinstance(part, (_Positional, pd.DataFrame)):
        raise TypeError(f"Partition {k} is a {type(part).__name__}, not a pandas DataFrame.")
    input_token, files_token = _input_token(part, featurizer), _files_token(part, featurizer)
    state, why_not = _finished_partition(output, k, token, input_token, files_token)
    if state is not None and not (retry_failed and state["failures"]):
        return state

    labels = _labels(part)
    if isinstance(part, _Positional):
        part = part.samples
    fitted = clone(featurizer).fit(part)
    used = _backbone_fingerprint(fitted)
    if used != backbone:
        raise RuntimeError(
            f"Worker {_worker_address()} computes other features than the run's (backbone "
            f"{used[:12]}, decoding {used.split(':')[-1]}, instead of {backbone[:12]}, "
            f"{backbone.split(':')[-1]}): its weights, preprocessing, tokenizer, open_clip "
            "version or JPEG decoder (GPU workers decode on the GPU) differ. Give every worker "
            "the same software, model files and kind of device."
        )
    # catch_warnings swaps process-wide state: tasks on one worker's threads take turns.
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ImageDecodeWarning)  # reported as failures
        try:
            features = fitted.transform(part) if len(part) else None
        except ImageDecodeError as error:
            raise ImageDecodeError(
                labels[error.index], error.source, f"{error.reason} (partition {k})"
            ) from error
        except Exception as exc:
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(f"While featurizing partition {k} of the input "
                             f"(index {preview(labels)}).")
            raise
    names = [str(name) for name in fitted.get_feature_names_out()]
    if features is None:
        features = np.empty((0, len(names)), dtype=np.float32)

    failures = [
        {
            "index": _json_label(labels[error.index]),
            "image": _image_value(part, error.index, featurizer),
            "error": error.reason,
        }
        for error in fitted.failures_
    ]
    summary = {
        "partition": k,
        "n_rows": len(labels),
        "failures": failures,
        "token": token,
        "input_token": input_token,
        "files_token": files_token,
        "backbone": used,
    }
    index = part.index if isinstance(part, pd.DataFrame) else pd.Index(labels, dtype="int64")
    _write_partition(output, k, index, names, features, summary)
    summary.update(
        status="computed",
        computed_again=why_not if why_not != "absent" else None,
        worker=_worker_address(),
        device=resolve_device(featurizer.device),
        warnings=[(w.category, str(w.message)) for w in caught],
    )
    return summary


def _backbone_fingerprint(featurizer):
    """What the features depend on here: the backbone's fingerprint, and where JPEGs are
    decoded (GPU workers decode with nvJPEG, CPU workers with PIL). The model stays loaded."""
    from ._images._decoding import jpeg_batch_device

    backbone = featurizer.load_backbone()
    on_gpu = jpeg_batch_device(backbone.device, featurizer.draft_decode) is not None
    return f"{backbone.fingerprint}:{'nvjpeg' if on_gpu else 'pil'}"


def _worker_address():
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


# --- scheduling ------------------------------------------------------------------------------


def _submit(client, pending, args, resources, is_dask):
    """Submit one task per pending partition; ``args`` are the other arguments of the task."""
    if not pending:
        return []
    prefix = f"clipdet-featurize-{args[2][:8]}"
    run_id = uuid.uuid4().hex[:8]
    if is_dask:
        import dask

        tasks = [
            dask.delayed(_featurize_partition, pure=False)(
                k, part, *args, dask_key_name=f"{prefix}-{k}-{run_id}")
            for k, part in pending
        ]
        return client.compute(tasks, resources=resources)
    return [
        client.submit(_featurize_partition, k, part, *args, key=f"{prefix}-{k}-{run_id}",
                      resources=resources, pure=False)
        for k, part in pending
    ]


def _collect(client, futures, n_partitions, n_done, progress, distributed):
    """Gather task summaries as they finish; on an error cancel the rest and raise it."""
    from tqdm.auto import tqdm

    summaries = {}
    bar = tqdm(total=n_partitions, initial=n_done, unit="partition", desc="featurize",
               disable=not progress)
    with bar:
        try:
            for future in distributed.as_completed(futures):
                summary = future.result()  # raises the task's exception
                summaries[summary["partition"]] = summary
                bar.update()
        except BaseException:
            client.cancel(futures)
            raise
    return summaries


def _warn_computed_again(summaries):
    """Say which finished partitions were computed again because their image files changed
    or their own file was damaged."""
    again = {k: summary.get("computed_again") for k, summary in sorted(summaries.items())}
    changed = [k for k, why in again.items() if why == "files changed"]
    if changed:
        warnings.warn(
            f"Partitions {preview(changed)} were computed again: image files in them changed "
            "(size or modification time) since their features were written.",
            UserWarning,
            stacklevel=3,
        )
    damaged = {k: why.removeprefix("damaged: ") for k, why in again.items()
               if why and why.startswith("damaged: ")}
    if damaged:
        first = min(damaged)
        warnings.warn(
            f"Partitions {preview(damaged)} were computed again: their files were damaged "
            f"({_part_name(first)}: {damaged[first]}).",
            UserWarning,
            stacklevel=3,
        )


def _reemit_warnings(summaries):
    """Show the warnings raised on the workers, once per kind, naming the partitions.

    Messages that differ only in their numbers (counts) are one kind.
    """
    kinds = {}
    for summary in sorted(summaries, key=lambda summary: summary["partition"]):
        for category, message in summary.get("warnings", []):
            kind = kinds.setdefault((category, re.sub(r"\d+", "#", message)), [message, []])
            kind[1].append(summary["partition"])
    for (category, _), (message, partitions) in kinds.items():
        more = " (and similar)" if len(partitions) > 1 else ""
        warnings.warn(f"On the workers, partitions {preview(partitions)}: {message}{more}",
                      category, stacklevel=3)


# --- identities of settings and input --------------------------------------------------------


def _check_random_weights(featurizer):
    from ._utils._open_clip import parse_model_name

    if featurizer.pretrained is None and parse_model_name(featurizer.model_name)[0] is None:
        warnings.warn(
            f"pretrained=None gives {featurizer.model_name!r} random weights drawn separately "
            "in each worker process: a worker whose weights differ from the run's backbone "
            "refuses its partitions. Save the model once and use "
            "model_name='local-dir:<folder>' for random weights shared by all workers.",
            UserWarning,
            stacklevel=3,
        )


