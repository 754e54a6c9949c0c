"""Rebuild the shipped detector (``sklearn_clipdet/data/clipdet-vitb16*.safetensors``).

Trains the shipped head on the real OpenAI CLIP ViT-B/16 features of the shared sources that
leaving one source out says help (``benchmarks/bench_wild.py``, section 2), writes the detector
file and the features of the probe images beside it, and prints what it measured:

1. that this version's featurizer reproduces the shared features (cosine per image, on the
   ``../shared/data/declan`` images: the resize and tiles views);
2. the leave-one-source-out AUC of the shipped recipe against a linear probe on the same
   features (the photoreal sources, each held out once), per source with 95% bootstrap
   intervals;
3. the shipped detector's AUC on the shared sources it was not trained on;
4. the files' sizes and SHA-256 (the same on every run), the load and probe-check times.

Seeded and deterministic on the CPU. The shared features were made with a local, dequantized
copy of the OpenAI weights (``../shared/tools/real-clip-weights.sh``); the file names the
original (``ViT-B-16`` / ``openai``), which users load through open_clip, and the probe
features let either be checked at load time. Usage::

    python benchmarks/build_pretrained.py --model local-dir:DIR [--out FILE]
"""

import argparse
import hashlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_wild import FEATURES, SOURCES, feature_sets, load_sources, probe, stack
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier, load_detector, save_detector
from sklearn_clipdet._clip._backbone import _cache, _canonical_source, load_backbone
from sklearn_clipdet.evaluation import bootstrap_metric, cross_source_report, training_distance
from sklearn_clipdet.pretrained import (
    PRETRAINED_DETECTOR,
    load_pretrained,
    probes_path,
    save_probes,
)

#: The sources the shipped head trains on: those that helped detection on every other
#: photoreal source when the shipped head was trained with them (bench_wild.py --only sources
#: --sources-head default --pools photoreal; mean effect [95% CI]): game +0.079 [+0.054,
#: +0.104], adri +0.083 [+0.055, +0.107], pairs +0.044 [+0.019, +0.068], declan +0.015
#: [+0.002, +0.029]. people (+0.010 [-0.016, +0.036]) helped two sources and hurt two;
#: sdcoco (art against snapshots) misleads on photoreal sets (../shared/data/features/README).
TRAINING_SOURCES = ("game", "pairs", "declan", "adri")
PHOTOREAL = ("game", "pairs", "declan", "adri", "people")
FEATURES_NAME = "blocks 6+8+10 + tiles"
#: The shipped head: RobustMLPClassifier's defaults (one linear layer on standardised
#: features, CVaR loss, SAM), chosen by bench_wild.py section 3.
HEAD = {"random_state": 0}
FEATURIZER = {"modalities": "image", "image_layers": [6, 8, 10], "views": "resize+tiles",
              "n_tiles": 4}
ORIGINAL = ("ViT-B-16", "openai")


def featurize_declan(model):
    """The declan images through this version's featurizer, in the shared file's row order."""
    with np.load(FEATURES / "wild-dev-vitb16-layers.npz") as data:
        names = data["declan_names"]
    folder = FEATURES.parent / "declan"
    images = [np.asarray(ImageOps.exif_transpose(Image.open(folder / n)).convert("RGB"))
              for n in names]
    featurizer = CLIPFeaturizer(model, None, **FEATURIZER).fit(None)
    return featurizer.transform([str(folder / n) for n in names]), images


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def save_as_original(detector, model, path):
    """save_detector, with ``model``'s weights standing for ViT-B-16/openai in this process.

    The shared features come from a local copy of the OpenAI weights; the file names the
    original, which save_detector would otherwise download to fingerprint.
    """
    backbone = load_backbone(model, None, device="cpu")
    key = (*_canonical_source(*ORIGINAL), "cpu", "fp32")
    local_files, backbone.source_files = backbone.source_files, None  # as a hub model's
    _cache[key] = backbone
    try:
        save_detector(detector, path)
    finally:
        _cache.pop(key, None)
        backbone.source_files = local_files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=f"local-dir:{Path.home()}/.cache/clipdet-real-vitb16")
    parser.add_argument("--out", default=str(PRETRAINED_DETECTOR))
    args = parser.parse_args(argv)
    folder = Path(args.model.removeprefix("local-dir:"))
    if not (folder / "open_clip_model.safetensors").is_file() or not FEATURES.is_dir():
        print(f"skipped: needs the real weights in {folder} (../shared/tools/"
              f"real-clip-weights.sh) and the shared features in {FEATURES}")
        return 0
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.manual_seed(0)
    sources = load_sources()

    print("## 1. This featurizer against the shared features (declan, 60 images)")
    computed, _ = featurize_declan(args.model)
    shared = feature_sets(sources["declan"])[FEATURES_NAME]
    per_view = {"resize": slice(0, 2304), "tiles": slice(2304, 4608)}
    for view, columns in per_view.items():
        c = cosines(computed[:, columns], shared[:, columns])
        print(f"  {view:7s} cosine per image: min {c.min():.5f}, median {np.median(c):.5f}")

    print(f"\n## 2. Leave one source out ({FEATURES_NAME}; photoreal sources)")
    X, y, groups = stack(sources, PHOTOREAL, lambda d: feature_sets(d)[FEATURES_NAME])
    for name, head in (("linear probe (C=0.1)", probe()),
                       ("shipped head", RobustMLPClassifier(**HEAD))):
        report = cross_source_report(head, X, y, groups, n_bootstraps=1000, random_state=0)
        print(f"  {name}:")
        for row in report.itertuples():
            print(f"    {row.held_out:8s} {row.auc:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]  "
                  f"({row.n_test_real} real, {row.n_test_generated} generated)")

    print(f"\n## 3. The shipped detector: trained on {', '.join(TRAINING_SOURCES)}")
    X, y, _ = stack(sources, TRAINING_SOURCES, lambda d: feature_sets(d)[FEATURES_NAME])
    start = time.perf_counter()
    classifier = RobustMLPClassifier(**HEAD).fit(X, y)
    print(f"  {len(y)} rows ({int(y.sum())} generated), fitted in "
          f"{time.perf_counter() - start:.1f} s")
    detector = Pipeline([
        ("clipfeaturizer", CLIPFeaturizer(*ORIGINAL, **FEATURIZER).fit(None)),
        ("robustmlpclassifier", classifier),
    ])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_as_original(detector, args.model, out)
    local = Pipeline([("clipfeaturizer", CLIPFeaturizer(args.model, None, **FEATURIZER).fit(None)),
                      ("robustmlpclassifier", classifier)])
    save_probes(local, out)

    print("\n## 4. The shipped detector on the shared sources it was not trained on")
    for source in SOURCES:
        if source in TRAINING_SOURCES:
            continue
        rows = feature_sets(sources[source])[FEATURES_NAME]
        labels = sources[source]["y"]
        auc, low, high = bootstrap_metric(roc_auc_score, labels,
                                          classifier.predict_proba(rows)[:, 1], random_state=0)
        print(f"  {source:8s} {auc:.3f} [{low:.3f}, {high:.3f}]  ({len(labels)} images)")
    print("  distance from the training rows (evaluation.training_distance), median and 95th "
          "percentile:")
    on_features = Pipeline([("features", "passthrough"), ("classifier", classifier)])
    for source in SOURCES:
        distance = training_distance(on_features, feature_sets(sources[source])[FEATURES_NAME])
        trained = "trained on" if source in TRAINING_SOURCES else "never seen"
        print(f"    {source:8s} {np.median(distance):.2f}  {np.percentile(distance, 95):.2f}  "
              f"({trained})")

    print("\n## 5. The files")
    for path in (out, probes_path(out)):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        print(f"  {path.name}: {path.stat().st_size / 1e6:.3f} MB, sha256 {digest}...")
    start = time.perf_counter()
    load_detector(out, model_name=args.model)
    print(f"  load_detector: {time.perf_counter() - start:.3f} s")
    start = time.perf_counter()
    loaded = load_pretrained(model_name=args.model, pretrained=None, path=out)
    print(f"  load_pretrained (loads the backbone, encodes the probes): "
          f"{time.perf_counter() - start:.2f} s")
    np.testing.assert_allclose(loaded[-1].predict_proba(X), classifier.predict_proba(X),
                               atol=1e-6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
