"""Each script of examples/ runs its main path, and ends in one line when it lacks something.

The image examples default to the paper's OpenAI ViT-L/14 weights, which cannot be
downloaded here: the fixture ``small_models`` swaps them (and the classifier's default
network) for small ones, so the scripts run unchanged on the repository's sample images.
"""

import re
import runpy
import sys
from pathlib import Path

import pytest

import sklearn_clipdet.datasets
from sklearn_clipdet import load_image_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    """The scripts import ``_shared`` from their own folder, as ``python examples/x.py`` does."""
    monkeypatch.syspath_prepend(str(EXAMPLES))


def example_main(name):
    """The ``main`` function of ``examples/<name>.py``, without running the script."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"]


def run_as_script(name, args, monkeypatch):
    """Run ``python examples/<name>.py ARGS`` in this process; returns its SystemExit."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / f"{name}.py"), *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    return exit_info.value


def test_every_example_is_tested():
    tested = {"quickstart", "plot_roc", "grid_search", "reproduce_d3", "classifier_on_features",
              "plot_loss_landscape"}
    assert {path.stem for path in EXAMPLES.glob("[!_]*.py")} == tested


def test_quickstart(small_models, capsys):
    example_main("quickstart")(["--epochs", "2"])
    out = capsys.readouterr().out
    assert "ROC AUC on 6 held-out images" in out
    assert out.count("sample_images/test/") == 6


def test_plot_roc(small_models, tmp_path, capsys):
    example_main("plot_roc")(["--out", str(tmp_path / "roc.png")])
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_grid_search_selects_on_held_out_generators(small_models, capsys):
    example_main("grid_search")([])
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if "mean_test_score" in line)
    assert len(lines[header + 1:header + 7]) == 6  # one row per candidate, then the best
    assert lines[header + 7].startswith("best: {'clipfeaturizer__image_layers'")
    report = lines[lines.index("the chosen settings, each generator held out in turn:") + 1:]
    held_out = [line.split()[0] for line in report[2:]]  # after the two header lines
    assert held_out == ["diffusion1", "diffusion2", "diffusion3", "diffusion4", "gan"]


def test_reproduce_d3_with_sample_images_for_d3(small_models, monkeypatch, capsys):
    def sample_d3(split, n_samples):
        folder = "train" if split == "train" else "test"
        frame = load_image_folder(EXAMPLES.parent / "sample_images" / folder, group_from="prefix")
        return frame.assign(text="a photo")

    monkeypatch.setattr(sklearn_clipdet.datasets, "load_d3", sample_d3)
    example_main("reproduce_d3")([])
    out = capsys.readouterr().out
    assert "train: 10 images (5 generated); test: 6" in out
    assert "D3 validation ROC AUC" in out
    assert {"gan vs real", "diffusion2 vs real", "diffusion4 vs real"} <= {
        line.strip().rsplit(":", 1)[0] for line in out.splitlines()
    }


def test_classifier_on_features(small_models, capsys):
    example_main("classifier_on_features")(["--epochs", "3"])
    out = capsys.readouterr().out
    # It trained for the epochs asked (skorch's table, one row each) ...
    assert re.findall(r"^\s+(\d+)\s+\d\.\d{4}", out, re.MULTILINE) == ["1", "2", "3"]
    # ... and learned: its held-out AUC is well above chance (0.71 with the small network).
    auc = float(re.search(r"^test ROC AUC: (\d\.\d{4})$", out, re.MULTILINE).group(1))
    assert auc > 0.65


def test_plot_loss_landscape(small_models, tmp_path, capsys):
    out_file = tmp_path / "landscape.png"
    example_main("plot_loss_landscape")(
        ["--out", str(out_file), "--points", "3", "--epochs", "1", "--n-samples", "200"]
    )
    assert out_file.read_bytes()[:4] == b"\x89PNG"
    assert "plain AdamW" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["quickstart", "plot_roc", "grid_search"])
def test_missing_weights_end_in_one_line(name, monkeypatch, tmp_path):
    missing = tmp_path / "no-such-model"
    error = run_as_script(name, ["--model", f"local-dir:{missing}"], monkeypatch)
    assert isinstance(error.code, str) and len(error.code.splitlines()) == 1
    assert error.code.startswith(f"{name}.py: Could not load the CLIP model")
    assert str(missing) in error.code


def test_reproduce_d3_offline_ends_in_one_line(monkeypatch):
    message = "Couldn't reach 'elsaEU/ELSA_D3' on the Hub (LocalEntryNotFoundError)"

    def offline(split, n_samples):
        raise ConnectionError(message)  # what datasets raises offline, after its retries

    monkeypatch.setattr(sklearn_clipdet.datasets, "load_d3", offline)
    assert run_as_script("reproduce_d3", [], monkeypatch).code == f"reproduce_d3.py: {message}"


def test_plotting_examples_without_matplotlib_end_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    for name in ["plot_roc", "plot_loss_landscape"]:
        error = run_as_script(name, [], monkeypatch)
        assert error.code == f'{name}.py needs matplotlib: pip install "sklearn-clipdet[plot]"'
