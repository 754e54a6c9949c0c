"""The clipdet command line, run in-process through its entry point."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier
from sklearn_clipdet._clip._backbone import clear_backbone_cache
from sklearn_clipdet.cli import main
from sklearn_clipdet.cli._entrypoint import build_parser
from sklearn_clipdet.testing import write_tiny_model

FAST = ["--epochs", "1", "--batch-size", "64", "--quiet"]


def write_folder(root, n_per_class=6, size=40, classes=("real", "fake")):
    """real/ and fake/ with small random JPEGs: cheap to decode and encode."""
    rng = np.random.RandomState(0)
    for folder in classes:
        (root / folder).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.randint(0, 256, (size, size, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def trained(tiny_model_name, small_folder, tmp_path_factory):
    model_file = tmp_path_factory.mktemp("cli") / "detector.safetensors"
    status = main(["train", str(small_folder), "--out", str(model_file),
                   "--model", tiny_model_name, *FAST])
    assert status == 0
    return model_file


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command loads a model, encodes images or trains."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the command started its work before finding the error")

    monkeypatch.setattr(CLIPFeaturizer, "load_backbone", forbidden)
    monkeypatch.setattr(CLIPFeaturizer, "transform", forbidden)
    monkeypatch.setattr(RobustMLPClassifier, "fit", forbidden)


def one_line_error(capsys, command):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clipdet {command}: error: ") and "\n" not in err, err
    return err


def predict(trained, data, out, *options, model=None):
    backbone = [] if model is None else ["--model", model]
    return main(["predict", str(trained), str(data), "--out", str(out), "--quiet", *backbone,
                 *options])


# --- the commands ----------------------------------------------------------------------------


def test_train_writes_a_detector(trained, small_folder, tiny_model_name):
    from sklearn.pipeline import Pipeline

    from sklearn_clipdet import load_detector, load_image_folder

    # The file holds a fitted featurizer + classifier on the training backbone, which scores.
    detector = load_detector(trained, model_name=tiny_model_name)
    assert isinstance(detector, Pipeline)
    assert isinstance(detector[0], CLIPFeaturizer) and detector[0].model_name == tiny_model_name
    assert detector[0].modalities == "image"  # "auto": the folder has no captions
    assert isinstance(detector[-1], RobustMLPClassifier) and list(detector[-1].classes_) == [0, 1]
    proba = detector.predict_proba(load_image_folder(small_folder)[["image"]])
    assert proba.shape == (12, 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)


def test_predict_writes_the_score_and_label_of_each_image(trained, small_folder, tmp_path,
                                                         tiny_model_name):
    from sklearn_clipdet import load_detector, load_image_folder

    out = tmp_path / "scores.csv"
    assert predict(trained, small_folder, out, model=tiny_model_name) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["image", "score", "label", "distance"]
    assert len(table) == 12 and table["score"].between(0, 1).all()
    # The score is the probability of label 1 (generated); the label is the detector's decision.
    detector = load_detector(trained, model_name=tiny_model_name)
    X = load_image_folder(small_folder)[["image"]]
    np.testing.assert_allclose(table["score"], detector.predict_proba(X)[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(table["label"], detector.predict(X))
    assert set(table["label"]) <= {0, 1}


def test_train_sizes_its_batches_to_the_data_unless_told(small_folder, tmp_path,
                                                          tiny_model_name):
    from sklearn_clipdet import load_detector

    out = tmp_path / "auto.safetensors"
    assert main(["train", str(small_folder), "--out", str(out), "--model", tiny_model_name,
                 "--epochs", "1", "--quiet"]) == 0
    assert load_detector(out, model_name=tiny_model_name)[-1].batch_size == "auto"


def test_options_may_sit_between_the_detector_file_and_the_data(trained, small_folder,
                                                                tmp_path, tiny_model_name):
    out = tmp_path / "scores.csv"
    assert main(["predict", str(trained), "--model", tiny_model_name, "--quiet",
                 str(small_folder), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 12


def test_predict_scores_a_folder_without_class_folders(trained, tmp_path, tiny_model_name):
    folder = tmp_path / "new"
    (folder / "batch1").mkdir(parents=True)
    rng = np.random.RandomState(1)
    for name in ("batch1/a.jpg", "b.png"):
        Image.fromarray(rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)).save(folder / name)
    out = tmp_path / "scores.csv"
    assert predict(trained, folder, out, model=tiny_model_name) == 0
    table = pd.read_csv(out)
    assert [Path(p).name for p in table["image"]] == ["b.png", "a.jpg"]  # sorted by path
    assert table["score"].between(0, 1).all()


def test_outputs_in_a_folder_without_write_permission_fail_before_the_work(
        small_folder, tmp_path, capsys, no_work, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked
                        and real_access(path, mode))
    assert main(["train", str(small_folder), "--out", str(locked / "d.safetensors"),
                 *FAST]) == 1
    assert "no permission to write in" in one_line_error(capsys, "train")


def test_predict_to_parquet(trained, small_folder, tmp_path, tiny_model_name):
    out = tmp_path / "scores.parquet"
    assert predict(trained, small_folder, out, model=tiny_model_name) == 0
    assert list(pd.read_parquet(out).columns) == ["image", "score", "label", "distance"]


def test_evaluate_prints_metrics_and_writes_roc(trained, small_folder, tmp_path, capsys,
                                                tiny_model_name):
    roc = tmp_path / "roc.png"
    assert main(["evaluate", str(trained), str(small_folder), "--roc", str(roc), "--quiet",
                 "--model", tiny_model_name]) == 0
    out = capsys.readouterr().out
    for metric in ["roc_auc", "average_precision", "accuracy@0.5", "tpr@fpr=0.01", "eer"]:
        assert metric in out
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and roc.stat().st_size > 5000


def test_featurize_from_csv(tiny_model_name, sample_samples, tmp_path):
    paths, labels = sample_samples
    csv = tmp_path / "data.csv"
    pd.DataFrame({"image": paths[::3], "label": labels[::3]}).to_csv(csv, index=False)
    out = tmp_path / "features.csv"
    assert main(["featurize", str(csv), "--out", str(out), "--model", tiny_model_name,
                 "--quiet"]) == 0
    table = pd.read_csv(out)
    assert len(table) == len(paths[::3])
    assert list(table.columns[:3]) == ["image", "label", "image_block1_0"]  # "auto": block 1 of 1


def test_scores_follow_the_detectors_generated_label(string_label_detector, small_folder,
                                                     tmp_path, tiny_model_name):
    data, detector, model_file = string_label_detector(small_folder)
    assert list(detector[-1].classes_) == ["fake", "real"]  # P(fake) is column 0

    out = tmp_path / "scores.csv"
    assert predict(model_file, small_folder, out, model=tiny_model_name) == 0
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["score"], detector.predict_proba(data[["image"]])[:, 0],
                               rtol=1e-6)
    assert ((table["score"] > 0.5) == (table["label"] == "fake")).all()


# --- clear errors, before the work -----------------------------------------------------------


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 1
    one_line_error(capsys, "train")


def test_unreadable_model_file(tmp_path, small_folder, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert predict(bad, small_folder, tmp_path / "s.csv") == 1
    assert "not a readable detector file" in one_line_error(capsys, "predict")


def write_csv(folder, images, labels=None):
    csv = folder / "data.csv"
    frame = pd.DataFrame({"image": images})
    if labels is not None:
        frame["label"] = labels
    frame.to_csv(csv, index=False)
    return csv


@pytest.mark.parametrize("case, message", [
    ("empty image cell", r"2 row\(s\) have no image: lines \[3, 5\]; fill them in or pass "
                         r"--on-error nan"),
    ("numeric image cell", r"1 row\(s\) name images that do not exist \(first: .*/7\): "
                           r"lines \[3\]"),
    ("bad label", r"1 row\(s\) have a label other than 0 \(real\) or 1 \(generated\): "
                  r"lines \[4\]"),
    ("one class", r"holds only real \(0\) images; training and evaluation need both"),
    ("empty csv", r"data\.csv is empty"),
    ("header only", r"data\.csv has a header but no rows"),
    ("missing output folder", r"cannot write .*/absent/d\.safetensors: the folder "
                              r".*/absent does not exist"),
    ("output is a folder", r"is a folder; give the name of a file to write"),
    ("bogus device", r"--device 'bogus' is not a device; use auto, cpu, cuda"),
    ("missing cuda", r"--device 'cuda': no CUDA device on this machine"),
    ("corrupt cache", r"--cache-dir .*clip_features\.sqlite3"),
])
def test_train_errors_are_one_line_and_found_before_the_work(case, message, small_folder,
                                                             tmp_path, capsys, monkeypatch,
                                                             no_work):
    images = sorted(str(p) for p in small_folder.rglob("*.jpg"))
    data, options = write_csv(tmp_path, images[:4], [0, 1, 0, 1]), []
    out = tmp_path / "d.safetensors"
    if case == "empty image cell":
        data = write_csv(tmp_path, [images[0], "", images[1], " "], [0, 1, 0, 1])
    elif case == "numeric image cell":
        data = write_csv(tmp_path, [images[0], 7], [0, 1])
    elif case == "bad label":
        data = write_csv(tmp_path, images[:3], [0, 1, "x"])
    elif case == "one class":
        data = write_folder(tmp_path / "only-real", classes=("real",))
    elif case == "empty csv":
        data.write_bytes(b"")
    elif case == "header only":
        data.write_text("image,label\n")
    elif case == "missing output folder":
        out = tmp_path / "absent" / "d.safetensors"
    elif case == "output is a folder":
        out = tmp_path
    elif case == "bogus device":
        options = ["--device", "bogus"]
    elif case == "missing cuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        options = ["--device", "cuda"]
    elif case == "corrupt cache":
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "clip_features.sqlite3").write_bytes(b"not sqlite " * 500)
        options = ["--cache-dir", str(tmp_path / "cache")]
    status = main(["train", str(data), "--out", str(out), "--model", "ViT-L-14", *options])
    assert status == 1
    assert re.search(message, one_line_error(capsys, "train"))
    assert not out.is_file()


@pytest.mark.parametrize("modalities, message", [
    ([], r"data\.csv: 1 row\(s\) have no caption \(text\): lines \[3\]; fill them in, pass "
         r"--default-text TEXT to caption them, or --modalities image$"),
    (["--modalities", "text"], r"1 row\(s\) have no caption \(text\): lines \[3\]"),
])
def test_missing_captions_are_named_by_line_before_the_work(modalities, message, small_folder,
                                                            tmp_path, capsys, no_work):
    images = sorted(str(p) for p in small_folder.rglob("*.jpg"))[:4]
    csv = tmp_path / "data.csv"
    pd.DataFrame({"image": images, "text": ["a cat", "", "a dog", "a car"],
                  "label": [0, 1, 0, 1]}).to_csv(csv, index=False)
    out = tmp_path / "d.safetensors"
    assert main(["train", str(csv), "--out", str(out), "--model", "ViT-L-14", *modalities]) == 1
    assert re.search(message, one_line_error(capsys, "train"))
    # A folder has no captions: asking for them is named as such.
    assert main(["featurize", str(small_folder), "--out", str(tmp_path / "f.csv"),
                 "--modalities", "image+text"]) == 1
    err = one_line_error(capsys, "featurize")
    assert "12 of 12 images have no caption (--modalities image+text); pass --default-text" in err


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_a_cpu_is_refused_before_reading_the_data(precision, tmp_path, capsys,
                                                                    monkeypatch, no_work):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = main(["train", str(tmp_path / "not-read"), "--out", str(tmp_path / "d"),
                   "--precision", precision])
    assert status == 1
    assert one_line_error(capsys, "train") == (
        f"clipdet train: error: --precision {precision} needs a CUDA device (no CUDA device on "
        "this machine); use --precision fp32 or int8 on a CPU")
    assert main(["featurize", str(tmp_path / "not-read"), "--out", str(tmp_path / "f.csv"),
                 "--precision", precision, "--device", "cpu"]) == 1
    assert f"--precision {precision} needs a CUDA device (--device cpu)" in one_line_error(
        capsys, "featurize")


def test_evaluate_checks_the_labels_before_loading_the_detector(tmp_path, capsys, no_work):
    data = write_folder(tmp_path / "only-fake", classes=("fake",))
    model_file = tmp_path / "detector.safetensors"
    model_file.write_bytes(b"loading this file would fail")
    assert main(["evaluate", str(model_file), str(data), "--quiet"]) == 1
    assert "holds only generated (1) images" in one_line_error(capsys, "evaluate")


@pytest.mark.parametrize("arguments, message", [
    (["evaluate", "--bootstraps", "-5"], "argument --bootstraps: '-5' is not an integer >= 0"),
    (["predict", "--out", "scores.json"], "argument --out: scores.json: use a .csv or .parquet "
                                          "file"),
    (["evaluate", "--roc", "roc.jpg"], "argument --roc: roc.jpg: use a .png file"),
    (["evaluate", "--threshold", "2"], "argument --threshold: '2' is not a number in [0, 1]"),
    (["train", "--out", "d.safetensors", "--epochs", "0"],
     "argument --epochs: '0' is not an integer >= 1"),
    (["train", "--out", "d.safetensors", "--batch-size", "1"],
     "argument --batch-size: '1' is not 'auto' or an integer >= 2"),
])
def test_invalid_arguments_are_one_line(arguments, message, capsys):
    command, *options = arguments
    files = [] if command == "train" else ["detector.safetensors"]
    with pytest.raises(SystemExit) as info:
        main([command, *files, "data/", *options])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"clipdet {command}: error: {message} (see clipdet {command} --help)"


def test_pretrained_without_model_is_refused(trained, small_folder, tmp_path, capsys):
    assert predict(trained, small_folder, tmp_path / "s.csv", "--pretrained", "x.bin") == 1
    assert "--pretrained needs --model" in one_line_error(capsys, "predict")


def test_missing_images(trained, small_folder, tmp_path, capsys, tiny_model_name):
    image = str(next(small_folder.rglob("*.jpg")))
    csv = write_csv(tmp_path, [image, str(tmp_path / "missing.jpg"), ""])
    out = tmp_path / "scores.csv"
    assert predict(trained, csv, out, model=tiny_model_name) == 1
    err = one_line_error(capsys, "predict")
    assert "1 row(s) have no image: lines [4]" in err and "--on-error nan" in err
    assert not out.exists()
    # With --on-error nan, the bad images get an empty score and label, the others are scored;
    # the warning shows its message, not the file and line that issued it.
    assert predict(trained, csv, out, "--on-error", "nan", model=tiny_model_name) == 0
    table = pd.read_csv(out)
    assert table["score"].notna().tolist() == [True, False, False]
    assert table["label"].notna().tolist() == [True, False, False]
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipdet predict: warning: 2 of 3 images could not be read")
    assert "\n" not in err and ".py:" not in err and "Warning:" not in err


# --- interrupted runs and output files -------------------------------------------------------


def test_interrupted_training_writes_no_detector(small_folder, tmp_path, capsys, monkeypatch,
                                                 tiny_model_name):
    out = tmp_path / "detector.safetensors"
    out.write_bytes(b"the detector of an earlier run")
    original = RobustMLPClassifier.fit

    def interrupted_fit(self, X, y, **fit_params):
        original(self.set_params(max_epochs=1), X, y, **fit_params)  # an epoch ran, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(RobustMLPClassifier, "fit", interrupted_fit)
    status = main(["train", str(small_folder), "--out", str(out), "--model", tiny_model_name,
                   *FAST])
    assert status == 130
    assert capsys.readouterr().err.strip().endswith("clipdet train: interrupted")
    assert out.read_bytes() == b"the detector of an earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.safetensors"]


def interrupt_while_writing(self, path, *args, **kwargs):
    """Stands for a writer stopped by Ctrl-C after writing part of its file."""
    Path(path).write_bytes(b"half a file")
    raise KeyboardInterrupt


@pytest.mark.parametrize("command, output, writer", [
    ("predict", "scores.csv", (pd.DataFrame, "to_csv")),
    ("predict", "scores.parquet", (pd.DataFrame, "to_parquet")),
    ("evaluate", "roc.png", (matplotlib.figure.Figure, "savefig")),
    ("evaluate", "robustness.png", (matplotlib.figure.Figure, "savefig")),
    ("featurize", "features.csv", (pd.DataFrame, "to_csv")),
])
def test_outputs_are_written_whole_or_not_at_all(command, output, writer, trained, small_folder,
                                                 tiny_model_name, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / output
    path.write_bytes(b"the output of an earlier run")
    arguments = {
        "predict": ["predict", str(trained), str(small_folder), "--out", str(path)],
        "evaluate": ["evaluate", str(trained), str(small_folder), "--perturbations", "blur",
                     "--roc" if output == "roc.png" else "--robustness-out", str(path)],
        "featurize": ["featurize", str(small_folder), "--out", str(path)],
    }[command]
    monkeypatch.setattr(*writer, interrupt_while_writing)
    assert main([*arguments, "--model", tiny_model_name, "--quiet"]) == 130
    assert path.read_bytes() == b"the output of an earlier run"
    assert [p.name for p in folder.iterdir()] == [output]  # no temporary file left


# --- the backbone of a saved detector --------------------------------------------------------


def test_model_points_a_detector_at_its_backbone_which_must_match(small_folder, tmp_path, capsys,
                                                                  monkeypatch):
    model_file = tmp_path / "detector.safetensors"
    assert main(["train", str(small_folder), "--out", str(model_file), "--model",
                 write_tiny_model(tmp_path / "tiny", seed=0), *FAST]) == 0
    # The backbone folder moved: --model points the detector at it.
    moved = tmp_path / "moved"
    (tmp_path / "tiny").rename(moved)
    out = tmp_path / "scores.csv"
    assert predict(model_file, small_folder, out, model=f"local-dir:{moved}") == 0
    assert len(pd.read_csv(out)) == 12

    # Other weights behind that path are refused before any image is encoded.
    write_tiny_model(moved, seed=1)
    clear_backbone_cache()

    def forbidden(*args, **kwargs):
        raise AssertionError("images were encoded")

    monkeypatch.setattr(CLIPFeaturizer, "transform", forbidden)
    capsys.readouterr()
    assert predict(model_file, small_folder, out, model=f"local-dir:{moved}") == 1
    err = one_line_error(capsys, "predict")
    assert f"--model local-dir:{moved} is not the backbone {model_file} was trained with" in err
    assert "pass --model and --pretrained" in err


# --- offline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model, message", [
    ("local-dir:tiny-clp", r"cannot load the CLIP model local-dir:.*tiny-clp: the local-dir "
                           r"folder .*/tiny-clp does not exist\.$"),
    ("tiny-clip", r"'tiny-clip' is not one of the \d+ open_clip architectures\.$"),
])
def test_mistyped_models_are_named_without_boilerplate(model, message, small_folder, tmp_path,
                                                       capsys):
    status = main(["train", str(small_folder), "--out", str(tmp_path / "d"), "--model", model,
                   *FAST])
    assert status == 1
    err = one_line_error(capsys, "train")
    assert re.search(message, err) and len(err) < 300


def test_offline_advice_names_the_commands_flags(small_folder, tmp_path, capsys, monkeypatch):
    from sklearn_clipdet._clip import _backbone

    def unreachable(model_name, pretrained):
        raise ConnectionError("cannot reach huggingface.co to download the weights")

    monkeypatch.setattr(_backbone, "_check_download_reachable", unreachable)
    status = main(["train", str(small_folder), "--out", str(tmp_path / "d"), "--model",
                   "ViT-B-32", *FAST])
    assert status == 1
    err = one_line_error(capsys, "train")
    assert "cannot load the CLIP model ViT-B-32 (pretrained openai): ConnectionError" in err
    for advice in ["--model local-dir:FOLDER", "--pretrained FILE", "'Offline use' in the README",
                   "from sklearn_clipdet.testing import write_tiny_model"]:
        assert advice in err
    assert "model_name=" not in err and "pretrained='" not in err  # no Python syntax


# --- help ------------------------------------------------------------------------------------


def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_clipdet.cli", "train", "--help"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0
    assert "usage: clipdet train" in result.stdout


def test_every_option_has_help(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        assert [action.dest for action in command._actions if not action.help] == [], name
    for name in ("predict", "evaluate"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "--model MODEL" in text and "--pretrained PRETRAINED" in text
