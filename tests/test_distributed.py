"""Distributed featurization and grid searches on a 2-process dask LocalCluster."""

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier, make_detector
from sklearn_clipdet._clip._cache import FeatureCache
from sklearn_clipdet._images._reading import ImageDecodeError, ImageDecodeWarning
from sklearn_clipdet.distributed import featurize, read_features
from sklearn_clipdet.testing import write_tiny_model

SMALL_CLASSIFIER = dict(hidden_layer_sizes=(32,), batch_size=64, max_epochs=5, lr=1e-2)


def test_core_package_does_not_import_dask_and_featurize_says_how_to_install_it(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["dask"] = sys.modules["distributed"] = None  # as if not installed
        import sklearn_clipdet, sklearn_clipdet.distributed
        from sklearn_clipdet import CLIPFeaturizer
        from sklearn_clipdet.distributed import featurize
        try:
            featurize(["a.jpg"], CLIPFeaturizer(), "out")
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'pip install "sklearn-clipdet[dask]"' in done.stdout
    assert not (tmp_path / "out").exists()

    code = "import sys, sklearn_clipdet.distributed; print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('dask', 'distributed')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- cluster fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("pyarrow")
    import cloudpickle

    # Helpers of this module run on the workers, which cannot import it by name.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def samples(sample_samples):
    """The 16 sample images in a DataFrame whose index is neither sorted nor positional."""
    paths, y = sample_samples
    order = np.random.default_rng(0).permutation(len(paths))
    index = pd.Index([f"img-{i:03d}" for i in order], name="sample")
    frame = pd.DataFrame({"image": np.asarray(paths)[order], "y": y[order]}, index=index)
    frame["text"] = [f"a photo number {i % 7}" for i in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def small_images(sample_samples):
    """The 16 sample images (320 px, generated after real): cheap to decode."""
    return list(sample_samples[0])


def image_featurizer(model_name, **params):
    return CLIPFeaturizer(model_name, None, modalities="image", device="cpu", **params)


def part_files(output):
    return sorted(p.name for p in Path(output).glob("part-*.parquet"))


def wait_until_idle(client, timeout=30):
    """Wait for tasks still running after a cancellation (they may write their partition)."""
    deadline = time.monotonic() + timeout
    while any(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
        assert time.monotonic() < deadline, "workers still busy"
        time.sleep(0.05)


# --- featurize -------------------------------------------------------------------------------


def test_features_equal_single_process_in_input_order(client, tiny_model_name, samples, tmp_path):
    featurizer = image_featurizer(tiny_model_name)
    expected = featurizer.fit_transform(samples)

    result = featurize(samples, featurizer, tmp_path / "out", client=client, partition_size=2)

    assert result.n_partitions == 8 and result.n_samples == len(samples)
    assert result.computed == list(range(8)) and result.skipped == []
    assert result.failures.empty
    assert len(part_files(tmp_path / "out")) == 8
    assert set(result.workers) == set(client.scheduler_info()["workers"])
    assert sum(w["partitions"] for w in result.workers.values()) == 8
    assert {w["device"] for w in result.workers.values()} == {"cpu"}

    features = read_features(tmp_path / "out")
    assert features.index.tolist() == samples.index.tolist()
    assert features.columns.tolist() == featurizer.get_feature_names_out().tolist()
    assert (features.dtypes == np.float32).all()
    np.testing.assert_allclose(features.to_numpy(), expected, rtol=0, atol=1e-6)
    columns = ["image_block1_3", "image_block1_0"]
    np.testing.assert_array_equal(read_features(result.output, columns=columns),
                                  features[columns])
    # Parquet readers of the whole folder see the partitions alone, in order.
    import dask.dataframe as dd

    for plain in (pd.read_parquet(tmp_path / "out"), dd.read_parquet(tmp_path / "out").compute()):
        plain = plain.set_index("index")
        assert plain.index.tolist() == samples.index.tolist()
        np.testing.assert_array_equal(plain.to_numpy(), features.to_numpy())


def test_sequence_input_is_indexed_by_position(client, tiny_model_name, small_images, tmp_path):
    featurizer = image_featurizer(tiny_model_name)
    images = small_images[::-1]
    expected = featurizer.fit_transform(images)
    result = featurize(images, featurizer, tmp_path / "out", client=client, partition_size=8)
    features = read_features(result.output)
    assert features.index.tolist() == list(range(len(images)))
    np.testing.assert_allclose(features.to_numpy(), expected, atol=1e-6)

    # A Series keeps its index.
    series = pd.Series(images, index=np.arange(len(images)) * 3 + 1)
    featurize(series, featurizer, tmp_path / "series", client=client, partition_size=8)
    features = read_features(tmp_path / "series")
    assert features.index.tolist() == series.index.tolist()
    np.testing.assert_allclose(features.to_numpy(), expected, atol=1e-6)


def test_dask_dataframe_input_with_captions(client, tiny_model_name, samples, tmp_path):
    import dask.dataframe as dd

    frame = samples.copy()
    frame.loc[frame.index[::3], "text"] = None  # some in each partition
    featurizer = CLIPFeaturizer(tiny_model_name, None, device="cpu", default_text="a photo")
    with pytest.warns(UserWarning, match="default_text 'a photo' used for 6 of 16"):
        expected = featurizer.fit_transform(frame)

    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    # The warnings of the workers are shown on the client, once.
    with pytest.warns(UserWarning, match=r"On the workers, partitions \[0, 1, 2\]: "
                                         "default_text 'a photo' used for"):
        result = featurize(ddf, featurizer, tmp_path / "out", client=client)
    assert result.n_partitions == 3 and result.n_samples == len(frame)

    features = read_features(tmp_path / "out")
    assert features.index.tolist() == frame.index.tolist()
    assert features.shape[1] == 32 + 16 and features.columns[-1] == "text_15"
    np.testing.assert_allclose(features.to_numpy(), expected, atol=1e-6)

    # A dask DataFrame resumes too: the partitions are checked on the workers.
    again = featurize(ddf, featurizer, tmp_path / "out", client=client)
    assert again.computed == [] and again.skipped == [0, 1, 2]

    with pytest.raises(ValueError, match="partition_size must be None"):
        featurize(ddf, featurizer, tmp_path / "other", client=client, partition_size=10)
    with pytest.raises(ValueError, match="no column 'photo'"):
        featurize(ddf, featurizer.set_params(image_column="photo"), tmp_path / "other",
                  client=client)


def _install_load_counter():
    from sklearn_clipdet._clip import _backbone

    _backbone.clear_backbone_cache()
    original = getattr(_backbone._create, "__wrapped__", _backbone._create)

    def counting(*args, **kwargs):
        counting.calls += 1
        return original(*args, **kwargs)

    counting.calls = 0
    counting.__wrapped__ = original
    _backbone._create = counting


def _load_count():
    from sklearn_clipdet._clip import _backbone

    return _backbone._create.calls


def _remove_load_counter():
    from sklearn_clipdet._clip import _backbone

    _backbone._create = _backbone._create.__wrapped__


def test_each_worker_loads_the_model_once(client, tiny_model_name, small_images, tmp_path):
    client.run(_install_load_counter)
    try:
        result = featurize(small_images, image_featurizer(tiny_model_name), tmp_path / "out",
                           client=client, partition_size=2)
        loads = client.run(_load_count)
    finally:
        client.run(_remove_load_counter)
    assert result.n_partitions == 8
    tasks = {address: info["partitions"] for address, info in result.workers.items()}
    assert sum(tasks.values()) == 8 and max(tasks.values()) > 1
    # Once per process: a worker that computed partitions loaded it once; another one at
    # most once (the first task, which learns the backbone's fingerprint, may run there).
    assert all(loads[address] == 1 for address in tasks)
    assert all(count <= 1 for count in loads.values())


def test_rerun_computes_only_missing_partitions(client, tiny_model_name, small_images, tmp_path):
    featurizer = image_featurizer(tiny_model_name)
    output = tmp_path / "out"
    first = featurize(small_images, featurizer, output, client=client, partition_size=2)
    assert first.computed == list(range(8))
    expected = read_features(output)

    (output / "part-00002.parquet").unlink()
    (output / "part-00005.parquet").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")}
    with pytest.raises(FileNotFoundError, match=r"2 of 8 partitions are missing .*\[2, 5\]"):
        read_features(output)

    again = featurize(small_images, featurizer, output, client=client, partition_size=2)
    assert again.computed == [2, 5]
    assert again.skipped == [0, 1, 3, 4, 6, 7]
    assert sum(w["partitions"] for w in again.workers.values()) == 2
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")
            if p.name in stamps} == stamps
    pd.testing.assert_frame_equal(read_features(output), expected)


def test_failed_run_raises_naming_the_sample_and_resumes(
    client, tiny_model_name, small_images, tmp_path
):
    featurizer = image_featurizer(tiny_model_name, on_error="raise")
    broken = list(small_images)
    broken[13] = str(tmp_path / "missing.jpg")
    output = tmp_path / "out"
    with pytest.raises(ImageDecodeError, match=r"Sample 13 \(path '.*missing\.jpg'\): file not "
                                               r"found \(partition 6\)") as info:
        featurize(broken, featurizer, output, client=client, partition_size=2)
    assert info.value.index == 13
    wait_until_idle(client)

    finished = part_files(output)
    assert "part-00006.parquet" not in finished
    assert not list(output.glob(".*.tmp"))  # nothing half-written
    stamps = {name: (output / name).stat().st_mtime_ns for name in finished}

    resumed = featurize(small_images, featurizer, output, client=client, partition_size=2)
    assert [f"part-{k:05d}.parquet" for k in resumed.skipped] == finished
    assert sorted(resumed.computed + resumed.skipped) == list(range(8))
    assert 6 in resumed.computed
    assert {name: (output / name).stat().st_mtime_ns for name in finished} == stamps
    np.testing.assert_allclose(read_features(output).to_numpy(),
                               featurizer.fit_transform(small_images), atol=1e-6)


def test_unreadable_images_are_reported_in_one_table(
    client, tiny_model_name, small_images, tmp_path
):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"plain text, not an image")
    frame = pd.DataFrame({"image": small_images[:12]}, index=range(100, 112))
    frame.loc[103, "image"] = str(tmp_path / "missing.jpg")
    frame.loc[110, "image"] = str(corrupt)
    featurizer = image_featurizer(tiny_model_name, on_error="nan")

    with pytest.warns(ImageDecodeWarning, match=r"2 of 12 images .* first: sample 103"):
        result = featurize(frame, featurizer, tmp_path / "out", client=client, partition_size=5)

    failures = result.failures
    assert failures.columns.tolist() == ["index", "image", "error"]
    assert failures["index"].tolist() == [103, 110]
    assert failures["image"].tolist() == [str(tmp_path / "missing.jpg"), str(corrupt)]
    assert failures["error"].iloc[0] == "file not found"
    assert "not an image" in failures["error"].iloc[1]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "_failures.csv"), failures)

    features = read_features(tmp_path / "out")
    assert features.index.tolist() == list(range(100, 112))
    assert np.isnan(features.loc[[103, 110]].to_numpy()).all()
    expected = featurizer.fit_transform(frame.drop([103, 110]))
    np.testing.assert_allclose(features.drop([103, 110]).to_numpy(), expected, atol=1e-6)

    # A rerun skips everything and still reports the failures of the earlier run ...
    with pytest.warns(ImageDecodeWarning):
        again = featurize(frame, featurizer, tmp_path / "out", client=client, partition_size=5)
    assert again.computed == [] and again.failures["index"].tolist() == [103, 110]
    # ... unless asked to retry the partitions with failures (here, after fixing one file,
    # which alone makes its partition be computed again).
    corrupt.write_bytes(Path(small_images[0]).read_bytes())
    with pytest.warns(ImageDecodeWarning, match="1 of 12"), \
            pytest.warns(UserWarning, match=r"Partitions \[2\] were computed again"):
        retried = featurize(frame, featurizer, tmp_path / "out", client=client,
                            partition_size=5, retry_failed=True, overwrite=False)
    assert retried.computed == [0, 2] and retried.skipped == [1]
    assert retried.failures["index"].tolist() == [103]
    assert np.isfinite(read_features(tmp_path / "out").loc[110]).all()


def test_output_of_other_settings_or_input_is_refused(
    client, tiny_model_name, small_images, tmp_path
):
    featurizer = image_featurizer(tiny_model_name)
    output = tmp_path / "out"
    featurize(small_images[:10], featurizer, output, client=client, partition_size=5)

    with pytest.raises(ValueError, match="normalize: True before, False now"):
        featurize(small_images[:10], image_featurizer(tiny_model_name, normalize=False), output,
                  client=client, partition_size=5)
    with pytest.raises(ValueError, match="n_partitions: 2 before, 4 now"):
        featurize(small_images[:10], featurizer, output, client=client, partition_size=3)
    with pytest.raises(ValueError, match=r"part-00001\.parquet holds features of another input"):
        featurize(small_images[:5] + small_images[10:15], featurizer, output, client=client,
                  partition_size=5)

    # Settings that do not change the features are not part of a run's identity.
    same = featurize(small_images[:10], image_featurizer(tiny_model_name, batch_size=2),
                     output, client=client, partition_size=5)
    assert same.skipped == [0, 1]

    replaced = featurize(small_images[:10], image_featurizer(tiny_model_name, normalize=False),
                         output, client=client, partition_size=5, overwrite=True)
    assert replaced.computed == [0, 1]
    norms = np.linalg.norm(read_features(output).to_numpy(), axis=1)
    assert not np.allclose(norms, 1.0)


def test_resume_with_other_weights_behind_the_same_path_is_refused(client, small_images,
                                                                   tmp_path):
    folder = tmp_path / "model"
    featurizer = image_featurizer(write_tiny_model(folder, seed=0))
    output = tmp_path / "out"
    featurize(small_images[:8], featurizer, output, client=client, partition_size=4)
    (output / "part-00001.parquet").unlink()  # the run was stopped before this partition
    kept = (output / "part-00000.parquet").read_bytes()

    write_tiny_model(folder, seed=1)  # new weights at the same path, seen by warm workers
    with pytest.raises(ValueError, match=r"another run \(backbone: other weights, "
                                         r"preprocessing, tokenizer or open_clip version "
                                         r"\(fingerprint \w{12} before, \w{12} now\)\)"):
        featurize(small_images[:8], featurizer, output, client=client, partition_size=4)
    assert (output / "part-00000.parquet").read_bytes() == kept
    assert not (output / "part-00001.parquet").exists()

    replaced = featurize(small_images[:8], featurizer, output, client=client,
                         partition_size=4, overwrite=True)
    assert replaced.computed == [0, 1]
    np.testing.assert_allclose(read_features(output).to_numpy(),
                               featurizer.fit_transform(small_images[:8]), atol=1e-6)


def test_a_worker_with_another_backbone_refuses_its_partition(tiny_model_name, small_images,
                                                              tmp_path):
    from sklearn_clipdet.distributed import _featurize_partition, _Positional

    featurizer = image_featurizer(tiny_model_name)
    with pytest.raises(RuntimeError, match=r"computes other features than the run's "
                                           r"\(backbone \w{12}, decoding pil, instead of "
                                           r"000000000000, pil\)"):
        _featurize_partition(0, _Positional(small_images[:2], 0), featurizer, str(tmp_path),
                             "token", "0" * 40 + ":pil", False)
    assert not list(tmp_path.iterdir())


def test_a_changed_file_at_the_same_path_is_computed_again(client, tiny_model_name,
                                                           small_images, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    images = []
    for i, source in enumerate(small_images[:8]):
        images.append(str(folder / f"{i}.jpg"))
        shutil.copyfile(source, images[-1])
    featurizer = image_featurizer(tiny_model_name)
    output = tmp_path / "out"
    featurize(images, featurizer, output, client=client, partition_size=4)
    kept = (output / "part-00000.parquet").read_bytes()

    shutil.copyfile(small_images[12], images[5])  # another picture under the same name
    with pytest.warns(UserWarning, match=r"Partitions \[1\] were computed again: image files "
                                         r"in them changed \(size or modification time\)"):
        again = featurize(images, featurizer, output, client=client, partition_size=4)
    assert again.computed == [1] and again.skipped == [0]
    assert (output / "part-00000.parquet").read_bytes() == kept
    np.testing.assert_allclose(read_features(output).to_numpy(),
                               featurizer.fit_transform(images), atol=1e-6)


def test_invalid_arguments(client, tiny_model_name, tmp_path):
    featurizer = image_featurizer(tiny_model_name)
    with pytest.raises(ValueError, match="partition_size must be an int >= 1"):
        featurize(["a.jpg"], featurizer, tmp_path / "out", client=client, partition_size=0)
    with pytest.raises(ValueError, match="images is empty"):
        featurize([], featurizer, tmp_path / "out", client=client)
    with pytest.raises(TypeError, match="must be a sequence"):
        featurize("a.jpg", featurizer, tmp_path / "out", client=client)
    with pytest.raises(TypeError, match="must be a CLIPFeaturizer"):
        featurize(["a.jpg"], RobustMLPClassifier(), tmp_path / "out", client=client)
    with pytest.raises(ValueError, match="overwrite must be a bool"):
        featurize(["a.jpg"], featurizer, tmp_path / "out", client=client, overwrite="yes")
    with pytest.warns(UserWarning, match="random weights drawn separately in each worker"):
        with pytest.raises(ValueError, match="images is empty"):
            featurize([], CLIPFeaturizer("ViT-B-32", None), tmp_path / "out", client=client)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="not written by featurize"):
        featurize(["a.jpg"], featurizer, tmp_path / "foreign", client=client)
    with pytest.raises(FileNotFoundError, match="holds no features"):
        read_features(tmp_path / "foreign")


# --- grid searches with joblib's dask backend ------------------------------------------------


@pytest.fixture(scope="module")
def features_and_labels(tiny_model_name, samples):
    X = image_featurizer(tiny_model_name).fit_transform(samples)
    return X, samples["y"].to_numpy()


def test_grid_search_over_the_classifier_on_the_cluster(client, features_and_labels):
    import distributed

    X, y = features_and_labels

    def search():
        return GridSearchCV(
            RobustMLPClassifier(**SMALL_CLASSIFIER, random_state=0),
            {"gamma": [0.3, 0.7], "sam": [True, False]},
            scoring="roc_auc",
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
            n_jobs=-1,
        )

    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        on_cluster = search().fit(X, y)
    fits = [task for task in stream.data if "fit_and_score" in str(task["key"])]
    assert fits, "the fits did not run as cluster tasks"
    # Which workers get them is the scheduler's choice; all must be cluster workers.
    assert {task["worker"] for task in fits} <= set(client.scheduler_info()["workers"])

    # The workers run torch on one thread (dask sets OMP_NUM_THREADS=1); so does the reference,
    # as float sums depend on the number of threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = search().set_params(n_jobs=1).fit(X, y)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(on_cluster.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], atol=1e-6)
    assert on_cluster.best_params_ == local.best_params_


def _count_encoded(monkeypatch):
    counter = {"images": 0}
    original = CLIPFeaturizer._encode_images

    def counting(self, backbone, pixels):
        counter["images"] += len(pixels)
        return original(self, backbone, pixels)

    monkeypatch.setattr(CLIPFeaturizer, "_encode_images", counting)
    return counter


def test_grid_search_over_the_pipeline_shares_the_cache(
    client, tiny_model_name, samples, tmp_path, monkeypatch
):
    import distributed

    X, y = samples[["image"]], samples["y"].to_numpy()
    detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                             cache_dir=tmp_path / "cache", random_state=0,
                             classifier_params=SMALL_CLASSIFIER)
    search = GridSearchCV(detector, {"robustmlpclassifier__gamma": [0.3, 0.7]},
                          scoring="roc_auc", cv=StratifiedKFold(3, shuffle=True, random_state=0),
                          n_jobs=-1)
    counter = _count_encoded(monkeypatch)  # counts encodings in this process only
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        search.fit(X, y)

    assert {task["worker"] for task in stream.data if "fit_and_score" in str(task["key"])}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # The folds ran on the workers and filled the shared cache, one entry per image and
    # view (the default recipe reads the resize and the tiles views); the refit on all
    # images, in this process, found every image there.
    with FeatureCache(tmp_path / "cache") as cache:
        n_entries = cache._connection().execute("SELECT COUNT(*) FROM features").fetchone()[0]
    assert detector[0].views == "resize+tiles"
    assert n_entries == 2 * X["image"].nunique()
    assert counter["images"] == 0
    assert os.path.isfile(tmp_path / "cache" / "clip_features.sqlite3")
