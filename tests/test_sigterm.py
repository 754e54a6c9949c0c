"""SIGTERM (kill, docker stop, Slurm) ends a command as Ctrl-C does: files written whole or
not at all, temporary folders removed, and exit status 143."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from PIL import Image

from sklearn_clipdet.cli import main

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")

# Runs clipdet with one library function replaced by a stand-in that writes half its output
# (when it writes a file), tells the test it is ready, then waits to be terminated.
BLOCKED_COMMAND = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from sklearn_clipdet.cli import main

    ready = Path(sys.argv[1])

    def blocked(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a table")
        ready.write_text("writing")
        time.sleep(300)

    pd.DataFrame.to_csv = blocked
    sys.exit(main(sys.argv[2:]))
""")


def write_folder(root, n_per_class=6):
    rng = np.random.RandomState(0)
    for folder in ("real", "fake"):
        (root / folder).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.randint(0, 256, (40, 40, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{i}.jpg", quality=90)
    return root


def terminate_while_writing(arguments, ready, temporary_folder):
    """Run clipdet with ``arguments`` in a subprocess, send it SIGTERM once its writer has
    started, and return its exit status, its standard error and the names in
    ``temporary_folder`` (its TMPDIR) at that moment."""
    env = {**os.environ, "TMPDIR": str(temporary_folder), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_COMMAND, str(ready), *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the command never started writing: {process.communicate()}")
            time.sleep(0.1)
        during = sorted(p.name for p in temporary_folder.iterdir())
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err, during


@pytest.fixture
def folders(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return write_folder(tmp_path / "data"), out, temporary


def test_sigterm_while_writing_leaves_the_old_file(folders, tmp_path):
    data, out, temporary = folders
    table = out / "audit.csv"
    table.write_bytes(b"the table of an earlier run")
    status, err, _ = terminate_while_writing(
        ["audit", data, "--out", table], tmp_path / "ready", temporary
    )
    assert status == 143, err
    assert err.strip().endswith("clipdet audit: terminated")
    assert table.read_bytes() == b"the table of an earlier run"
    assert [p.name for p in out.iterdir()] == ["audit.csv"]  # no temporary file left


def test_sigterm_during_evaluate_robustness_removes_its_temporary_folder(
    folders, tmp_path, tiny_model_name
):
    data, out, temporary = folders
    detector = tmp_path / "detector.safetensors"
    assert (
        main(
            [
                "train",
                str(data),
                "--out",
                str(detector),
                "--model",
                tiny_model_name,
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "--quiet",
            ]
        )
        == 0
    )
    table = out / "robustness.csv"
    table.write_bytes(b"the table of an earlier run")
    status, err, during = terminate_while_writing(
        [
            "evaluate",
            detector,
            data,
            "--model",
            tiny_model_name,
            "--quiet",
            "--perturbations",
            "blur",
            "--robustness-out",
            table,
        ],
        tmp_path / "ready",
        temporary,
    )
    assert status == 143, err
    assert table.read_bytes() == b"the table of an earlier run"
    assert [p.name for p in out.iterdir()] == ["robustness.csv"]
    # The feature cache of the clean images was there while it wrote, and is gone.
    assert len(during) == 1 and during[0].startswith("clipdet-")
    assert list(temporary.iterdir()) == []


def test_the_sigterm_handler_is_the_callers_again_after_a_command(folders, capsys):
    data, _, _ = folders
    before = signal.getsignal(signal.SIGTERM)
    assert main(["audit", str(data)]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    # Outside the main thread, where no handler can be set, the command runs as it is.
    statuses = []
    worker = threading.Thread(target=lambda: statuses.append(main(["audit", str(data)])))
    worker.start()
    worker.join()
    assert statuses == [0]
    assert signal.getsignal(signal.SIGTERM) is before
