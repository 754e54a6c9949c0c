import io
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clipdet.datasets import (
    ManifestRowError,
    list_images,
    load_d3,
    load_image_csv,
    load_image_folder,
)


def write_image(path, color=(255, 0, 0), size=(4, 4)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def make_layout(root, relpaths):
    for relpath in relpaths:
        write_image(root / relpath)
    return root


def relative(frame, root):
    return [Path(image).relative_to(root).as_posix() for image in frame["image"]]


def png_bytes(color, size=(4, 4)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


# --- CSV manifests ---------------------------------------------------------------------------


def test_csv_manifest_resolves_paths_and_keeps_its_columns(tmp_path):
    write_image(tmp_path / "img" / "a.png")
    absolute = write_image(tmp_path / "elsewhere" / "b.png")
    csv = tmp_path / "data.csv"
    csv.write_text(f"image,text,label,group\nimg/a.png,NA,1,x\n{absolute},,0,y\n")
    frame = load_image_csv(csv)
    assert frame["image"].tolist() == [str(tmp_path / "img" / "a.png"), str(absolute)]
    assert frame["text"].tolist() == ["NA", None]  # only empty cells are missing
    assert frame["label"].tolist() == [1, 0] and frame["group"].tolist() == ["x", "y"]


def test_csv_manifest_names_the_lines_of_bad_rows(tmp_path):
    write_image(tmp_path / "a.png")
    csv = tmp_path / "data.csv"
    csv.write_text("image,label\na.png,0\n,1\nmissing.png,0\n  ,1\n")
    with pytest.raises(ManifestRowError, match=r"2 row\(s\) have no image: lines \[3, 5\]; "
                                               r"fill them in or pass on_error='nan'") as info:
        load_image_csv(csv)
    assert info.value.rows == [1, 3] and info.value.lines == [3, 5] and info.value.lenient
    csv.write_text("image\na.png\nmissing.png\n")
    with pytest.raises(ManifestRowError, match=r"name images that do not exist .*lines \[3\]"):
        load_image_csv(csv)
    # Leniently, the rows stay for a featurizer with on_error="nan" to mark as unreadable.
    csv.write_text("image,label\na.png,0\n,1\nmissing.png,0\n")
    frame = load_image_csv(csv, on_error="nan")
    assert frame["image"].tolist() == [str(tmp_path / "a.png"), None,
                                       str(tmp_path / "missing.png")]


@pytest.mark.parametrize("content, message", [
    ("", r"data\.csv is empty"),
    ("image,label\n", r"data\.csv has a header but no rows"),
    ("file,label\na.png,1\n", r"data\.csv has no 'image' column \(columns: \['file', 'label'\]\)"),
])
def test_csv_manifest_errors(tmp_path, content, message):
    csv = tmp_path / "data.csv"
    csv.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_image_csv(csv)
    with pytest.raises(FileNotFoundError):
        load_image_csv(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="on_error"):
        load_image_csv(csv, on_error="skip")


def test_manifest_row_error_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(ManifestRowError("d.csv", [0], "have no image", "fix")))
    assert str(error) == "d.csv: 1 row(s) have no image: lines [2]; fix"


# --- image folders: layouts ------------------------------------------------------------------


def test_real_fake_folders(tmp_path):
    make_layout(tmp_path, ["real/b.jpg", "real/a.png", "fake/c.png", "fake/d.jpeg"])
    frame = load_image_folder(tmp_path)

    assert list(frame.columns) == ["image", "text", "label", "group"]
    assert relative(frame, tmp_path) == ["fake/c.png", "fake/d.jpeg", "real/a.png", "real/b.jpg"]
    assert all(Path(image).is_absolute() and Path(image).is_file() for image in frame["image"])
    assert frame["label"].tolist() == [1, 1, 0, 0]
    assert frame["label"].dtype == np.int64
    assert frame["group"].tolist() == ["fake", "fake", "real", "real"]
    assert frame["text"].isna().all()


@pytest.mark.parametrize(
    "real, fake",
    [("0_real", "1_fake"), ("real", "ai"), ("nature", "generated"), ("Real", "SYNTHETIC")],
)
def test_class_folder_synonyms(tmp_path, real, fake):
    make_layout(tmp_path, [f"{real}/x.png", f"{fake}/y.png"])
    frame = load_image_folder(tmp_path)
    assert dict(zip(relative(frame, tmp_path), frame["label"])) == {
        f"{real}/x.png": 0,
        f"{fake}/y.png": 1,
    }


def test_nested_generator_folders_group_real_with_their_generator(tmp_path):
    # CNNDetection layout: <generator>/<category>/{0_real,1_fake}
    make_layout(
        tmp_path,
        [
            "progan/cat/0_real/1.png",
            "progan/cat/1_fake/1.png",
            "progan/dog/1_fake/1.png",
            "sd14/0_real/1.png",
            "sd14/1_fake/1.png",
        ],
    )
    frame = load_image_folder(tmp_path)
    assert frame[["label", "group"]].values.tolist() == [
        [0, "progan"],
        [1, "progan"],
        [1, "progan"],
        [0, "sd14"],
        [1, "sd14"],
    ]


def test_generator_folders_below_the_class_folder(tmp_path):
    make_layout(tmp_path, ["real/laion/1.jpg", "real/2.jpg", "fake/sd14/1.png", "fake/if/1.png"])
    frame = load_image_folder(tmp_path)
    assert dict(zip(relative(frame, tmp_path), frame["group"])) == {
        "fake/if/1.png": "if",
        "fake/sd14/1.png": "sd14",
        "real/2.jpg": "real",
        "real/laion/1.jpg": "laion",
    }


def test_group_from_prefix(tmp_path):
    make_layout(tmp_path, ["ai/gan_1.jpg", "ai/diffusion2_10.jpg", "real/photo.jpg"])
    frame = load_image_folder(tmp_path, group_from="prefix")
    assert frame["group"].tolist() == ["diffusion2", "gan", "photo"]
    with pytest.raises(ValueError, match="group_from"):
        load_image_folder(tmp_path, group_from="name")


def test_non_images_and_hidden_files_are_ignored(tmp_path):
    make_layout(tmp_path, ["real/a.JPG", "fake/b.png", "fake/.hidden.png", ".cache/fake/c.png"])
    (tmp_path / "real" / "notes.txt").write_text("not an image")
    (tmp_path / "fake" / "prompts.csv").write_text("file_name,text\n")
    frame = load_image_folder(tmp_path)
    assert relative(frame, tmp_path) == ["fake/b.png", "real/a.JPG"]

    with pytest.warns(UserWarning, match="Only generated images"):
        only_png = load_image_folder(tmp_path, extensions=("png",))
    assert relative(only_png, tmp_path) == ["fake/b.png"]


def test_custom_class_names(tmp_path):
    make_layout(tmp_path, ["camera/a.png", "midjourney/b.png"])
    frame = load_image_folder(tmp_path, real_names=("camera",), fake_names=("midjourney",))
    assert frame["label"].tolist() == [0, 1]


# --- image folders: errors and warnings ------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image_folder(tmp_path / "nowhere")


def test_no_class_folder_lists_what_was_found(tmp_path):
    make_layout(tmp_path, ["cats/a.png", "dogs/b.png"])
    with pytest.raises(ValueError, match="No class folder") as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "cats, dogs" in message
    assert "0_real" in message and "1_fake" in message
    # The images found come with the error, for work that needs no labels.
    assert info.value.images == list_images(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in info.value.images] == [
        "cats/a.png", "dogs/b.png"]


def test_no_images(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="No images found"):
        load_image_folder(tmp_path)


def test_conflicting_class_folders(tmp_path):
    make_layout(tmp_path, ["real/fake/a.png"])
    with pytest.raises(ValueError, match="both a real and a fake"):
        load_image_folder(tmp_path)


def test_images_outside_class_folders_warn(tmp_path):
    make_layout(tmp_path, ["real/a.png", "fake/b.png", "loose.png", "misc/c.png"])
    with pytest.warns(UserWarning, match="2 images .* in no class folder"):
        frame = load_image_folder(tmp_path)
    assert len(frame) == 2


def test_single_class_warns(tmp_path):
    make_layout(tmp_path, ["fake/a.png"])
    with pytest.warns(UserWarning, match="Only generated images"):
        frame = load_image_folder(tmp_path)
    assert frame["label"].tolist() == [1]


# --- image folders: captions -----------------------------------------------------------------


@pytest.fixture
def captioned(tmp_path):
    root = make_layout(tmp_path / "data", ["real/a.jpg", "fake/sd/a.png", "fake/sd/b.png"])
    return root


def test_captions_by_relative_path_and_by_name(captioned, tmp_path):
    csv = tmp_path / "captions.csv"
    pd.DataFrame(
        {
            "file_name": ["real/a.jpg", "fake/sd/a.png", "b.png"],
            "text": ["a dog", "NA", "a cat, drawn"],
        }
    ).to_csv(csv, index=False)
    frame = load_image_folder(captioned, captions=csv)
    texts = dict(zip(relative(frame, captioned), frame["text"]))
    # "NA" is a caption, not a missing value
    assert texts == {"fake/sd/a.png": "NA", "fake/sd/b.png": "a cat, drawn", "real/a.jpg": "a dog"}


def test_captions_custom_columns_and_dataframe(captioned):
    table = pd.DataFrame({"path": ["real/a.jpg", "fake/sd/a.png"], "caption": ["x", "y"]})
    with pytest.warns(UserWarning, match=r"1 of 3 images have no caption \(0 real, 1 generated\)"):
        frame = load_image_folder(captioned, captions=table, caption_columns=("path", "caption"))
    assert frame["text"].tolist() == ["y", None, "x"]


def test_unmatched_captions_warn_with_count(captioned):
    table = pd.DataFrame(
        {
            "file_name": ["real/a.jpg", "fake/sd/a.png", "fake/sd/b.png", "gone.png", "x/y.png"],
            "text": ["1", "2", "3", "4", "5"],
        }
    )
    with pytest.warns(UserWarning, match="2 of 5 captions match no image") as record:
        load_image_folder(captioned, captions=table)
    assert "gone.png" in str(record[0].message)


def test_captions_missing_columns(captioned, tmp_path):
    csv = tmp_path / "captions.csv"
    csv.write_text("filename,caption\nreal/a.jpg,a dog\n")
    with pytest.raises(ValueError, match="'file_name', 'text'.*'filename', 'caption'"):
        load_image_folder(captioned, captions=csv)
    with pytest.raises(FileNotFoundError, match="Captions file"):
        load_image_folder(captioned, captions=tmp_path / "missing.csv")


def test_ambiguous_or_duplicate_captions(captioned):
    # "a.png" is unique by name, "a.jpg" too, but two rows for the same image are an error
    duplicate = pd.DataFrame({"file_name": ["real/a.jpg", "a.jpg"], "text": ["1", "2"]})
    with pytest.raises(ValueError, match="Two captions"):
        load_image_folder(captioned, captions=duplicate)
    write_image(captioned / "real" / "a.png")
    ambiguous = pd.DataFrame({"file_name": ["a.png"], "text": ["1"]})
    with pytest.raises(ValueError, match="matches 2 images"):
        load_image_folder(captioned, captions=ambiguous)


# --- image folders: playground ---------------------------------------------------------------


def test_playground(playground_dir):
    frame = load_image_folder(playground_dir)
    assert frame["label"].value_counts().to_dict() == {0: 30, 1: 30}
    assert set(frame.loc[frame["label"] == 0, "group"]) == {"real"}
    assert set(frame.loc[frame["label"] == 1, "group"]) == {"ai"}

    by_prefix = load_image_folder(playground_dir, group_from="prefix")
    generators = set(by_prefix.loc[by_prefix["label"] == 1, "group"])
    assert generators == {"gan", "diffusion1", "diffusion2", "diffusion3", "diffusion4"}


# --- ELSA D3 ---------------------------------------------------------------------------------

D3_MODELS = ["DeepFloyd/IF-I-XL-v1.0", "sd-1.4", "sd-2.1", "sd-xl"]
D3_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def d3_records(n):
    """``n`` records with D3's columns; record 2 lacks its last generated image."""
    columns = {
        "id": [f"id{i}" for i in range(n)],
        "original_prompt": [f"caption {i}" for i in range(n)],
        "positive_prompt": [f"caption {i}, 8k, detailed" for i in range(n)],
        "negative_prompt": ["blurry"] * n,
        "url": [f"http://laion.example/{i}.jpg" for i in range(n)],
    }
    for k in range(4):
        columns[f"model_gen{k}"] = [D3_MODELS[k]] * n
        columns[f"width_gen{k}"] = [8] * n
        columns[f"height_gen{k}"] = [6] * n
        columns[f"num_inference_steps_gen{k}"] = [25] * n
        columns[f"filepath_gen{k}"] = [f"gen{k}/{i}.png" for i in range(n)]
        columns[f"image_gen{k}"] = [
            None
            if (i == 2 and k == 3)
            else {"bytes": png_bytes(D3_COLORS[k], (8, 6)), "path": None}
            for i in range(n)
        ]
    return columns


@pytest.fixture(scope="module")
def d3_parquet(tmp_path_factory):
    """A local parquet file with D3's columns, written by ``datasets`` with its Image feature."""
    datasets = pytest.importorskip("datasets")
    columns = d3_records(4)
    features = datasets.Features(
        {
            name: datasets.Image()
            if name.startswith("image_gen")
            else datasets.Value("int64" if isinstance(values[0], int) else "string")
            for name, values in columns.items()
        }
    )
    path = tmp_path_factory.mktemp("d3") / "validation.parquet"
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    return path


@pytest.fixture
def local_d3(d3_parquet, monkeypatch, tmp_path):
    """Make ``datasets.load_dataset`` read the local parquet file instead of the hub."""
    import datasets

    real_load_dataset = datasets.load_dataset
    calls = []

    def load_dataset(path, split=None, streaming=False, **kwargs):
        calls.append({"path": path, "split": split, "streaming": streaming, **kwargs})
        return real_load_dataset(
            "parquet",
            data_files={split: str(d3_parquet)},
            split=split,
            streaming=streaming,
            cache_dir=str(tmp_path / "hf_cache"),
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize("streaming", [True, False])
def test_d3_parsing(local_d3, streaming):
    with pytest.warns(UserWarning, match="1 generated images were absent"):
        frame = load_d3("validation", n_samples=3, streaming=streaming, real_images="url")

    assert local_d3 == [{"path": "elsaEU/ELSA_D3", "split": "validation", "streaming": streaming}]
    assert list(frame.columns) == ["image", "text", "label", "group", "id"]
    # 3 records: 3 real + 12 generated, less the absent one
    assert len(frame) == 14
    assert frame["label"].dtype == np.int64
    assert frame["label"].tolist()[:5] == [0, 1, 1, 1, 1]
    assert frame["group"].tolist()[:5] == ["real", *D3_MODELS]
    assert frame["id"].tolist()[:5] == ["id0"] * 5
    assert frame["id"].tolist()[-4:] == ["id2"] * 4

    real = frame[frame["label"] == 0]
    assert real["image"].tolist() == [f"http://laion.example/{i}.jpg" for i in range(3)]
    assert real["text"].tolist() == ["caption 0", "caption 1", "caption 2"]

    fake = frame[frame["label"] == 1]
    assert set(fake["text"]) == {f"caption {i}, 8k, detailed" for i in range(3)}
    for image, group in zip(fake["image"], fake["group"]):
        assert isinstance(image, bytes)
        with Image.open(io.BytesIO(image)) as decoded:
            assert decoded.size == (8, 6)
            assert decoded.convert("RGB").getpixel((0, 0)) == D3_COLORS[D3_MODELS.index(group)]


def test_d3_generated_text_and_skip_real(local_d3):
    frame = load_d3("validation", n_samples=2, real_images="skip", generated_text="original_prompt")
    assert len(frame) == 8
    assert (frame["label"] == 1).all()
    assert frame["text"].tolist() == ["caption 0"] * 4 + ["caption 1"] * 4


def test_d3_real_images_callable_drops_failures_with_warning(local_d3):
    fetched = png_bytes((9, 9, 9))

    def fetch(url):
        if url.endswith("0.jpg"):
            return fetched
        if url.endswith("1.jpg"):
            return None
        raise OSError("host gone")

    with pytest.warns(UserWarning) as record:
        frame = load_d3("validation", n_samples=3, real_images=fetch)
    messages = [str(warning.message) for warning in record]
    (fetch_message,) = [message for message in messages if "could not be fetched" in message]
    assert fetch_message.startswith("2 of 3 real images could not be fetched")
    assert "nothing returned" in fetch_message and "OSError: host gone" in fetch_message
    real = frame[frame["label"] == 0]
    assert real["image"].tolist() == [fetched]
    assert real["id"].tolist() == ["id0"]
    assert (frame["label"] == 1).sum() == 11


def test_d3_download_uses_urllib(local_d3, monkeypatch):
    good = png_bytes((1, 2, 3))

    def urlopen(request, timeout):
        assert timeout == 2.5
        assert request.get_header("User-agent") == "sklearn-clipdet"
        if request.full_url.endswith("0.jpg"):
            return io.BytesIO(good)
        if request.full_url.endswith("1.jpg"):
            return io.BytesIO(b"<html>not found</html>")
        raise urllib.error.URLError("unreachable")

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    with pytest.warns(UserWarning) as record:
        frame = load_d3("validation", n_samples=3, download_timeout=2.5)
    messages = [str(warning.message) for warning in record]
    assert any("1 generated images were absent" in message for message in messages)
    (fetch_message,) = [message for message in messages if "could not be fetched" in message]
    assert fetch_message.startswith("2 of 3 real images could not be fetched")
    assert "not an image (22 bytes)" in fetch_message and "URLError" in fetch_message
    assert frame.loc[frame["label"] == 0, "image"].tolist() == [good]
    assert frame.loc[frame["label"] == 0, "id"].tolist() == ["id0"]
    assert len(frame) == 12


def test_d3_missing_columns(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    columns = d3_records(1)
    del columns["model_gen3"]
    path = tmp_path / "broken.parquet"
    datasets.Dataset.from_dict(columns).to_parquet(str(path))
    real_load_dataset = datasets.load_dataset
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda name, split, streaming: real_load_dataset(
            "parquet", data_files={split: str(path)}, split=split, streaming=streaming
        ),
    )
    with pytest.raises(ValueError, match="lacks the expected column.*model_gen3"):
        load_d3("train", n_samples=1, real_images="skip")


def test_d3_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r'pip install "sklearn-clipdet\[d3\]"'):
        load_d3(n_samples=1)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"real_images": "fetch"}, "real_images"),
        ({"generated_text": "negative_prompt"}, "generated_text"),
    ],
)
def test_d3_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        load_d3(**params)


# --- what the featurizer reads ---------------------------------------------------------------


def test_frames_feed_the_featurizer(tiny_model_name, local_d3, tmp_path):
    from sklearn_clipdet import CLIPFeaturizer

    featurizer = CLIPFeaturizer(tiny_model_name, pretrained=None, default_text="a photo")
    d3 = load_d3("validation", n_samples=1, real_images="skip")  # bytes and prompts
    features = featurizer.fit_transform(d3[["image", "text"]])
    assert features.shape[0] == 4 and np.isfinite(features).all()

    folder = load_image_folder(make_layout(tmp_path / "imgs", ["real/a.png", "fake/b.png"]))
    with pytest.warns(UserWarning, match="default_text"):  # paths without captions
        features = featurizer.fit_transform(folder[["image", "text"]])
    assert features.shape[0] == 2 and np.isfinite(features).all()
