"""Per-cell scores of native-resolution tiles, and their map."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.pipeline import Pipeline

from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier
from sklearn_clipdet.evaluation.explain import plot_tile_scores, tile_scores
from sklearn_clipdet.testing import write_tiny_model

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    model = write_tiny_model(tmp_path_factory.mktemp("tiny") / "model", vision_layers=2)
    images = sorted(str(p) for p in (SAMPLES / "train").rglob("*.jpg"))
    labels = [int(Path(p).parent.name == "ai") for p in images]
    return Pipeline([
        ("clipfeaturizer", CLIPFeaturizer(model, None, modalities="image",
                                          views="resize+tiles", num_workers=0)),
        ("robustmlpclassifier", RobustMLPClassifier(hidden_layer_sizes=(), max_epochs=3,
                                                    random_state=0)),
    ]).fit(images, labels)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (70, 100, 3), dtype=np.uint8)
    pixels[:, :50] //= 8  # the left half has fewer grey levels
    Image.fromarray(pixels).save(path)
    return path


def test_every_cell_gets_a_score_and_the_pooled_cells_are_marked(detector, photo):
    table = tile_scores(detector, photo)
    assert list(table.columns) == ["left", "top", "right", "bottom", "entropy", "pooled",
                                   "score"]
    assert len(table) == 3 * 2  # 100 x 70 px in 32-px cells
    assert table["score"].between(0, 1).all()
    assert table["pooled"].sum() == 4
    # The pooled cells are those of highest entropy: the noisy right half.
    assert table.loc[table["pooled"], "left"].min() >= 50 - 32
    whole = detector.predict_proba([str(photo)])[0, 1]
    assert table.attrs["image_score"] == pytest.approx(whole, abs=1e-6)


def test_a_cell_score_is_the_detector_with_that_cell_as_every_tile(detector, photo):
    table = tile_scores(detector, photo)
    row = table.iloc[0]
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    cell = pixels[row.top:row.bottom, row.left:row.right]
    featurizer = detector[0]
    resize = featurizer.transform([str(photo)])[:, :featurizer.transform([cell]).shape[1] // 2]
    tiles = CLIPFeaturizer(featurizer.model_name, None, modalities="image",
                           num_workers=0).fit(None).transform([cell])
    expected = detector[-1].predict_proba(np.hstack([resize, tiles]))[0, 1]
    assert row.score == pytest.approx(expected, abs=1e-5)


def test_the_map_is_written_whole(detector, photo, tmp_path):
    pytest.importorskip("matplotlib")
    table = tile_scores(detector, photo)
    ax = plot_tile_scores(photo, table, path=tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert len(ax.patches) == len(table)


def test_a_detector_without_tiles_is_refused(detector, photo):
    resized = Pipeline([("f", CLIPFeaturizer(detector[0].model_name, None, modalities="image",
                                             num_workers=0)), ("c", detector[-1])])
    with pytest.raises(ValueError, match="views='resize\\+tiles'"):
        tile_scores(resized, photo)


def test_steps_between_the_featurizer_and_the_head_are_applied(detector, photo):
    from sklearn.preprocessing import StandardScaler

    features = detector[0].transform([str(photo)] * 3)
    scaler = StandardScaler(with_mean=False).fit(np.vstack([features, features * 2]))
    head = RobustMLPClassifier(hidden_layer_sizes=(), max_epochs=2, random_state=0).fit(
        scaler.transform(np.vstack([features, features * 2])), [0, 0, 0, 1, 1, 1])
    three = Pipeline([("f", detector[0]), ("s", scaler), ("c", head)])
    table = tile_scores(three, photo)
    assert table.attrs["image_score"] == pytest.approx(
        three.predict_proba([str(photo)])[0, 1], abs=1e-6)
