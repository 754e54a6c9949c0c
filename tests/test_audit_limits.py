"""Images large in pixels but small on disk: the audit reads headers only, and the
perturbations of robustness_report decode within the pixel limit and budget."""

import io
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from sklearn_clipdet import make_detector
from sklearn_clipdet._images import ImageDecodeError
from sklearn_clipdet.cli import main
from sklearn_clipdet.evaluation import (
    CenterCrop,
    GaussianNoise,
    JPEGCompress,
    Resize,
    ShortcutWarning,
    audit_shortcuts,
    image_properties,
    robustness_report,
)
from sklearn_clipdet.evaluation import robustness as robustness_module
from sklearn_clipdet.evaluation.perturbations import ImagePerturbation

ORIENTATION = 0x0112


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _black_png(width, height, *, trailing_exif=None):
    """A valid 1-bit grey PNG of zeros: a few kB on disk for hundreds of megapixels.
    ``trailing_exif`` is written in an eXIf chunk after the pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = bytes((width + 7) // 8 + 1) * height  # a filter byte and the packed bits per row
    chunks = [_chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(rows, 9))]
    if trailing_exif is not None:
        chunks.append(_chunk(b"eXIf", trailing_exif.tobytes()))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _chunk(b"IEND", b"")


def _refuse(image):
    raise AssertionError(f"the pixels of a {image.format} image of {image.size} were decoded")


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail any decoding of an image file's pixels."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", _refuse)


def test_image_properties_of_a_20000_px_png_decode_nothing(tmp_path, no_decoding):
    path = tmp_path / "large.png"
    path.write_bytes(_black_png(20_000, 20_000))
    assert path.stat().st_size < 100_000
    props = image_properties([str(path)])
    assert props["width"].iloc[0] == props["height"].iloc[0] == 20_000
    assert props["area"].iloc[0] == 4e8
    assert props["has_exif"].iloc[0] == 0


def test_exif_after_the_pixel_data_is_read_without_decoding(tmp_path, monkeypatch):
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotated: displayed 30 wide, 80 high
    data = _black_png(80, 30, trailing_exif=exif)
    with Image.open(io.BytesIO(data)) as image:  # PIL finds it by decoding
        assert "exif" not in image.info and image.getexif()[ORIENTATION] == 6
    path = tmp_path / "rotated.png"
    path.write_bytes(data)
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", _refuse)
        props = image_properties([str(path), data, Image.open(path)])
    assert props["width"].tolist()[:2] == [30, 30] and props["height"].tolist()[:2] == [80, 80]
    assert props["has_exif"].tolist()[:2] == [1, 1]
    # A caller's image opened but not decoded: what its header holds, unchanged by the audit.
    assert props["width"].iloc[2] == 80
    image = Image.open(path)
    image_properties([image])
    assert image.getexif()[ORIENTATION] == 6


def test_audit_and_clipdet_audit_of_large_pngs_decode_nothing(tmp_path, no_decoding, capsys):
    large = _black_png(12_000, 12_000)
    small = _black_png(64, 64)
    for label, data in (("real", large), ("fake", small)):
        (tmp_path / label).mkdir()
        for i in range(10):
            (tmp_path / label / f"{i}.png").write_bytes(data)
    with pytest.warns(ShortcutWarning, match="area"):
        audit = audit_shortcuts([large] * 10 + [small] * 10, [0] * 10 + [1] * 10, cv=2)
    assert audit.set_index("property").loc["area", "flagged"]
    assert main(["audit", str(tmp_path), "--cv", "2"]) == 0
    assert "shortcut found: width" in capsys.readouterr().err


# --- robustness_report and the perturbations -------------------------------------------------


def test_perturbation_refuses_an_image_over_the_limit_before_decoding(tmp_path, no_decoding):
    path = tmp_path / "large.png"
    path.write_bytes(_black_png(20_000, 20_000))
    with pytest.raises(
        ImageDecodeError, match=r"Sample 3 \(path .*large.png.*more than the limit of 1000"
    ):
        Resize(0.5).perturb_items([str(path)], offset=3, seed=None, max_image_pixels=1000)


@pytest.fixture(scope="module")
def fitted(tiny_model_name):
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (48, 48, 3)).astype(np.uint8) for _ in range(12)]
    y = np.array([0, 1] * 6)
    pipe = make_detector(
        tiny_model_name,
        None,
        modalities="image",
        random_state=0,
        featurizer_params={"num_workers": 0},
        classifier_params={"hidden_layer_sizes": (8,), "max_epochs": 2},
    )
    return pipe.fit(images, y), images, y


def test_perturbed_images_held_stay_within_the_pixel_budget(fitted, monkeypatch):
    pipe, images, y = fitted
    featurizer = pipe[0]
    pixels_per_call = []
    transform = type(featurizer).transform

    def recording(self, X):
        pixels_per_call.append(
            sum(item.width * item.height for item in X if isinstance(item, Image.Image))
        )
        return transform(self, X)

    perturbations = {"crop": [CenterCrop(0.9)], "noise": [GaussianNoise(8, random_state=0)]}
    expected = robustness_report(pipe, images, y, perturbations)
    budget = 3 * 48 * 48  # three decoded images
    monkeypatch.setattr(robustness_module, "_PIXELS_HELD", budget)
    monkeypatch.setattr(type(featurizer), "transform", recording)
    report = robustness_report(pipe, images, y, perturbations)
    perturbed_calls = pixels_per_call[1:]  # the first encodes the clean images
    assert len(perturbed_calls) == 2 * 4  # 12 images, 3 at a time, for each perturbation
    assert 0 < max(perturbed_calls) <= budget
    pd.testing.assert_frame_equal(report, expected)


def test_perturbations_decode_within_the_featurizers_limits(fitted, monkeypatch):
    pipe, images, y = fitted
    seen = []
    perturb_items = ImagePerturbation.perturb_items

    def recording(self, items, offset, seed, **limits):
        seen.append(limits)
        return perturb_items(self, items, offset, seed, **limits)

    monkeypatch.setattr(ImagePerturbation, "perturb_items", recording)
    limits = {name: pipe[0].get_params()[name] for name in ("max_image_pixels", "max_image_bytes")}
    pipe[0].set_params(max_image_pixels=123_456, max_image_bytes=654_321)
    try:
        robustness_report(pipe, images, y, {"jpeg": [JPEGCompress(50)]})
    finally:
        pipe[0].set_params(**limits)
    assert seen and all(
        limits["max_image_pixels"] == 123_456 and limits["max_image_bytes"] == 654_321
        for limits in seen
    )
