"""The README's and the user guide's code runs as written.

Every ```python block of README.md and docs/*.md runs, the blocks of one page in order in
one namespace (as a reader runs them), in an empty folder where ``sample_images/`` holds
the repository's sample images. The backbone and the classifier are swapped for small ones
(fixture ``small_models``): the snippets' ``"ViT-L-14", "openai"`` cannot be downloaded here,
and only speed would differ. The README's two main commands run through ``clipdet``'s entry
point the same way.
"""

import re
import shlex
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from sklearn_clipdet.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: Pages whose blocks cannot run here, and why. Keep this short.
NOT_RUNNABLE = {
    "docs/distributed.md": "needs a Dask cluster with GPU workers and storage shared under "
    "/shared; tests/test_distributed.py runs the same functions on a LocalCluster",
}

#: Files a page's blocks must have written (a check that they did their job).
WRITES = {
    "README.md": ["detector.safetensors"],
    "docs/user_guide.md": ["detector.safetensors"],
    "docs/evaluation.md": ["robustness.png"],
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```",
                    re.MULTILINE | re.DOTALL)


def code_blocks(page, language):
    """``(line, code)`` of each fenced block of ``language`` in ``page``, dedented."""
    text = page.read_text()
    return [
        (text.count("\n", 0, match.start("body")) + 1, textwrap.dedent(match["body"]))
        for match in _FENCE.finditer(text) if match["lang"] == language
    ]


def _name(page):
    return page.relative_to(ROOT).as_posix()


RUNNABLE = [
    page for page in PAGES if code_blocks(page, "python") and _name(page) not in NOT_RUNNABLE
]


def test_the_not_runnable_list_names_pages_with_python_blocks():
    for name in NOT_RUNNABLE:
        assert code_blocks(ROOT / name, "python"), f"{name} has no python block: drop it"
    assert {_name(page) for page in RUNNABLE} >= set(WRITES)


@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_python_blocks_run_as_written(page, small_models, sample_workdir):
    namespace = {"__name__": "__main__"}
    for line, code in code_blocks(page, "python"):
        exec(compile(code, f"{_name(page)}, block at line {line}", "exec"), namespace)
    for name in WRITES.get(_name(page), []):
        assert (sample_workdir / name).is_file(), f"{_name(page)} did not write {name}"


def _readme_commands():
    """The README's first shell block: each line that is not a comment is one command."""
    (_, block), *_ = code_blocks(README, "bash")
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_main_command_installs_the_core_then_scores_with_the_shipped_detector(
    tiny_pretrained, sample_workdir, capsys, monkeypatch
):
    """The shipped detector's backbone (OpenAI ViT-B/16) cannot be downloaded here: a tiny
    detector in the shipped format, with its tiny backbone, stands in for both."""
    from sklearn_clipdet import CLIPFeaturizer, pretrained
    from sklearn_clipdet._clip._backbone import load_backbone

    monkeypatch.setattr(pretrained, "PRETRAINED_DETECTOR", tiny_pretrained["path"])
    monkeypatch.setattr(CLIPFeaturizer, "load_backbone", lambda featurizer: load_backbone(
        tiny_pretrained["model"], None, device=featurizer.device,
        precision=featurizer.precision))
    first, _ = _readme_commands()
    steps = [shlex.split(step) for step in first.split("&&")]
    installs = [step for step in steps if step[:2] == ["pip", "install"]]
    assert installs and not any("[" in word for step in installs for word in step)  # no extras
    commands = [step[1:] for step in steps if step[0] == "clipdet"]
    assert [command[0] for command in commands] == ["predict"]
    assert len([word for word in commands[0][1:] if not word.startswith("-")]) == 2  # DATA OUT
    assert main(commands[0]) == 0, capsys.readouterr().err
    scores = pd.read_csv(commands[0][commands[0].index("--out") + 1])
    tested = sorted(path.name for path in (ROOT / "sample_images" / "test").rglob("*.jpg"))
    assert sorted(Path(path).name for path in scores["image"]) == tested
    assert scores["score"].between(0, 1).all()


def test_ci_runs_the_readme_test_command():
    _, test_command = _readme_commands()
    assert "[dev]" in test_command and "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_sample_images_differ_only_in_content():
    """The README's sample set: both classes in train/ and test/, one pixel size and JPEG
    encoding for all (so that trivial properties give nothing away), small, licensed."""
    from PIL import Image

    from sklearn_clipdet import load_image_folder

    sample = ROOT / "sample_images"
    for split, per_class in [("train", 5), ("test", 3)]:
        labels = load_image_folder(sample / split)["label"]
        assert labels.value_counts().to_dict() == {0: per_class, 1: per_class}
    files = sorted(sample.rglob("*.jpg"))
    for path in files:
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (320, 320), "RGB"), path
            assert not image.getexif() and "icc_profile" not in image.info, path
    assert sum(path.stat().st_size for path in files) < 1_000_000
    assert "MIT License" in (sample / "LICENSE").read_text()
