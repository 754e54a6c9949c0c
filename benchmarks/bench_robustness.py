"""Encoder cost of robustness_report against scoring every perturbed set with the pipeline.

Prints measured numbers only: for one report over the default perturbations
(plus two levels that leave the images unchanged), the number of image
forward passes (calls of ``CLIPFeaturizer._encode_images``), the images they
encoded and the wall time; then the same for the naive loop that calls
``pipe.predict_proba(perturbation.transform(X))`` for the clean images and for
every level.

Images: the playground photos (half real, half generated) when
``../shared/data/playground`` exists, else random 256 px images. The model is
the tiny test model by default (timings then mostly measure decoding and
perturbing); ``--model ViT-B-32`` uses that architecture with random weights
(speed does not depend on the weights). Run from the repository root::

    python benchmarks/bench_robustness.py
    python benchmarks/bench_robustness.py --model ViT-B-32 --n-images 32
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sklearn_clipdet import CLIPFeaturizer, make_detector
from sklearn_clipdet.evaluation import (
    GaussianBlur,
    Resize,
    default_perturbations,
    robustness_report,
)
from sklearn_clipdet.testing import write_tiny_model

PLAYGROUND = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "playground"


class EncoderCounter:
    """Counts calls of CLIPFeaturizer._encode_images and the images they encode."""

    def __init__(self):
        self.calls = self.images = 0
        self._original = CLIPFeaturizer._encode_images

    def __enter__(self):
        counter = self

        def counting(featurizer, backbone, pixels):
            counter.calls += 1
            counter.images += len(pixels)
            return counter._original(featurizer, backbone, pixels)

        CLIPFeaturizer._encode_images = counting
        return self

    def __exit__(self, *exc_info):
        CLIPFeaturizer._encode_images = self._original


def load_images(n_images):
    if (PLAYGROUND / "real").is_dir() and (PLAYGROUND / "ai").is_dir():
        real = sorted(str(p) for p in (PLAYGROUND / "real").glob("*.jpg"))
        fake = sorted(str(p) for p in (PLAYGROUND / "ai").glob("*.jpg"))
        half = n_images // 2
        return real[:half] + fake[:half], np.array([0] * half + [1] * half), "playground"
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (256, 256, 3)).astype(np.uint8) for _ in range(n_images)]
    return images, np.arange(n_images) % 2, "random 256 px"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or an open_clip architecture")
    parser.add_argument("--n-images", type=int, default=16)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        model = write_tiny_model(folder) if args.model == "tiny" else args.model
        X, y, source = load_images(args.n_images)
        pipe = make_detector(model, None, modalities="image", random_state=0, classifier_params={
            "hidden_layer_sizes": (32,), "max_epochs": 3, "batch_size": 64})
        pipe.fit(X, y)
        perturbations = default_perturbations()
        perturbations["blur"].insert(0, GaussianBlur(0.0))  # identity levels
        perturbations["resize"].insert(0, Resize(1.0))
        n_levels = sum(len(levels) for levels in perturbations.values())

        with EncoderCounter() as report_count:
            start = time.perf_counter()
            robustness_report(pipe, X, y, perturbations)
            report_time = time.perf_counter() - start
        with EncoderCounter() as naive_count:
            start = time.perf_counter()
            pipe.predict_proba(X)
            for levels in perturbations.values():
                for perturbation in levels:
                    pipe.predict_proba(perturbation.transform(X))
            naive_time = time.perf_counter() - start

    print(f"images: {len(X)} ({source}), model: {args.model}, "
          f"perturbation levels: {n_levels} (2 of them identities)")
    print(f"{'':<22}{'encoder calls':>14}{'images encoded':>16}{'per image':>11}{'time s':>9}")
    for name, count, seconds in [("robustness_report", report_count, report_time),
                                 ("naive loop", naive_count, naive_time)]:
        print(f"{name:<22}{count.calls:>14}{count.images:>16}"
              f"{count.images / len(X):>11.1f}{seconds:>9.2f}")
    print(f"images encoded, naive / report: {naive_count.images / report_count.images:.2f}")


if __name__ == "__main__":
    main()
