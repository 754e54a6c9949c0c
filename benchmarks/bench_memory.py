"""Peak memory of decoding large images with 1, 4 and 8 decode threads.

Each setting runs in a fresh process: the tiny random model is loaded and one
small image featurized (so that everything lazy is in place), then a handful of
large images (81 megapixels, small on disk) are featurized with
``num_workers`` threads. Printed: how far the peak resident memory rose above
the resident memory before that call (Linux's ``VmHWM``, reset just before it
through ``/proc/self/clear_refs``), the resident memory it left behind, and the
time it took, for

- baseline: freed memory is not handed back to the operating system
  (``DECODE_BUDGET.release_above = None``, the behaviour before issue 19);
- candidate: the library as it is.

Cases: PNGs on the fast path (the defaults), JPEGs decoded at full size by PIL
(``draft_decode=False``), PNGs cut into native-resolution tiles
(``views="tiles"``), and PNGs of 4.0 megapixels, just under the size that
releases memory; and ``noise81``: the peak of ``GaussianNoise`` on one 81-megapixel
image, as the pre-0.4 whole-image formula (baseline) and in strips (candidate). Run
from the repository root::

    python benchmarks/bench_memory.py             # about 4.5 minutes on 2 cores
    python benchmarks/bench_memory.py --threads 8 --cases png81
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

#: name -> (file suffix, width, height, featurizer settings, number of images)
CASES = {
    "png81": (".png", 9000, 9000, {}, 8),
    "jpeg81": (".jpg", 9000, 9000, {"draft_decode": False}, 8),
    "tiles81": (".png", 9000, 9000, {"views": "tiles"}, 8),
    "png4": (".png", 2000, 2000, {}, 32),
}


def write_images(folder, suffix, width, height, count):
    """``count`` distinct images of ``width`` x ``height``, mostly flat (small on disk)."""
    paths = []
    for i in range(count):
        image = Image.new("RGB", (width, height), (20 * i % 256, 100, 200))
        ImageDraw.Draw(image).rectangle(
            [width // 8, height // 8, width // 2 + i, height // 2], fill=(200, 40, 30)
        )
        path = Path(folder) / f"large{i}{suffix}"
        image.save(path, **({"compress_level": 1} if suffix == ".png" else {"quality": 85}))
        paths.append(str(path))
    return paths


def _memory_mib(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MiB."""
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+) kB", status.read()).group(1)) / 1024


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # VmHWM := VmRSS


def child(model, paths, small, workers, settings, baseline):
    """One measurement, in this (fresh) process; prints a JSON line."""
    from sklearn_clipdet import CLIPFeaturizer
    from sklearn_clipdet._images._decoding import DECODE_BUDGET

    if baseline:
        DECODE_BUDGET.release_above = None
    featurizer = CLIPFeaturizer(
        model_name=model,
        pretrained=None,
        modalities="image",
        num_workers=workers,
        batch_size=4,
        **settings,
    )
    featurizer.fit_transform([small])
    _reset_peak()
    before = _memory_mib("VmRSS")
    start = time.perf_counter()
    features = featurizer.transform(paths)
    seconds = time.perf_counter() - start
    assert features.shape[0] == len(paths)
    print(
        json.dumps(
            {
                "growth": _memory_mib("VmHWM") - before,
                "after": _memory_mib("VmRSS") - before,
                "seconds": seconds,
            }
        )
    )


def noise_child(baseline):
    """Peak growth of adding GaussianNoise to one 81-megapixel image, in this process: the
    whole-image float formula of sklearn-clipdet 0.3 (baseline) or the strips of today."""
    import numpy as np

    from sklearn_clipdet.evaluation import GaussianNoise

    image = Image.new("RGB", (9000, 9000), (120, 80, 40))
    _reset_peak()
    before = _memory_mib("VmRSS")
    if baseline:
        pixels = np.asarray(image, dtype=np.float32)
        pixels += np.random.default_rng([1, 0]).standard_normal(
            pixels.shape, dtype=np.float32) * np.float32(5.0)
        Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    else:
        GaussianNoise(5.0)._perturb(image, 0, 1)
    print(json.dumps({"growth": _memory_mib("VmHWM") - before}))


def measure(model, paths, small, workers, settings, baseline):
    """Run :func:`child` in a fresh interpreter and return its numbers."""
    args = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([model, paths, small, workers, settings, baseline]),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,4,8")
    parser.add_argument("--cases", default=",".join([*CASES, "noise81"]))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--noise-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*json.loads(args.child))
        return
    if args.noise_child:
        noise_child(json.loads(args.noise_child))
        return
    from sklearn_clipdet.testing import write_tiny_model

    threads = [int(n) for n in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        model = write_tiny_model(Path(folder) / "tiny")
        small = str(Path(folder) / "small.png")
        Image.new("RGB", (64, 64), (1, 2, 3)).save(small)
        for case in args.cases.split(","):
            if case == "noise81":
                continue
            suffix, width, height, settings, count = CASES[case]
            paths = write_images(folder, suffix, width, height, count)
            print(f"\n{case}: {count} {suffix[1:]} images of {width}x{height}, {settings}")
            print(
                "threads   baseline: peak growth / left after / time"
                "    candidate: peak growth / left after / time"
            )
            for workers in threads:
                row = [
                    measure(model, paths, small, workers, settings, baseline)
                    for baseline in (True, False)
                ]
                print(
                    f"{workers:7}  "
                    + "    ".join(
                        f"{r['growth']:8.0f} MiB / {r['after']:5.0f} MiB / {r['seconds']:5.1f} s"
                        for r in row
                    )
                )
        if "noise81" in args.cases.split(","):
            growth = [
                json.loads(subprocess.run(
                    [sys.executable, __file__, "--noise-child", json.dumps(baseline)],
                    capture_output=True, text=True, check=True,
                ).stdout.strip().splitlines()[-1])["growth"]
                for baseline in (True, False)
            ]
            print("\nnoise81: GaussianNoise(5) on one 9000x9000 RGB image (robustness_report)")
            print(f"  baseline (whole image in float32) {growth[0]:6.0f} MiB    "
                  f"candidate (strips of rows) {growth[1]:6.0f} MiB")
        print("\nMiB = 2**20 bytes; both columns are above the resident memory before the call")


if __name__ == "__main__":
    main()
