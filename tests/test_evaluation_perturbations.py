"""Image perturbations as scikit-learn transformers."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._images._reading import ImageDecodeError
from sklearn_clipdet.evaluation import (
    CenterCrop,
    GaussianBlur,
    GaussianNoise,
    JPEGCompress,
    Resize,
    estimate_jpeg_quality,
)

ALL = [JPEGCompress(50), Resize(0.5), GaussianBlur(1.0), GaussianNoise(5.0, random_state=0),
       CenterCrop(0.5)]


def _checkerboard(size=64, cell=4):
    pattern = (np.indices((size, size)) // cell).sum(axis=0) % 2
    return np.repeat((pattern * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _pixels(image):
    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    return np.asarray(image.convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("perturbation", ALL, ids=lambda p: type(p).__name__)
def test_every_input_kind_gives_images_the_featurizer_reads(perturbation, tmp_path):
    array = _checkerboard()
    path = tmp_path / "board.png"
    Image.fromarray(array).save(path)
    inputs = [str(path), _png_bytes(array), Image.fromarray(array), array]
    out = clone(perturbation).fit(inputs).transform(inputs)
    assert isinstance(out, list) and len(out) == 4
    for image in out:
        assert isinstance(image, bytes if isinstance(perturbation, JPEGCompress)
                          else Image.Image)
    # The same picture in any form is perturbed the same way (noise: same seed per index).
    if not isinstance(perturbation, GaussianNoise):
        assert all(np.array_equal(_pixels(out[0]), _pixels(image)) for image in out[1:])


def test_geometry():
    image = Image.fromarray(np.zeros((40, 100, 3), np.uint8))
    assert Resize(0.5).transform([image])[0].size == (50, 20)
    assert Resize(2.0, resample="nearest").transform([image])[0].size == (200, 80)
    assert Resize(0.001).transform([image])[0].size == (1, 1)
    assert CenterCrop(0.5).transform([image])[0].size == (50, 20)
    board = _checkerboard(size=8, cell=1)
    board[3:5, 3:5] = 7  # the centre, marked
    crop = CenterCrop(0.25).transform([board])[0]
    assert np.all(np.asarray(crop) == 7)


def test_jpeg_quality_is_applied():
    rng = np.random.RandomState(0)
    photo = rng.randint(0, 256, (64, 64, 3)).astype(np.uint8)
    sizes = []
    for quality in (95, 60, 20):
        encoded = JPEGCompress(quality).transform([photo])[0]
        assert estimate_jpeg_quality(encoded) == quality
        sizes.append(len(encoded))
    assert sizes[0] > sizes[1] > sizes[2]


def test_blur_and_noise_strength():
    board = _checkerboard()
    detail = [np.abs(np.diff(_pixels(GaussianBlur(s).transform([board])[0]), axis=1)).mean()
              for s in (0, 1, 3)]
    assert detail[0] > detail[1] > detail[2]
    assert detail[0] == np.abs(np.diff(board.astype(float), axis=1)).mean()

    gray = np.full((128, 128, 3), 128, np.uint8)
    noisy = _pixels(GaussianNoise(std=10, random_state=0).transform([gray])[0])
    assert np.std(noisy - 128) == pytest.approx(10, rel=0.05)
    assert np.array_equal(_pixels(GaussianNoise(0).transform([gray])[0]), gray)


def test_noise_is_reproducible_and_independent_of_chunking():
    images = [np.full((16, 16, 3), v, np.uint8) for v in (50, 100, 150, 200)]
    noise = GaussianNoise(20, random_state=3)
    first = [_pixels(i) for i in noise.transform(images)]
    again = [_pixels(i) for i in noise.transform(images)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    seed = noise.draw_seed()
    chunked = (noise.perturb_items(images[:2], offset=0, seed=seed)
               + noise.perturb_items(images[2:], offset=2, seed=seed))
    assert all(np.array_equal(a, _pixels(b)) for a, b in zip(first, chunked))
    other = _pixels(GaussianNoise(20, random_state=4).transform(images)[0])
    assert not np.array_equal(first[0], other)


def test_dataframe_keeps_other_columns_and_leaves_input_untouched(tmp_path):
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(_checkerboard(cell=i + 1)).save(paths[-1])
    X = pd.DataFrame({"image": paths, "text": ["a", None, "c"], "label": [0, 1, 0]},
                     index=[10, 11, 12])
    before = X.copy()
    out = JPEGCompress(40).fit_transform(X)
    pd.testing.assert_frame_equal(X, before)
    assert list(out.index) == [10, 11, 12]
    pd.testing.assert_frame_equal(out[["text", "label"]], X[["text", "label"]])
    assert all(isinstance(v, bytes) for v in out["image"])

    series = Resize(0.5).transform(X["image"])
    assert isinstance(series, pd.Series) and list(series.index) == [10, 11, 12]
    assert series.iloc[0].size == (32, 32)

    renamed = X.rename(columns={"image": "picture"})
    assert isinstance(GaussianBlur(1, image_column="picture").transform(renamed)
                      ["picture"].iloc[0], Image.Image)
    with pytest.raises(ValueError, match="no column 'image'"):
        GaussianBlur(1).transform(renamed)


def test_bad_image_error_names_the_sample(tmp_path):
    good = _checkerboard()
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match=r"Sample 1 \(path .*missing.jpg.*file not found"):
        JPEGCompress(50).transform([good, missing])
    with pytest.raises(ImageDecodeError, match="Sample 2 .*not an image"):
        Resize(0.5).transform([good, good, b"not an image"])
    with pytest.raises(ImageDecodeError, match="Sample 0 .*missing image"):
        CenterCrop(0.5).transform([None])
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        Resize(0.5).transform(good.tobytes())


def test_invalid_parameters():
    for bad in [JPEGCompress(0), JPEGCompress(101), Resize(0), GaussianBlur(-1),
                GaussianNoise(-2), CenterCrop(1.5), CenterCrop(0), Resize(0.5, resample="x")]:
        with pytest.raises(ValueError, match="parameter of"):
            bad.fit([_checkerboard()])


def test_level_and_identity():
    assert JPEGCompress(30).level == 30 and not JPEGCompress(100).is_identity
    assert Resize(1).is_identity and GaussianBlur(0).is_identity
    assert GaussianNoise(0).is_identity and CenterCrop(1.0).is_identity
    assert not Resize(0.5).is_identity and CenterCrop(0.5).level == 0.5


def test_in_front_of_the_featurizer(tiny_model_name):
    images = [_checkerboard(cell=c) for c in (1, 2, 4, 8)]
    featurizer = CLIPFeaturizer(tiny_model_name, None, modalities="image", num_workers=0)
    clean = featurizer.fit_transform(images)
    blurred = make_pipeline(GaussianBlur(3.0), featurizer).fit_transform(images)
    identity = make_pipeline(GaussianBlur(0.0), featurizer).fit_transform(images)
    assert blurred.shape == clean.shape and np.isfinite(blurred).all()
    assert not np.allclose(blurred, clean)
    np.testing.assert_allclose(identity, clean, rtol=1e-5, atol=1e-6)


def test_gaussian_noise_in_strips_draws_what_one_whole_draw_would(monkeypatch):
    """The noise is added a strip of rows at a time (bounded float copies), with the values
    of one draw over the whole image, and the caller's image is left as it was."""
    from sklearn_clipdet.evaluation import perturbations

    monkeypatch.setattr(perturbations, "_STRIP_VALUES", 1000)  # many strips, a ragged last
    pixels = np.random.default_rng(0).integers(0, 256, (97, 61, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    noisy = np.asarray(GaussianNoise(9.0)._perturb(image, 5, 1234))
    whole = np.asarray(image, dtype=np.float32) + np.random.default_rng([1234, 5]).standard_normal(
        pixels.shape, dtype=np.float32) * np.float32(9.0)
    np.testing.assert_array_equal(noisy, np.clip(np.rint(whole), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(image), pixels)
