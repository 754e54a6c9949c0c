"""JPEGs cut mid-scan and closed with an end marker are unreadable images, not grey ones.

libjpeg fills the blocks a scan lacks with grey and only warns (PIL ignores the
warning, torchvision prints it), so such files used to be featurized silently.
"""

import io

import numpy as np
import pytest
from PIL import Image

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._images._reading import one_sequential_scan, scan_ends_early
from sklearn_clipdet.exceptions import ImageDecodeError, ImageDecodeWarning

SOS = b"\xff\xda"
EOI = b"\xff\xd9"


def _photo(height=200, width=256, seed=0):
    """A textured RGB array, so that every block carries coefficients."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(height), np.arange(width)) % 256
    noise = rng.integers(0, 60, (height, width, 3))
    return np.clip(ramp[:, :, None] * [1.0, 0.6, 0.3] + noise, 0, 255).astype(np.uint8)


def _jpeg(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _cut_mid_scan(data, fraction=0.5):
    """``data`` cut ``fraction`` of the way through its scan, closed with an end marker."""
    start = data.index(SOS)
    return data[: start + int((len(data) - start) * fraction)] + EOI


def _claiming_9000(data):
    """A tiny baseline JPEG whose frame header claims 9000 x 9000 pixels."""
    sof = data.index(b"\xff\xc0")
    size = (9000).to_bytes(2, "big") * 2  # height, then width
    return data[: sof + 5] + size + data[sof + 9 :]


#: Image sizes: under 192 pixels a side the fast path decodes JPEGs with torchvision (for the
#: tiny model's 32-pixel input), above it with PIL at a reduced scale.
SIZES = {"tensor_path": (120, 160), "reduced_path": (300, 400)}


@pytest.fixture(params=list(SIZES))
def valid_jpeg(request):
    return _jpeg(Image.fromarray(_photo(*SIZES[request.param])), quality=90)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_scan_cut_short_is_found(valid_jpeg, fraction):
    cut = _cut_mid_scan(valid_jpeg, fraction)
    assert one_sequential_scan(cut)
    assert scan_ends_early(cut)
    assert not scan_ends_early(valid_jpeg)


def test_tiny_file_claiming_9000_pixels_a_side_is_found():
    header_only = _claiming_9000(_jpeg(Image.fromarray(_photo(16, 16))))
    assert len(header_only) < 1000
    assert scan_ends_early(header_only)


def _files(tmp_path, datas):
    paths = []
    for i, data in enumerate(datas):
        path = tmp_path / f"image{i}.jpg"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("draft_decode", [True, False])
@pytest.mark.parametrize("damage", ["cut", "claims_9000"])
def test_corrupt_jpeg_raises_naming_the_sample(
    tiny_model_name, tmp_path, valid_jpeg, draft_decode, damage
):
    bad = (
        _cut_mid_scan(valid_jpeg)
        if damage == "cut"
        else _claiming_9000(_jpeg(Image.fromarray(_photo(16, 16))))
    )
    paths = _files(tmp_path, [valid_jpeg, bad])
    featurizer = CLIPFeaturizer(
        model_name=tiny_model_name, modalities="image", draft_decode=draft_decode, num_workers=0
    )
    with pytest.raises(ImageDecodeError, match="truncated") as info:
        featurizer.fit_transform(paths)
    assert info.value.index == 1
    assert paths[1] in info.value.source


@pytest.mark.parametrize("draft_decode", [True, False])
def test_corrupt_jpeg_is_a_nan_row_with_on_error_nan(
    tiny_model_name, tmp_path, valid_jpeg, draft_decode
):
    paths = _files(tmp_path, [valid_jpeg, _cut_mid_scan(valid_jpeg), valid_jpeg])
    featurizer = CLIPFeaturizer(
        model_name=tiny_model_name,
        modalities="image",
        draft_decode=draft_decode,
        on_error="nan",
        num_workers=2,
    )
    with pytest.warns(ImageDecodeWarning, match=r"indices \[1\]"):
        features = featurizer.fit_transform(paths)
    assert np.isnan(features[1]).all()
    assert np.isfinite(features[[0, 2]]).all()
    np.testing.assert_array_equal(featurizer.failed_indices_, [1])


def _valid_variants(size):
    photo = Image.fromarray(_photo(*size))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated
    grey_tail = _photo(*size)
    grey_tail[-48:, -48:] = 128  # a complete image that ends in the grey of missing blocks
    return {
        "baseline": _jpeg(photo),
        "progressive": _jpeg(photo, progressive=True),
        "restart_markers": _jpeg(photo, restart_marker_blocks=4),
        "exif": _jpeg(photo, exif=exif),
        "cmyk": _jpeg(photo.convert("CMYK")),
        "grayscale": _jpeg(photo.convert("L")),
        "optimized": _jpeg(photo, optimize=True),
        "quality_100_444": _jpeg(photo, subsampling=0, quality=100),
        "grey_tail": _jpeg(Image.fromarray(grey_tail), quality=100),
    }


@pytest.mark.parametrize("size", list(SIZES))
def test_valid_variants_are_what_they_claim(size):
    variants = _valid_variants(SIZES[size])
    assert b"\xff\xdd" in variants["restart_markers"]  # DRI: a restart interval
    assert not one_sequential_scan(variants["progressive"])
    assert Image.open(io.BytesIO(variants["cmyk"])).mode == "CMYK"
    assert Image.open(io.BytesIO(variants["exif"])).getexif()[0x0112] == 6
    tail = np.asarray(Image.open(io.BytesIO(variants["grey_tail"])))[-1, -1]
    assert (np.abs(tail.astype(int) - 128) <= 2).all()  # it takes the check on its data


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("draft_decode", [True, False])
def test_valid_jpegs_are_not_refused(tiny_model_name, tmp_path, draft_decode, size):
    variants = _valid_variants(SIZES[size])
    paths = _files(tmp_path, variants.values())
    featurizer = CLIPFeaturizer(
        model_name=tiny_model_name, modalities="image", draft_decode=draft_decode, num_workers=2
    )
    features = featurizer.fit_transform(paths)  # raises on any unreadable image
    assert np.isfinite(features).all()
    for name, data in variants.items():
        assert not scan_ends_early(data) or not one_sequential_scan(data), name


@pytest.mark.cuda
def test_nvjpeg_refuses_a_scan_cut_short_and_decodes_the_whole_one():
    """nvJPEG, like libjpeg, decodes a cut scan as grey: the same re-check must catch it."""
    from sklearn_clipdet._images._reading import open_limited
    from sklearn_clipdet._images._tensors import decode_jpegs, encoded_tensor

    whole = _jpeg(Image.fromarray(_photo(120, 160)), quality=90)
    headers = [open_limited(io.BytesIO(whole), None)]
    (decoded,) = decode_jpegs([encoded_tensor(whole)], headers, "cuda")
    assert decoded.is_cuda and tuple(decoded.shape) == (3, 120, 160)
    cut = _cut_mid_scan(whole, 0.5)
    with pytest.raises(RuntimeError, match="ends early"):
        decode_jpegs([encoded_tensor(cut)], [open_limited(io.BytesIO(cut), None)], "cuda")
