"""The partitions and the manifest of a distributed output folder are verified, not trusted:
damaged or swapped partitions are named by read_features and computed again on resume."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from sklearn_clipdet import CLIPFeaturizer

pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from sklearn_clipdet.distributed import featurize, read_features  # noqa: E402


@pytest.fixture(scope="module")
def client():
    import distributed

    # Threads in this process: what is tested here is the folder, not the cluster.
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def images(sample_samples):
    return list(sample_samples[0][:8])


@pytest.fixture
def run(client, tiny_model_name, images, tmp_path):
    """``(featurize_again, output, expected)``: a finished run of 2 partitions of 4 images."""
    featurizer = CLIPFeaturizer(tiny_model_name, None, modalities="image", device="cpu")
    output = tmp_path / "out"

    def featurize_again(**kwargs):
        return featurize(images, featurizer, output, client=client, partition_size=4, **kwargs)

    featurize_again()
    return featurize_again, output, read_features(output)


def damage_column_data(path, column=3):
    """Invert the last bytes of one feature column's data in a Parquet file."""
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(column)
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    data[end - 6 : end] = bytes(255 - b for b in data[end - 6 : end])
    path.write_bytes(bytes(data))


def test_damaged_column_data_is_named_and_computed_again(run):
    featurize_again, output, expected = run
    damage_column_data(output / "part-00001.parquet")

    damaged = pq.read_schema(output / "part-00001.parquet").names[3]
    for columns in (None, [damaged]):
        with pytest.raises(ValueError, match=r"part-00001\.parquet is damaged") as info:
            read_features(output, columns=columns)
        assert "featurize again" in str(info.value)
    # Only the columns read are checked: the others read as they were written.
    intact = [name for name in expected.columns if name != damaged][:2]
    pd.testing.assert_frame_equal(read_features(output, columns=intact), expected[intact])

    with pytest.warns(
        UserWarning,
        match=r"Partitions \[1\] were computed again: their files were damaged "
        r"\(part-00001\.parquet: ",
    ):
        again = featurize_again()
    assert again.computed == [1] and again.skipped == [0]
    pd.testing.assert_frame_equal(read_features(output), expected)


def test_changed_values_in_a_valid_file_are_found(run):
    featurize_again, output, expected = run
    path = output / "part-00000.parquet"
    table = pq.read_table(path)
    changed = table.set_column(1, table.field(1), [table.column(1).to_numpy() + 0.5])
    pq.write_table(changed.replace_schema_metadata(table.schema.metadata), path)

    with pytest.raises(
        ValueError,
        match=r"part-00000\.parquet is damaged \(its data do not "
        r"match the checksum written with them\)",
    ):
        read_features(output)
    with pytest.warns(UserWarning, match=r"Partitions \[0\] were computed again"):
        assert featurize_again().computed == [0]
    pd.testing.assert_frame_equal(read_features(output), expected)


def test_swapped_partitions_are_found(run):
    featurize_again, output, expected = run
    first, second = output / "part-00000.parquet", output / "part-00001.parquet"
    first.rename(output / "swap")
    second.rename(first)
    (output / "swap").rename(second)

    with pytest.raises(
        ValueError,
        match=r"part-00000\.parquet is damaged \(it holds "
        r"partition 1, not 0",
    ):
        read_features(output)
    with pytest.warns(UserWarning, match=r"Partitions \[0, 1\] were computed again"):
        assert featurize_again().computed == [0, 1]
    pd.testing.assert_frame_equal(read_features(output), expected)


def test_a_partition_of_another_run_is_refused(run, client, tiny_model_name, images, tmp_path):
    _, output, _ = run
    other = CLIPFeaturizer(tiny_model_name, None, modalities="image", device="cpu", normalize=False)
    featurize(images, other, tmp_path / "other", client=client, partition_size=4)
    shutil.copyfile(tmp_path / "other" / "part-00001.parquet", output / "part-00001.parquet")
    with pytest.raises(ValueError, match=r"part-00001\.parquet holds features of another run"):
        read_features(output)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", r"not JSON"),
        ("[1, 2]", r"not a JSON object"),
        (
            '{"format": 3, "n_partitions": "2", "partition_size": 4, "token": "t", "settings": {}}',
            r"n_partitions is '2', not an int >= 1",
        ),
        (
            '{"format": 3, "n_partitions": 2, "partition_size": 4, "settings": {}}',
            r"token is missing",
        ),
    ],
)
def test_a_damaged_manifest_is_named(run, text, problem):
    featurize_again, output, _ = run
    manifest = output / "_clipdet_features.json"
    manifest.write_text(text)
    pattern = rf"{manifest.name} is damaged \({problem}"
    with pytest.raises(ValueError, match=pattern):
        read_features(output)
    with pytest.raises(ValueError, match=pattern):
        featurize_again()
    assert featurize_again(overwrite=True).computed == [0, 1]


def test_an_older_store_format_is_named(run):
    featurize_again, output, expected = run
    manifest = output / "_clipdet_features.json"
    old = json.loads(manifest.read_text())
    old["format"] = 2
    manifest.write_text(json.dumps(old))
    pattern = r"store format 2 .*this version reads format 3.*overwrite=True"
    with pytest.raises(ValueError, match=pattern):
        read_features(output)
    with pytest.raises(ValueError, match=pattern):
        featurize_again()
    assert featurize_again(overwrite=True).computed == [0, 1]
    np.testing.assert_array_equal(read_features(output).to_numpy(), expected.to_numpy())


def test_unknown_columns_are_named(run):
    _, output, expected = run
    with pytest.raises(
        ValueError,
        match=r"columns \[nope\] are not features in .*out; its "
        r"features are \[image_block1_0, ",
    ):
        read_features(output, columns=["image_block1_0", "nope"])
    pd.testing.assert_frame_equal(
        read_features(output, columns=["image_block1_2", "image_block1_0"]),
        expected[["image_block1_2", "image_block1_0"]],
    )


@pytest.mark.parametrize("damage", ["no summary digest", "digests as a list"])
def test_damaged_checksums_in_the_metadata_are_named(run, damage):
    featurize_again, output, expected = run
    path = output / "part-00001.parquet"
    table = pq.read_table(path)
    key = b"sklearn_clipdet"
    summary = json.loads(table.schema.metadata[key])
    if damage == "no summary digest":
        del summary["checksum"]["summary"]
    else:
        summary["checksum"]["columns"] = list(summary["checksum"]["columns"])
    pq.write_table(table.replace_schema_metadata({key: json.dumps(summary).encode()}), path)
    with pytest.raises(ValueError, match=r"part-00001\.parquet is damaged \(its metadata lack"):
        read_features(output)
    with pytest.warns(UserWarning, match=r"Partitions \[1\] were computed again"):
        assert featurize_again().computed == [1]
    pd.testing.assert_frame_equal(read_features(output), expected)
