"""clipdet calibrate (a threshold from real photos) and clipdet explain (the score of every
cell), on the tiny detector in the shipped format (``tiny_pretrained``)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_clipdet import load_detector, make_detector, pretrained, save_detector
from sklearn_clipdet.calibration import conformal_threshold
from sklearn_clipdet.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    """A folder of the 8 real sample photos, and nothing else."""
    folder = tmp_path_factory.mktemp("real_photos")
    for path in SAMPLES.glob("*/real/*.jpg"):
        shutil.copyfile(path, folder / path.name)
    return folder


def one_line_error(capsys, command):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clipdet {command}: error: ") and "\n" not in err, err
    return err


# --- calibrate --------------------------------------------------------------------------------


def test_calibrate_writes_the_conformal_threshold_and_predict_labels_with_it(
        tiny_pretrained, real_dir, tmp_path, capsys):
    model, path = tiny_pretrained["model"], tiny_pretrained["path"]
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(path), str(real_dir), "--fpr", "0.2", "--out", str(out),
                 "--model", model, "--quiet"]) == 0
    printed = capsys.readouterr().out
    real = sorted(str(p) for p in real_dir.glob("*.jpg"))
    scores = tiny_pretrained["detector"].predict_proba(real)[:, 1]
    expected = conformal_threshold(scores, 0.2)  # the 8th smallest of 8 (ceil(9 * 0.8))
    assert expected == pytest.approx(scores.max())
    calibrated = load_detector(out, model_name=model)
    assert calibrated[-1].threshold == pytest.approx(expected, abs=1e-6)
    assert f"threshold: {calibrated[-1].threshold:.6g}" in printed
    assert "n = 8 real images" in printed and "at most 0.2" in printed
    assert calibrated[-1].threshold != 0.5  # or the test below would not tell them apart

    # predict labels with the calibrated file's threshold, not 0.5.
    scores_file = tmp_path / "scores.csv"
    assert main(["predict", str(out), str(SAMPLES / "test"), "--out", str(scores_file),
                 "--model", model, "--quiet"]) == 0
    table = pd.read_csv(scores_file)
    np.testing.assert_array_equal(table["label"],
                                  (table["score"] > calibrated[-1].threshold).astype(int))
    # none of the calibration photos is called generated: they define the threshold
    assert main(["predict", str(out), str(real_dir), "--out", str(scores_file),
                 "--model", model, "--quiet"]) == 0
    assert (pd.read_csv(scores_file)["label"] == 0).all()


def test_calibrate_without_a_detector_file_calibrates_the_shipped_one(
        tiny_pretrained, real_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED_DETECTOR", tiny_pretrained["path"])
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(real_dir), "--fpr", "0.25", "--out", str(out),
                 "--model", tiny_pretrained["model"], "--quiet"]) == 0
    calibrated = load_detector(out, model_name=tiny_pretrained["model"])
    scores = tiny_pretrained["detector"].predict_proba(
        sorted(str(p) for p in real_dir.glob("*.jpg")))[:, 1]
    assert calibrated[-1].threshold == pytest.approx(conformal_threshold(scores, 0.25),
                                                     abs=1e-6)
    assert calibrated[0].views == "resize+tiles"  # the shipped detector's, kept


def test_calibrate_refuses_too_few_or_generated_images(tiny_pretrained, real_dir, tmp_path,
                                                       capsys):
    model, path = tiny_pretrained["model"], tiny_pretrained["path"]
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(path), str(real_dir), "--out", str(out),
                 "--model", model]) == 1  # --fpr 0.01 by default
    err = one_line_error(capsys, "calibrate")
    assert "needs at least 99 real images" in err and "holds 8" in err and not out.exists()

    assert main(["calibrate", str(path), str(SAMPLES / "train"), "--fpr", "0.2",
                 "--out", str(out), "--model", model]) == 1
    assert "holds generated images" in one_line_error(capsys, "calibrate")
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", str(path), str(real_dir), "--fpr", "1", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "not a number in (0, 1)" in capsys.readouterr().err


# --- explain ----------------------------------------------------------------------------------


def test_explain_draws_and_tabulates_every_cell(tiny_pretrained, tmp_path, capsys):
    from sklearn_clipdet.evaluation import tile_scores

    image = str(SAMPLES / "test" / "ai" / "gan_6.jpg")
    out, cells = tmp_path / "map.png", tmp_path / "cells.csv"
    assert main(["explain", str(tiny_pretrained["path"]), image, "--out", str(out),
                 "--table", str(cells), "--model", tiny_pretrained["model"], "--quiet"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(cells)
    expected = tile_scores(tiny_pretrained["detector"], image)
    assert list(table.columns) == ["left", "top", "right", "bottom", "entropy", "pooled",
                                   "score"]
    assert len(table) == len(expected) > 4 and table["pooled"].sum() == 4  # n_tiles
    np.testing.assert_allclose(table["score"], expected["score"], atol=1e-5)
    printed = capsys.readouterr().out
    assert f"image score {expected.attrs['image_score']:.4f}" in printed
    assert f"{len(table)} cells (4 pooled" in printed


def test_explain_refuses_a_detector_without_tiles(tiny_model_name, tmp_path, capsys):
    detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                             featurizer_params={"views": "resize"},
                             classifier_params=dict(hidden_layer_sizes=(4,), max_epochs=1))
    images = sorted(str(p) for p in SAMPLES.glob("train/*/*.jpg"))
    detector.fit(images, [int("/ai/" in p) for p in images])
    path = tmp_path / "resize.safetensors"
    save_detector(detector, path)
    out = tmp_path / "map.png"
    assert main(["explain", str(path), images[0], "--out", str(out),
                 "--model", tiny_model_name]) == 1
    err = one_line_error(capsys, "explain")
    assert "tile_scores needs a detector whose featurizer reads tiles" in err
    assert not out.exists()


def test_explain_without_matplotlib_says_what_to_install(tiny_pretrained, tmp_path, capsys,
                                                         monkeypatch):
    from sklearn_clipdet.cli import _explain

    find_spec = _explain.importlib.util.find_spec
    monkeypatch.setattr(_explain.importlib.util, "find_spec",
                        lambda name, *args: None if name == "matplotlib" else find_spec(name))
    image = str(SAMPLES / "test" / "ai" / "gan_6.jpg")
    assert main(["explain", str(tiny_pretrained["path"]), image, "--out",
                 str(tmp_path / "map.png"), "--model", tiny_pretrained["model"]]) == 1
    err = one_line_error(capsys, "explain")
    assert 'pip install "sklearn-clipdet[plot]"' in err and "matplotlib" in err
