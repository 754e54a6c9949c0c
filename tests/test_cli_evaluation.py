"""The evaluation commands of clipdet: 'evaluate --robustness' and 'audit'."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from sklearn_clipdet.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def balanced_folder(tmp_path_factory):
    """real/ and fake/ with 10 random 48 px JPEGs each: same size, format and quality."""
    root = tmp_path_factory.mktemp("balanced")
    rng = np.random.RandomState(0)
    for folder in ("real", "fake"):
        (root / folder).mkdir()
        for i in range(10):
            pixels = rng.randint(0, 256, (48, 48, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def trained(balanced_folder, tiny_model_name):
    model_file = balanced_folder.parent / "detector.safetensors"
    status = main(["train", str(balanced_folder), "--out", str(model_file), "--model",
                   tiny_model_name, "--epochs", "3", "--batch-size", "64", "--quiet"])
    assert status == 0
    return model_file


def evaluate(trained, folder, *options, model):
    """``clipdet evaluate`` pointing the detector at its backbone, the tiny model."""
    return main(["evaluate", str(trained), str(folder), "--quiet", "--model", model, *options])


def test_evaluate_with_robustness_writes_table_and_plot(trained, balanced_folder, tmp_path,
                                                        capsys, tiny_model_name):
    table, plot = tmp_path / "robustness.csv", tmp_path / "robustness.png"
    status = evaluate(trained, balanced_folder, "--perturbations", "jpeg,blur",
                      "--robustness-out", str(table), "--robustness-out", str(plot),
                      model=tiny_model_name)
    assert status == 0
    out = capsys.readouterr().out
    assert "roc_auc" in out and "robustness" in out
    report = pd.read_csv(table)
    assert list(report.columns[:4]) == ["perturbation", "parameter", "level", "metric"]
    assert report["perturbation"].unique().tolist() == ["none", "jpeg", "blur"]
    assert sorted(report.loc[report["perturbation"] == "jpeg", "level"].unique()) == [
        30, 50, 75, 90]
    clean_auc = report.query("perturbation == 'none' and metric == 'roc_auc'")["value"].item()
    printed_auc = float(out.split("roc_auc")[1].split()[0])
    assert clean_auc == pytest.approx(printed_auc, abs=1e-4)
    data = plot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_evaluate_rejects_unknown_perturbations_and_outputs(trained, balanced_folder, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(trained), str(balanced_folder), "--perturbations", "jpeg,warp"])
    assert exit_info.value.code == 2
    assert "warp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(trained), str(balanced_folder), "--robustness-out", "x.txt"])


def test_audit_warns_about_the_size_shortcut(size_shortcut_dir, tmp_path, capsys):
    out_file = tmp_path / "audit.csv"
    assert main(["audit", str(size_shortcut_dir), "--out", str(out_file)]) == 0
    captured = capsys.readouterr()
    assert "width" in captured.out and "file_size" in captured.out
    warning = captured.err.strip()
    assert warning.startswith("clipdet audit: warning: shortcut found: width")
    assert "\n" not in warning
    table = pd.read_csv(out_file).set_index("property")
    assert table.loc["width", "flagged"] and not table.loc["aspect_ratio", "flagged"]

    assert main(["audit", str(size_shortcut_dir), "--strict"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("clipdet audit: error: shortcut found") and "\n" not in error


def test_audit_of_balanced_data_finds_nothing(balanced_folder, capsys):
    assert main(["audit", str(balanced_folder), "--strict", "--cv", "4"]) == 0
    captured = capsys.readouterr()
    assert "no shortcut found" in captured.out and captured.err == ""


def test_audit_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("clipdet audit: error:") and "\n" not in error


def test_evaluate_with_robustness_encodes_the_clean_images_once(trained, balanced_folder,
                                                                monkeypatch, tiny_model_name):
    from sklearn_clipdet import CLIPFeaturizer

    encoded = []
    original = CLIPFeaturizer._encode_images

    def counting(self, backbone, pixels):
        encoded.append(len(pixels))
        return original(self, backbone, pixels)

    monkeypatch.setattr(CLIPFeaturizer, "_encode_images", counting)
    assert evaluate(trained, balanced_folder, "--robustness", "--perturbations", "jpeg",
                    model=tiny_model_name) == 0
    # 20 clean images for the metrics (reused by the report), 20 per JPEG quality level.
    assert sum(encoded) == 20 + 20 * 4


def test_evaluate_a_detector_with_string_labels(string_label_detector, balanced_folder,
                                                tmp_path, capsys, tiny_model_name):
    data, detector, model_file = string_label_detector(balanced_folder)

    table = tmp_path / "robustness.csv"
    assert main(["evaluate", str(model_file), str(balanced_folder), "--quiet",
                 "--model", tiny_model_name,
                 "--perturbations", "blur", "--robustness-out", str(table)]) == 0
    printed_auc = float(capsys.readouterr().out.split("roc_auc")[1].split()[0])
    expected = roc_auc_score(data["label"], detector.predict_proba(data[["image"]])[:, 0])
    assert printed_auc == pytest.approx(expected, abs=1e-4)
    report = pd.read_csv(table)
    clean = report.query("perturbation == 'none' and metric == 'roc_auc'")["value"].item()
    assert clean == pytest.approx(expected)
