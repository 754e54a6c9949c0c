"""audit_shortcuts and the image properties it reads."""

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clipdet import load_image_folder
from sklearn_clipdet._images._reading import ImageDecodeError
from sklearn_clipdet.evaluation import (
    ShortcutWarning,
    audit_shortcuts,
    estimate_jpeg_quality,
    image_properties,
)


def _encoded(array, fmt="JPEG", **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _random_images(n, seed, size=32):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, (size, size, 3)).astype(np.uint8) for _ in range(n)]


def test_size_shortcut_is_flagged(size_shortcut_dir):
    """The playground's shortcut (large camera photos, small generated images), in small."""
    data = load_image_folder(size_shortcut_dir)
    with pytest.warns(ShortcutWarning, match="width .*height"):
        audit = audit_shortcuts(data, data["label"])
    audit = audit.set_index("property")
    for size_property in ["width", "height", "area", "file_size"]:
        assert audit.loc[size_property, "flagged"]
        assert audit.loc[size_property, "auc"] >= 0.9
    assert audit.loc["width", "median_generated"] == 320
    assert audit.loc["width", "median_real"] >= 640
    # Both classes are square JPEGs at the same quality: no shortcut there.
    for same in ["aspect_ratio", "format", "jpeg_quality"]:
        assert not audit.loc[same, "flagged"]
        assert audit.loc[same, "note"] == "same value for every image"
    assert audit.loc["caption_text", "note"] == "no captions in the data"


def test_no_warning_when_classes_share_their_properties():
    images = [_encoded(a, quality=80) for a in _random_images(40, seed=0)]
    y = np.array([0, 1] * 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortcutWarning)
        audit = audit_shortcuts(images, y)
    assert not audit["flagged"].any()
    assert audit.set_index("property").loc["file_size", "auc"] < 0.8


def test_format_quality_and_caption_shortcuts():
    arrays = _random_images(30, seed=1)
    real = [_encoded(a, quality=95) for a in arrays[:15]]
    fake = [_encoded(a, "PNG") for a in arrays[15:]]
    X = pd.DataFrame({
        "image": real + fake,
        "text": [f"a photo of a dog number {i}" for i in range(15)]
        + [f"dog {i}, highly detailed, 8k, trending on artstation" for i in range(15)],
    })
    y = np.r_[np.zeros(15, int), np.ones(15, int)]
    with pytest.warns(ShortcutWarning):
        audit = audit_shortcuts(X, y).set_index("property")
    assert audit.loc["format", "flagged"] and audit.loc["jpeg_quality", "flagged"]
    assert audit.loc["caption_text", "auc"] >= 0.95
    assert audit.loc["caption_length", "flagged"]
    assert "caption_present" not in audit.index  # every image has a caption
    assert not audit.loc["width", "flagged"]


def test_missing_captions_are_a_property():
    images = [_encoded(a) for a in _random_images(20, seed=2)]
    texts = [None if i % 2 else f"caption {i}" for i in range(20)]
    with pytest.warns(ShortcutWarning, match="caption_present"):
        audit = audit_shortcuts(pd.DataFrame({"image": images, "text": texts}),
                                np.arange(20) % 2)
    assert audit.set_index("property").loc["caption_present", "auc"] == 1.0


def test_image_properties(tmp_path):
    array = np.zeros((20, 50, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated, so the displayed size is 20 x 50
    with_exif = _encoded(array, quality=60, exif=exif)
    path = tmp_path / "plain.png"
    Image.fromarray(array).save(path)
    props = image_properties([with_exif, str(path), Image.fromarray(array), array])
    assert props["width"].tolist() == [20, 50, 50, 50]
    assert props["height"].tolist() == [50, 20, 20, 20]
    assert props["aspect_ratio"].iloc[0] == pytest.approx(0.4)
    assert props["format"].tolist() == ["JPEG", "PNG", "in-memory", "array"]
    assert props["has_exif"].tolist() == [1, 0, 0, 0]
    assert props["jpeg_quality"].iloc[0] == 60 and props["jpeg_quality"].iloc[1:].isna().all()
    assert props["file_size"].iloc[0] == len(with_exif)
    assert props["file_size"].iloc[1] == path.stat().st_size
    assert props["file_size"].iloc[2:].isna().all()


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 90, 100])
def test_jpeg_quality_estimate(quality):
    assert estimate_jpeg_quality(_encoded(np.zeros((16, 16, 3), np.uint8),
                                          quality=quality)) == quality
    assert np.isnan(estimate_jpeg_quality(_encoded(np.zeros((4, 4, 3), np.uint8), "PNG")))


def test_in_memory_images_have_no_file_size():
    images = [Image.fromarray(a) for a in _random_images(10, seed=3)]
    audit = audit_shortcuts(images, np.arange(10) % 2).set_index("property")
    assert np.isnan(audit.loc["file_size", "auc"])
    assert audit.loc["file_size", "note"].startswith("not available")


def test_errors_name_the_sample():
    images = [_encoded(a) for a in _random_images(4, seed=4)]
    with pytest.raises(ImageDecodeError, match="Sample 2 .*not an image"):
        audit_shortcuts(images[:2] + [b"garbage"] + images[3:], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="different lengths"):
        audit_shortcuts(images, [0, 1, 0])
    with pytest.raises(ValueError, match="at least 2 samples of each class"):
        audit_shortcuts(images, [0, 1, 1, 1])
    with pytest.raises(ValueError, match="threshold"):
        audit_shortcuts(images, [0, 1, 0, 1], threshold=0.3)


def test_a_set_without_jpegs_is_audited():
    """No image has a JPEG quality: that column is left out of the combined model."""
    import io

    from PIL import Image

    from sklearn_clipdet.evaluation import audit_shortcuts

    rng = np.random.default_rng(0)
    images = []
    for i in range(20):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), np.uint8)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    audit = audit_shortcuts(images, np.tile([0, 1], 10), cv=3).set_index("property")
    assert np.isnan(audit.loc["jpeg_quality", "auc"])
    assert np.isfinite(audit.loc["all_image_properties", "auc"])
