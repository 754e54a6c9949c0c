import io
import os
import pickle
import sqlite3
import warnings
from collections.abc import Sequence

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._clip._backbone import (
    Backbone,
    WeightsUnavailableError,
    clear_backbone_cache,
)
from sklearn_clipdet._images._reading import ImageDecodeError, ImageDecodeWarning
from sklearn_clipdet.testing import write_tiny_model

DIM = 16  # embedding size of the tiny model


def random_array(seed, shape=(40, 56, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(array, quality=90):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def make(tiny_model_name):
    """Build a fitted featurizer on the tiny model; keyword arguments override defaults.

    The image block is the final embedding, which these tests compare with open_clip's
    ``encode_image``; tests/test_image_layers.py covers the other layers.
    """

    def make(X=None, **params):
        params = {"modalities": "image", "device": "cpu", "num_workers": 2,
                  "image_layers": "final", **params}
        featurizer = CLIPFeaturizer(tiny_model_name, **params)
        return featurizer.fit(X if X is not None else [])

    return make


@pytest.fixture(scope="module")
def reference(tiny_model_name):
    """open_clip's own model, preprocessing and tokenizer for the tiny model."""
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_model_name)
    model.eval()
    tokenizer = open_clip.get_tokenizer(tiny_model_name)

    def images(pil_images):
        with torch.no_grad():
            batch = torch.stack([preprocess(image) for image in pil_images])
            return model.encode_image(batch, normalize=True).numpy()

    def texts(captions):
        with torch.no_grad():
            return model.encode_text(tokenizer(captions), normalize=True).numpy()

    return images, texts


@pytest.fixture
def count_encoded(monkeypatch):
    """Count the images and texts that go through the model's forward passes."""
    counts = {"images": 0, "texts": 0}
    encode_images, encode_texts = CLIPFeaturizer._encode_images, Backbone.encode_text

    def images(self, backbone, pixels):
        counts["images"] += len(pixels)
        return encode_images(self, backbone, pixels)

    def texts(backbone, tokens):
        counts["texts"] += len(tokens)
        return encode_texts(backbone, tokens)

    monkeypatch.setattr(CLIPFeaturizer, "_encode_images", images)
    monkeypatch.setattr(Backbone, "encode_text", texts)
    return counts


@pytest.fixture
def image_files(tmp_path):
    """Small image files of several formats (no reduced decoding applies to them)."""
    arrays = [random_array(seed) for seed in range(4)]
    paths = []
    for i, array in enumerate(arrays):
        path = tmp_path / f"img{i}.{'png' if i % 2 else 'jpg'}"
        path.write_bytes(png_bytes(array) if i % 2 else jpeg_bytes(array))
        paths.append(path)
    return paths


# --- agreement with open_clip -----------------------------------------------------------------


@pytest.mark.parametrize("draft_decode, atol", [(False, 1e-5), (True, 5e-4)])
def test_images_match_open_clip(make, reference, image_files, draft_decode, atol):
    # draft_decode=False is open_clip's own preprocessing; the fast path resizes with
    # torchvision's tensor kernels instead of PIL's, a few grey levels apart at most.
    pil_images = [Image.fromarray(random_array(seed, shape)) for seed, shape in
                  enumerate([(40, 56, 3), (32, 32, 3), (90, 17, 3), (33, 200, 3)])]
    ref_images, _ = reference
    featurizer = make(draft_decode=draft_decode)
    np.testing.assert_allclose(featurizer.transform(pil_images), ref_images(pil_images),
                               atol=atol)
    arrays = [np.asarray(image) for image in pil_images]
    np.testing.assert_allclose(featurizer.transform(arrays), ref_images(pil_images), atol=atol)
    files = [Image.open(path) for path in image_files]
    np.testing.assert_allclose(featurizer.transform(image_files), ref_images(files), atol=atol)


def test_large_jpeg_matches_open_clip_without_draft(make, reference, tmp_path):
    path = tmp_path / "large.jpg"
    path.write_bytes(jpeg_bytes(random_array(7, (480, 640, 3))))
    ref_images, _ = reference
    expected = ref_images([Image.open(path)])
    exact = make(draft_decode=False).transform([path])
    np.testing.assert_allclose(exact, expected, atol=1e-5)
    drafted = make(draft_decode=True).transform([path])
    assert not np.allclose(drafted, expected, atol=1e-6)  # reduced decoding did apply
    assert float(drafted[0] @ expected[0]) > 0.99


def test_texts_match_open_clip(make, reference):
    captions = ["a photo of a cat", "an oil painting of a harbour at dusk", "x"]
    _, ref_texts = reference
    features = make(modalities="text").transform(captions)
    np.testing.assert_allclose(features, ref_texts(captions), atol=1e-5)


def test_long_captions_are_cut_by_tokens(make, reference):
    # The tiny model's context is 16 tokens: start, 14 words, end.
    shared = " ".join(["word"] * 20)
    captions = [shared + " cat", shared + " dog " * 50, "word " * 3]
    features = make(modalities="text").transform(captions)
    np.testing.assert_allclose(features[0], features[1], atol=1e-6)
    assert not np.allclose(features[0], features[2], atol=1e-3)
    _, ref_texts = reference
    np.testing.assert_allclose(features, ref_texts(captions), atol=1e-5)


# --- inputs and outputs -----------------------------------------------------------------------


def test_every_input_kind_gives_the_same_row(make, tmp_path):
    array = random_array(3)
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(array))
    inputs = [str(path), path, path.read_bytes(), Image.fromarray(array), array,
              Image.open(path)]
    features = make().transform(inputs)
    assert features.shape == (len(inputs), DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features, np.tile(features[0], (len(inputs), 1)), atol=1e-6)


def test_gray_and_stacked_arrays(make):
    gray = random_array(1, (30, 30))
    features = make().transform([gray, np.stack([gray] * 3, axis=-1), gray[:, :, None]])
    np.testing.assert_allclose(features[0], features[1], atol=1e-6)
    np.testing.assert_allclose(features[0], features[2], atol=1e-6)
    stack = np.stack([random_array(s, (32, 32, 3)) for s in range(3)])
    np.testing.assert_allclose(make().transform(stack), make().transform(list(stack)), atol=1e-6)


def test_one_row_per_input_in_order(make):
    images = [random_array(seed) for seed in range(7)]
    featurizer = make(batch_size=3)
    forward = featurizer.transform(images)
    backward = featurizer.transform(images[::-1])
    np.testing.assert_allclose(forward[::-1], backward, atol=1e-6)
    assert len({row.tobytes() for row in forward}) == 7


def test_dataframe_with_both_modalities(make):
    images = [random_array(seed) for seed in range(3)]
    captions = ["a cat", "a dog", "a bird"]
    X = pd.DataFrame({"picture": images, "caption": captions}, index=[10, 11, 12])
    featurizer = make(X, modalities="image+text", image_column="picture", text_column="caption")
    features = featurizer.transform(X)
    assert features.shape == (3, 2 * DIM)
    np.testing.assert_allclose(features[:, :DIM], make().transform(images), atol=1e-6)
    np.testing.assert_allclose(features[:, DIM:], make(modalities="text").transform(captions),
                               atol=1e-6)
    names = featurizer.get_feature_names_out()
    assert list(names[:2]) == ["image_0", "image_1"] and names[DIM] == "text_0"
    assert len(names) == 2 * DIM
    assert featurizer.modalities_ == ("image", "text")


def test_text_only_from_a_dataframe_or_a_series(make):
    X = pd.DataFrame({"text": ["a", "b"]})
    from_frame = make(X, modalities="text").transform(X)
    np.testing.assert_array_equal(from_frame, make(modalities="text").transform(X["text"]))
    assert list(make(X, modalities="text").get_feature_names_out()[:1]) == ["text_0"]


def test_set_output_pandas(make):
    featurizer = make().set_output(transform="pandas")
    frame = featurizer.transform([random_array(0), random_array(1)])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns[:2]) == ["image_0", "image_1"]


def test_normalize(make):
    images = [random_array(seed) for seed in range(3)]
    raw = make(normalize=False).transform(images)
    unit = make().transform(images)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


# --- missing text -----------------------------------------------------------------------------


def test_missing_text_uses_default_text_with_a_warning(make):
    X = pd.DataFrame({"image": [random_array(s) for s in range(4)],
                      "text": ["a dog", None, np.nan, "  "]})
    featurizer = make(X, modalities="image+text", default_text="a photo")
    with pytest.warns(UserWarning, match="'a photo' used for 3 of 4 samples"):
        features = featurizer.transform(X)
    expected = make(modalities="text").transform(["a photo"])[0]
    for row in (1, 2, 3):
        np.testing.assert_allclose(features[row, DIM:], expected, atol=1e-6)


def test_missing_text_without_default_names_rows(make):
    X = pd.DataFrame({"image": [random_array(s) for s in range(3)], "text": ["a", None, "c"]})
    featurizer = make(X, modalities="image+text")
    with pytest.raises(ValueError, match=r"1 of 3 samples have no text \(rows \[1\]\)"):
        featurizer.transform(X)


def test_plain_sequence_without_captions(make, tiny_model_name):
    images = [random_array(0)]
    with pytest.raises(ValueError, match="has no captions"):
        CLIPFeaturizer(tiny_model_name).fit(images)
    featurizer = make(images, modalities="image+text", default_text="a photo")
    with pytest.warns(UserWarning, match="1 of 1 samples"):
        assert featurizer.transform(images).shape == (1, 2 * DIM)


def test_missing_columns(tiny_model_name):
    X = pd.DataFrame({"img": [random_array(0)]})
    with pytest.raises(ValueError, match="no column 'image'"):
        CLIPFeaturizer(tiny_model_name, modalities="image").fit(X)
    with pytest.raises(ValueError, match="no column 'text'"):
        CLIPFeaturizer(tiny_model_name, image_column="img").fit(X)


def test_non_string_text(make):
    X = pd.DataFrame({"text": ["a", 3]})
    with pytest.raises(TypeError, match="text of sample 1 must be a str"):
        make(X, modalities="text").transform(X)


# --- bad images -------------------------------------------------------------------------------


def bad_input(kind, tmp_path):
    if kind == "missing file":
        return str(tmp_path / "does_not_exist.jpg")
    if kind == "None":
        return None
    path = tmp_path / f"{kind.replace(' ', '_')}.jpg"
    data = {
        "zero bytes": b"",
        "not an image": b"just some text, not a picture",
        "truncated jpeg": jpeg_bytes(random_array(5, (64, 64, 3)))[:400],
    }[kind]
    path.write_bytes(data)
    return str(path)


BAD_KINDS = {
    "missing file": "file not found",
    "zero bytes": "empty",
    "not an image": "not an image",
    "truncated jpeg": "truncated",
    "None": "missing image",
}


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_naming_sample(make, tmp_path, kind):
    bad = bad_input(kind, tmp_path)
    with pytest.raises(ImageDecodeError, match=BAD_KINDS[kind]) as info:
        make().transform([random_array(0), bad, random_array(1)])
    assert info.value.index == 1
    assert str(info.value).startswith("Sample 1 (")
    if bad is not None:
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.filterwarnings("ignore:default_text:UserWarning")
def test_bad_input_gives_nan_row(make, tmp_path, kind):
    good = [random_array(0), random_array(1)]
    featurizer = make(on_error="nan", modalities="image+text", default_text="a photo")
    with pytest.warns(ImageDecodeWarning, match=r"1 of 3 images .* \(indices \[1\]\)") as record:
        features = featurizer.transform([good[0], bad_input(kind, tmp_path), good[1]])
    assert sum(issubclass(w.category, ImageDecodeWarning) for w in record) == 1
    assert np.isnan(features[1]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = featurizer.transform(good)
    np.testing.assert_allclose(features[[0, 2]], expected, atol=1e-6)
    np.testing.assert_array_equal(featurizer.failed_indices_, [])  # reports the last call


def test_several_bad_inputs_one_warning(make, tmp_path):
    X = [None, random_array(0), bad_input("zero bytes", tmp_path), None]
    featurizer = make(on_error="nan")
    with pytest.warns(ImageDecodeWarning) as record:
        features = featurizer.transform(X)
    assert len(record) == 1 and "indices [0, 2, 3]" in str(record[0].message)
    np.testing.assert_array_equal(featurizer.failed_indices_, [0, 2, 3])
    assert [error.index for error in featurizer.failures_] == [0, 2, 3]
    assert "empty" in featurizer.failures_[1].reason
    assert np.isfinite(features[1]).all()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_gives_a_nan_row_instead_of_hanging(make, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    featurizer = make(on_error="nan")
    with pytest.warns(ImageDecodeWarning, match=r"indices \[1\]"):
        features = featurizer.transform([random_array(0), str(fifo)])
    assert np.isnan(features[1]).all() and "named pipe" in featurizer.failures_[0].reason


def test_file_size_limit_is_a_parameter(make, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(random_array(0)))
    size = path.stat().st_size
    with pytest.raises(ImageDecodeError, match=f"Sample 1 .*max_image_bytes={size - 1}"):
        make(max_image_bytes=size - 1).transform([random_array(1), path])
    assert make(max_image_bytes=size).transform([path]).shape == (1, DIM)
    assert make(max_image_bytes=None).transform([path]).shape == (1, DIM)


@pytest.mark.parametrize("image, message", [
    (Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F"), "mode 'F'"),
    (Image.new("RGB", (0, 0)), r"no pixels \(0x0\)"),
])
@pytest.mark.parametrize("draft_decode", [True, False])
def test_unusable_pil_images_are_errors_naming_the_sample(make, image, message, draft_decode):
    with pytest.raises(ImageDecodeError, match=f"Sample 1 \\(PIL image.*{message}"):
        make(draft_decode=draft_decode).transform([random_array(0), image])


def test_cache_dir_that_is_a_file_is_a_feature_cache_error(make, tmp_path):
    from sklearn_clipdet.exceptions import FeatureCacheError

    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(FeatureCacheError, match="is not a folder"):
        make(cache_dir=tmp_path / "cache").transform([random_array(0)])


def test_decompression_bomb_limit_is_a_parameter(make):
    data = png_bytes(random_array(0, (30, 30, 3)))
    with pytest.raises(ImageDecodeError, match="max_image_pixels"):
        make(max_image_pixels=899).transform([data])
    assert make(max_image_pixels=900).transform([data]).shape == (1, DIM)


# --- model loading ----------------------------------------------------------------------------


def test_fit_does_not_load_the_model(tiny_model_name, monkeypatch):
    from sklearn_clipdet import featurizer as module

    def fail(*args, **kwargs):
        raise AssertionError("fit must not load the model")

    monkeypatch.setattr(module, "load_backbone", fail)
    featurizer = CLIPFeaturizer(tiny_model_name, modalities="image").fit([random_array(0)])
    np.testing.assert_array_equal(featurizer.failed_indices_, [])


def test_weights_error_names_model_and_pretrained(tmp_path):
    featurizer = CLIPFeaturizer("ViT-B-32", str(tmp_path / "missing.bin"), modalities="image")
    featurizer.fit([random_array(0)])
    with pytest.raises(WeightsUnavailableError, match="model_name='ViT-B-32', pretrained="):
        featurizer.transform([random_array(0)])


def test_not_fitted(tiny_model_name):
    with pytest.raises(NotFittedError):
        CLIPFeaturizer(tiny_model_name).transform([random_array(0)])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"modalities": "audio"}, "'modalities' parameter of CLIPFeaturizer must be a str among"),
        ({"on_error": "skip"}, "'on_error' parameter"),
        ({"precision": "fp64"}, "'precision' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter .* in the range \\[1, inf\\)"),
        ({"num_workers": -1}, "'num_workers' parameter"),
        ({"max_image_bytes": 0}, "'max_image_bytes' parameter"),
        ({"default_text": 3}, "'default_text' parameter"),
        ({"verbose": -1}, "'verbose' parameter"),
    ],
)
def test_invalid_parameters(tiny_model_name, params, message):
    with pytest.raises(ValueError, match=message):
        CLIPFeaturizer(tiny_model_name, **params).fit([random_array(0)])


def test_empty_model_name():
    with pytest.raises(ValueError, match="model_name must be a non-empty str"):
        CLIPFeaturizer("").fit([random_array(0)])


def test_single_image_is_not_a_sequence(make, tmp_path):
    with pytest.raises(TypeError, match="wrap a single image"):
        make().transform(str(tmp_path / "a.jpg"))


def test_streams_instead_of_reading_everything_first(make, count_encoded):
    class LazyImages(Sequence):
        """Creates images on access and records how far the featurizer has read."""

        pulled = 0

        def __len__(self):
            return 60

        def __getitem__(self, index):
            if index >= 60:
                raise IndexError(index)
            LazyImages.pulled = max(LazyImages.pulled, index + 1)
            return random_array(index, (32, 32, 3))

    pulled_at_first_batch = []
    encode = CLIPFeaturizer._encode_images

    def spy(self, backbone, pixels):
        pulled_at_first_batch.append(LazyImages.pulled)
        return encode(self, backbone, pixels)

    featurizer = make(batch_size=4, num_workers=2)
    featurizer._encode_images = spy.__get__(featurizer)
    assert featurizer.transform(LazyImages()).shape == (60, DIM)
    assert pulled_at_first_batch[0] <= 4 + 2 * 4 + 1  # one batch plus the read-ahead window


@pytest.mark.parametrize("num_workers", [0, 1, 3])
def test_num_workers_do_not_change_results(make, num_workers):
    images = [random_array(seed) for seed in range(5)]
    np.testing.assert_allclose(make(num_workers=num_workers, batch_size=2).transform(images),
                               make(num_workers=2).transform(images), atol=1e-6)


def test_progress_bar_only_when_verbose(make, capsys):
    images = [random_array(0)] * 3
    make().transform(images)
    assert "CLIP images" not in capsys.readouterr().err
    make(verbose=1).transform(images)
    assert "CLIP images" in capsys.readouterr().err


# --- pickling and cloning ---------------------------------------------------------------------


def test_pickle_holds_configuration_only(make):
    images = [random_array(seed) for seed in range(3)]
    featurizer = make(batch_size=2)
    before = featurizer.transform(images)
    data = pickle.dumps(featurizer)
    assert len(data) < 5_000 and b"torch" not in data
    clear_backbone_cache()
    restored = pickle.loads(data)
    assert restored.get_params() == featurizer.get_params()
    np.testing.assert_array_equal(restored.transform(images), before)


def test_clone_and_get_params(tiny_model_name):
    featurizer = CLIPFeaturizer(tiny_model_name, modalities="image", batch_size=7,
                                cache_dir="somewhere")
    params = featurizer.get_params()
    assert params["batch_size"] == 7 and params["model_name"] == tiny_model_name
    assert params["pretrained"] == "openai" and params["precision"] == "fp32"
    copy = clone(featurizer)
    assert copy.get_params() == params and copy is not featurizer
    copy.set_params(batch_size=3)
    assert featurizer.batch_size == 7


def test_featurizers_with_same_settings_share_the_model(make, monkeypatch):
    from sklearn_clipdet._clip import _backbone

    images = [random_array(0)]
    make().transform(images)
    created = []
    create = _backbone._create
    monkeypatch.setattr(_backbone, "_create", lambda *a: created.append(a) or create(*a))
    make(batch_size=5).transform(images)
    clone(make()).fit(images).transform(images)
    assert created == []


# --- cache ------------------------------------------------------------------------------------


def test_cache_second_transform_reads_from_disk(make, tmp_path, count_encoded):
    X = pd.DataFrame({"image": [random_array(s) for s in range(5)],
                      "text": ["a", "b", "c", "d", "e"]})
    featurizer = make(X, modalities="image+text", cache_dir=tmp_path / "cache")
    first = featurizer.transform(X)
    assert count_encoded == {"images": 5, "texts": 5}
    second = clone(featurizer).fit(X).transform(X)
    assert count_encoded == {"images": 5, "texts": 5}
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, make(X, modalities="image+text").transform(X), atol=1e-6)


def test_cache_encodes_each_unique_sample_once(make, tmp_path, count_encoded):
    arrays = [random_array(s) for s in range(6)]
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(arrays[0]))
    featurizer = make(cache_dir=tmp_path / "cache", batch_size=2)
    # duplicates within one call, including the same content as a file and as an array
    featurizer.transform([arrays[0], arrays[1], arrays[0], arrays[1], arrays[2]])
    featurizer.transform([path.read_bytes(), path.read_bytes()])
    assert count_encoded["images"] == 4
    # overlapping subsets, as in cross-validation folds
    featurizer.transform(arrays[2:])
    featurizer.transform(arrays[::-1])
    assert count_encoded["images"] == 4 + 3


def test_cache_misses_when_a_setting_changes(make, tmp_path, count_encoded):
    cache_dir = tmp_path / "cache"
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(random_array(0, (300, 300, 3))))
    images = [path]
    make(cache_dir=cache_dir).transform(images)
    assert count_encoded["images"] == 1
    make(cache_dir=cache_dir, draft_decode=False).transform(images)
    assert count_encoded["images"] == 2
    make(cache_dir=cache_dir, precision="int8").transform(images)
    assert count_encoded["images"] == 3
    other_model = write_tiny_model(tmp_path / "other", seed=1)
    CLIPFeaturizer(other_model, modalities="image", cache_dir=cache_dir).fit(images).transform(
        images)
    assert count_encoded["images"] == 4
    # normalisation happens after the cache, so it reuses the stored embedding
    raw = make(cache_dir=cache_dir, normalize=False).transform(images)
    assert count_encoded["images"] == 4
    np.testing.assert_allclose(raw, make(normalize=False).transform(images), atol=1e-6)


def test_corrupt_cache_entries_are_recomputed(make, tmp_path, count_encoded):
    images = [random_array(s) for s in range(3)]
    featurizer = make(cache_dir=tmp_path)
    expected = featurizer.transform(images)
    with sqlite3.connect(tmp_path / "clip_features.sqlite3") as connection:
        connection.execute("UPDATE features SET data = zeroblob(length(data))")
    again = featurizer.transform(images)
    assert count_encoded["images"] == 6
    np.testing.assert_array_equal(again, expected)
    featurizer.transform(images)
    assert count_encoded["images"] == 6  # the recomputed entries were stored


# --- pipeline ---------------------------------------------------------------------------------


def test_pipeline_with_robust_mlp_on_sample_images(tiny_model_name, sample_samples):
    classifier_module = pytest.importorskip("sklearn_clipdet.classifier")
    paths, labels = sample_samples
    pipeline = make_pipeline(
        CLIPFeaturizer(tiny_model_name, modalities="image", device="cpu"),
        classifier_module.RobustMLPClassifier(hidden_layer_sizes=(32,), max_epochs=3,
                                              batch_size=16, random_state=0),
    )
    pipeline.fit(paths, labels)
    proba = pipeline.predict_proba(paths)
    assert proba.shape == (len(paths), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(pipeline.predict(paths)) <= {0, 1}


def test_lazily_opened_pil_images_follow_the_error_policy(make, tmp_path):
    good, truncated = tmp_path / "good.jpg", tmp_path / "truncated.jpg"
    good.write_bytes(jpeg_bytes(random_array(0, (128, 128, 3))))
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    featurizer = make(on_error="nan", num_workers=4)
    with pytest.warns(ImageDecodeWarning, match=r"indices \[1\]"):
        features = featurizer.transform([Image.open(good), Image.open(truncated)])
    assert np.isfinite(features[0]).all() and np.isnan(features[1]).all()
    assert "truncated" in featurizer.failures_[0].reason


def test_one_pil_object_in_many_rows(make, tmp_path):
    path = tmp_path / "image.jpg"
    path.write_bytes(jpeg_bytes(random_array(0, (128, 128, 3))))
    image = Image.open(path)  # not loaded yet: the decode threads must not race on it
    features = make(num_workers=4).transform([image] * 16)
    np.testing.assert_allclose(features, np.repeat(features[:1], 16, axis=0), atol=1e-6)


def test_text_only_dataframe_without_text_column_uses_default_text(make):
    featurizer = make(modalities="text", default_text="a photo")
    with pytest.warns(UserWarning, match="default_text 'a photo' used for 3 of 3"):
        features = featurizer.transform(pd.DataFrame({"other": [1, 2, 3]}))
    assert features.shape == (3, DIM)
