"""The clipdet command line, run in-process through its entry point."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_clipdet._images import ImageDecodeWarning
from sklearn_clipdet.cli import main

FAST = ["--epochs", "3", "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def trained(tiny_model_name, playground_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model_file = folder / "detector.safetensors"
    status = main(["train", str(playground_dir), "--out", str(model_file),
                   "--model", tiny_model_name, *FAST])
    assert status == 0
    return model_file


def test_train_writes_a_detector(trained):
    assert trained.stat().st_size > 0


def test_predict_writes_one_score_per_image(trained, playground_dir, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["predict", str(trained), str(playground_dir), "--out", str(out), "--quiet"]) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["image", "score"]
    assert len(scores) == 60
    assert scores["score"].between(0, 1).all()


def test_evaluate_prints_metrics_and_writes_roc(trained, playground_dir, tmp_path, capsys):
    roc = tmp_path / "roc.png"
    assert main(["evaluate", str(trained), str(playground_dir), "--roc", str(roc),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    for metric in ["roc_auc", "average_precision", "accuracy@0.5", "tpr@fpr=0.01", "eer"]:
        assert metric in out
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and roc.stat().st_size > 5000


def test_featurize_from_csv(tiny_model_name, playground_samples, tmp_path):
    paths, labels = playground_samples
    csv = tmp_path / "data.csv"
    pd.DataFrame({"image": paths[::10], "label": labels[::10]}).to_csv(csv, index=False)
    out = tmp_path / "features.csv"
    assert main(["featurize", str(csv), "--out", str(out), "--model", tiny_model_name,
                 "--quiet"]) == 0
    table = pd.read_csv(out)
    assert len(table) == len(paths[::10])
    assert list(table.columns[:3]) == ["image", "label", "image_0"]


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipdet train: error:") and "\n" not in err


def test_unreadable_model_file(tmp_path, playground_dir, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert main(["predict", str(bad), str(playground_dir), "--out", str(tmp_path / "s.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a readable detector file" in err and "\n" not in err


def test_failing_images(trained, playground_samples, tmp_path, capsys):
    paths, _ = playground_samples
    csv = tmp_path / "data.csv"
    pd.DataFrame({"image": [paths[0], str(tmp_path / "missing.jpg")]}).to_csv(csv, index=False)
    out = tmp_path / "scores.csv"
    assert main(["predict", str(trained), str(csv), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "missing.jpg" in err and "\n" not in err
    # With --on-error nan, the bad image gets an empty score and the others are scored.
    with pytest.warns(ImageDecodeWarning, match=r"1 of 2 images could not be read"):
        status = main(["predict", str(trained), str(csv), "--out", str(out), "--quiet",
                       "--on-error", "nan"])
    assert status == 0
    scores = pd.read_csv(out)["score"]
    assert scores.notna().tolist() == [True, False]


def test_unavailable_weights_name_the_local_model_option(playground_dir, tmp_path, capsys):
    status = main(["train", str(playground_dir), "--out", str(tmp_path / "d"),
                   "--model", "ViT-B-32", "--pretrained", str(tmp_path / "absent.bin"), *FAST])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert "--model local-dir:" in err and "\n" not in err


@pytest.mark.parametrize("command", ["featurize", "train", "predict", "evaluate"])
def test_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_clipdet.cli", command, "--help"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0
    assert f"usage: clipdet {command}" in result.stdout


def test_scores_are_the_probability_of_label_1(trained, playground_dir, tmp_path):
    from sklearn_clipdet import load_detector, load_image_folder

    out = tmp_path / "scores.csv"
    assert main(["predict", str(trained), str(playground_dir), "--out", str(out), "--quiet"]) == 0
    detector = load_detector(trained)
    data = load_image_folder(playground_dir)
    expected = detector.predict_proba(data[["image"]])[:, list(detector[-1].classes_).index(1)]
    np.testing.assert_allclose(pd.read_csv(out)["score"], expected, rtol=1e-6)


def test_detector_without_label_1_is_refused(playground_samples, tiny_model_name, tmp_path,
                                             capsys):
    from sklearn_clipdet import make_detector, save_detector

    paths, y = playground_samples
    detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                             classifier_params=dict(hidden_layer_sizes=(4,), max_epochs=1))
    detector.fit(paths, np.array(["real", "fake"])[y])
    model_file = tmp_path / "strings.safetensors"
    save_detector(detector, model_file)
    assert main(["predict", str(model_file), str(Path(paths[0]).parents[1]), "--out",
                 str(tmp_path / "s.csv"), "--quiet"]) == 1
    assert "do not include pos_label=1" in capsys.readouterr().err
