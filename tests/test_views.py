"""The featurizer's views: the model's resize, and pooled native-resolution tiles."""

import warnings

import numpy as np
import pytest
from PIL import Image

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._images._tiles import choose_tiles, entropy_bits, grid_cells, native_tiles
from sklearn_clipdet.exceptions import ImageDecodeError


def _noise_image(width, height, noisy_cells, size=8, seed=0):
    """A flat grey image whose grid cells ``noisy_cells`` (row-major) hold noise."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    cells = grid_cells(width, height, size)
    for rank, cell in enumerate(noisy_cells):
        left, top, right, bottom = cells[cell]
        levels = 256 // (rank + 1)  # the first cell gets the most grey levels
        pixels[top:bottom, left:right] = rng.integers(0, levels, (size, size, 1))
    return Image.fromarray(pixels)


def test_the_grid_is_centred_and_row_major():
    assert grid_cells(20, 17, 8) == [(2, 0, 10, 8), (10, 0, 18, 8), (2, 8, 10, 16), (10, 8, 18, 16)]
    assert grid_cells(7, 30, 8) == []


def test_tiles_are_the_cells_of_highest_entropy_best_first():
    image = _noise_image(32, 24, noisy_cells=[7, 2, 9])  # 4 x 3 cells
    chosen, cells, entropies = choose_tiles(image, 8, 3)
    assert chosen == [cells[7], cells[2], cells[9]]
    assert entropies[7] > entropies[2] > entropies[9] > entropies[0] == 0.0
    # Ties keep row-major order: the flat cells come in order after the noisy ones.
    chosen, cells, _ = choose_tiles(image, 8, 5)
    assert chosen[3:] == [cells[0], cells[1]]
    tiles = native_tiles(image, 8, 3)
    left, top, right, bottom = cells[7]
    assert tiles.shape == (3, 8, 8, 3) and tiles.dtype == np.uint8
    np.testing.assert_array_equal(tiles[0], np.asarray(image)[top:bottom, left:right])


def test_small_images_are_enlarged_and_the_best_cell_repeated():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (5, 12, 3), np.uint8))
    tiles = native_tiles(image, 8, 4)  # enlarged to 8 x 19: two cells
    assert tiles.shape == (4, 8, 8, 3)
    chosen, cells, _ = choose_tiles(image.resize((19, 8), Image.Resampling.BICUBIC), 8, 4)
    assert len(cells) == 2 and chosen[2:] == [chosen[0], chosen[0]]


def test_entropy_is_in_bits():
    assert entropy_bits(np.zeros((4, 4), np.uint8)) == 0.0
    assert entropy_bits(np.arange(256, dtype=np.uint8)) == pytest.approx(8.0)
    assert entropy_bits(np.array([0, 255], dtype=np.uint8)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tiny_deep(tmp_path_factory):
    from sklearn_clipdet.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model", vision_layers=3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four images larger than the tiny model's 32-px input, of different sizes."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    paths = []
    for i, (w, h) in enumerate([(96, 64), (40, 120), (20, 20), (64, 64)]):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _featurizer(model, **params):
    return CLIPFeaturizer(model, None, modalities="image", image_layers=[1, 3], num_workers=0,
                          **params).fit(None)


def test_resize_and_tiles_are_the_two_single_views_side_by_side(tiny_deep, photos):
    both = _featurizer(tiny_deep, views="resize+tiles")
    features = both.transform(photos)
    names = both.get_feature_names_out()
    assert features.shape == (4, 128) == (4, len(names))
    assert [names[0], names[32], names[64], names[96]] == [
        "image_block1_0", "image_block3_0", "tiles_block1_0", "tiles_block3_0"]
    resize = _featurizer(tiny_deep, views="resize").transform(photos)
    tiles = _featurizer(tiny_deep, views="tiles").transform(photos)
    np.testing.assert_allclose(features, np.hstack([resize, tiles]), atol=1e-5)
    assert not np.allclose(resize, tiles, atol=0.05)


def test_the_tiles_view_is_the_mean_of_each_tiles_normalised_layers(tiny_deep, photos):
    tiles = native_tiles(Image.open(photos[0]).convert("RGB"), 32, 2)
    per_tile = _featurizer(tiny_deep, views="resize").transform(list(tiles))
    pooled = _featurizer(tiny_deep, views="tiles", n_tiles=2).transform(photos[:1])
    np.testing.assert_allclose(pooled[0], per_tile.mean(axis=0), atol=1e-5)
    raw = _featurizer(tiny_deep, views="tiles", n_tiles=2, normalize=False)
    raw_tiles = _featurizer(tiny_deep, views="resize", normalize=False).transform(list(tiles))
    np.testing.assert_allclose(raw.transform(photos[:1])[0], raw_tiles.mean(axis=0), atol=1e-4)


def test_tile_features_are_cached_by_view(tiny_deep, photos, tmp_path):
    cached = _featurizer(tiny_deep, views="resize+tiles", cache_dir=tmp_path)
    first = cached.transform(photos)
    tiles_only = _featurizer(tiny_deep, views="tiles", cache_dir=tmp_path)
    np.testing.assert_allclose(tiles_only.transform(photos), first[:, 64:], atol=1e-6)
    # normalize changes after encoding: the raw tile features come from the cache.
    raw = _featurizer(tiny_deep, views="tiles", cache_dir=tmp_path, normalize=False)
    reference = _featurizer(tiny_deep, views="tiles", normalize=False).transform(photos)
    np.testing.assert_allclose(raw.transform(photos), reference, atol=1e-5)
    # A different tile count is another view: no stale entries.
    two = _featurizer(tiny_deep, views="tiles", n_tiles=2, cache_dir=tmp_path).transform(photos)
    assert not np.allclose(two, first[:, 64:], atol=1e-4)


def test_an_unreadable_image_names_its_sample_in_either_policy(tiny_deep, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=r"Sample 1 \(path .*broken.jpg"):
        _featurizer(tiny_deep, views="tiles").transform([photos[0], str(broken)])
    lenient = _featurizer(tiny_deep, views="resize+tiles", on_error="nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = lenient.transform([photos[0], str(broken), photos[1]])
    assert np.isnan(features[1]).all() and not np.isnan(features[[0, 2]]).any()
    assert lenient.failed_indices_.tolist() == [1]
    assert [error.index for error in lenient.failures_] == [1]  # one error, not one per view
    assert sum("could not be read" in str(w.message) for w in caught) == 1


def test_views_and_tile_count_are_validated(tiny_deep):
    with pytest.raises(ValueError, match="views"):
        CLIPFeaturizer(tiny_deep, None, views="crops").fit(None)
    with pytest.raises(ValueError, match="n_tiles"):
        CLIPFeaturizer(tiny_deep, None, n_tiles=0).fit(None)


def test_a_missing_image_is_an_error_in_the_tiles_view_alone(tiny_deep, photos):
    with pytest.raises(ImageDecodeError, match="Sample 1 .*missing image"):
        _featurizer(tiny_deep, views="tiles").transform([photos[0], None])
    lenient = _featurizer(tiny_deep, views="tiles", on_error="nan")
    with pytest.warns(UserWarning, match="could not be read"):
        features = lenient.transform([photos[0], None])
    assert np.isnan(features[1]).all() and lenient.failed_indices_.tolist() == [1]


def test_a_strip_whose_enlargement_passes_the_pixel_limit_is_refused(tiny_deep, tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((2, 400, 3), 100, np.uint8)).save(strip)  # 800 px, 16 x 6400 tiled
    with pytest.raises(ImageDecodeError, match="once its short side is enlarged"):
        _featurizer(tiny_deep, views="tiles", max_image_pixels=100_000).transform([str(strip)])
    assert _featurizer(tiny_deep, views="resize", max_image_pixels=100_000).transform(
        [str(strip)]).shape == (1, 64)


def test_an_empty_cache_dir_is_refused(tiny_deep):
    with pytest.raises(ValueError, match="cache_dir=''"):
        CLIPFeaturizer(tiny_deep, None, cache_dir="").fit(None)


@pytest.mark.parametrize("views", ["resize", "tiles"])
def test_a_cache_hit_does_not_bypass_the_pixel_limit(tiny_deep, photos, tmp_path, views):
    """Features cached under a higher limit are not returned for an image the current limit
    refuses: the result does not depend on the cache's state."""
    large = _featurizer(tiny_deep, views=views, cache_dir=tmp_path).transform(photos[:1])
    assert np.isfinite(large).all()
    strict = _featurizer(tiny_deep, views=views, cache_dir=tmp_path, max_image_pixels=1000)
    with pytest.raises(ImageDecodeError, match="Sample 0 .*more than the limit of 1000"):
        strict.transform(photos[:1])
