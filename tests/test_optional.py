"""Optional dependencies: without the ``plot`` extra, plotting says what to install."""

import sys

import pandas as pd
import pytest

from sklearn_clipdet._utils._optional import import_optional
from sklearn_clipdet.cli import main
from sklearn_clipdet.evaluation import plot_robustness

PLOT_HINT = 'pip install "sklearn-clipdet[plot]"'


@pytest.fixture
def without_matplotlib(monkeypatch):
    """Make every ``import matplotlib...`` fail, as on an install without the plot extra."""
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_import_optional_names_the_extra(without_matplotlib):
    with pytest.raises(ImportError, match="Plotting needs matplotlib") as info:
        import_optional("matplotlib.figure", extra="plot", purpose="Plotting")
    assert PLOT_HINT in str(info.value)
    assert import_optional("json", extra="plot", purpose="Plotting").dumps([1]) == "[1]"


def test_plot_without_matplotlib_names_the_extra(without_matplotlib, tmp_path):
    report = pd.DataFrame({
        "perturbation": ["none", "jpeg"], "parameter": [None, "quality"], "level": [None, 50],
        "metric": ["roc_auc"] * 2, "value": [0.9, 0.8], "ci_low": [None] * 2,
        "ci_high": [None] * 2,
    })
    for path in (tmp_path / "robustness.png", None):
        with pytest.raises(ImportError, match="matplotlib") as info:
            plot_robustness(report, path=path)
        assert PLOT_HINT in str(info.value)
    assert not (tmp_path / "robustness.png").exists()


@pytest.mark.parametrize("plot_option", [["--roc", "roc.png"], ["--robustness-out", "r.png"]])
def test_cli_png_without_matplotlib_fails_before_any_work(
    without_matplotlib, tmp_path, capsys, plot_option
):
    # The detector file does not exist: the missing extra is reported before loading anything.
    status = main(["evaluate", str(tmp_path / "none.safetensors"), str(tmp_path), *plot_option])
    assert status == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("clipdet evaluate: error: writing .png files needs matplotlib")
    assert PLOT_HINT in error and len(error.splitlines()) == 1
