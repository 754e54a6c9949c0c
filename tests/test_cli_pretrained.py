"""clipdet predict/evaluate without a detector file: the shipped detector, here a tiny one of
the same format (``tiny_pretrained``) put where the shipped file would be."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_clipdet import pretrained
from sklearn_clipdet.cli import main
from sklearn_clipdet.testing import write_tiny_model

SAMPLE_TEST = Path(__file__).resolve().parents[1] / "sample_images" / "test"


@pytest.fixture
def shipped(tiny_pretrained, monkeypatch):
    """The tiny shipped-format detector stands for the shipped one."""
    monkeypatch.setattr(pretrained, "PRETRAINED_DETECTOR", tiny_pretrained["path"])
    return tiny_pretrained


def one_line_error(capsys, command):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clipdet {command}: error: ") and "\n" not in err, err
    return err


def test_predict_without_a_detector_file_uses_the_shipped_one(shipped, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["predict", str(SAMPLE_TEST), "--out", str(out), "--model", shipped["model"],
                 "--quiet"]) == 0
    table = pd.read_csv(out)
    tested = sorted(str(p) for p in SAMPLE_TEST.rglob("*.jpg"))
    assert sorted(table["image"]) == tested
    assert list(table.columns) == ["image", "score", "label", "distance"]
    expected = shipped["detector"].predict_proba(table["image"].tolist())[:, 1]
    np.testing.assert_allclose(table["score"], expected, atol=1e-5)
    # The distance from the training rows, from the same features as the scores.
    from sklearn_clipdet.evaluation import training_distance

    np.testing.assert_allclose(
        table["distance"], training_distance(shipped["detector"], table["image"].tolist()),
        rtol=1e-5)
    assert set(table["label"]) <= {0, 1}


def test_evaluate_without_a_detector_file_uses_the_shipped_one(shipped, capsys):
    assert main(["evaluate", str(SAMPLE_TEST), "--model", shipped["model"], "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "images: 6 (3 generated, 3 real)" in out and "roc_auc" in out


def test_another_backbone_is_a_one_line_error(shipped, tmp_path, capsys):
    other = write_tiny_model(tmp_path / "other", vision_layers=2, seed=1)
    out = tmp_path / "scores.csv"
    assert main(["predict", str(SAMPLE_TEST), "--out", str(out), "--model", other,
                 "--quiet"]) == 1
    err = one_line_error(capsys, "predict")
    assert "is not the one the detector tiny.safetensors was trained on" in err
    assert "cosine of" in err and not out.exists()


def test_offline_without_weights_stops_at_the_weights(shipped, tmp_path, capsys, monkeypatch):
    from sklearn_clipdet import CLIPFeaturizer
    from sklearn_clipdet._clip import _backbone

    def unreachable(model_name, pretrained):
        raise ConnectionError("cannot reach huggingface.co to download the weights")

    encoded = []
    original = CLIPFeaturizer._encode_images
    monkeypatch.setattr(CLIPFeaturizer, "_encode_images",
                        lambda self, *a: encoded.append(1) or original(self, *a))
    monkeypatch.setattr(_backbone, "_check_download_reachable", unreachable)
    _backbone.clear_backbone_cache()
    assert main(["predict", str(SAMPLE_TEST), "--out", str(tmp_path / "s.csv"),
                 "--quiet"]) == 1
    err = one_line_error(capsys, "predict")
    assert "cannot load the CLIP model ViT-B-16 (pretrained openai): ConnectionError" in err
    assert "--model local-dir:FOLDER" in err and "'Offline use' in the README" in err
    assert not encoded


def test_an_installation_without_the_shipped_file_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED_DETECTOR", tmp_path / "absent.safetensors")
    assert main(["predict", str(SAMPLE_TEST), "--out", str(tmp_path / "s.csv")]) == 1
    err = one_line_error(capsys, "predict")
    assert "no shipped detector" in err and "absent.safetensors is missing" in err


def test_a_third_positional_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "detector.safetensors", "data/", "more/", "--out", "s.csv"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "clipdet: error: unrecognized arguments: more/ (see clipdet --help)")
