"""Detection in the wild, measured by leaving one source out: features, sources, heads.

Every number is measured in this run on real OpenAI CLIP ViT-B/16 image features of six
photoreal-era sources shared in ``../shared/data/features`` (see its README):

========  =====  ================================================================
source    rows   what
========  =====  ================================================================
game        450  quiz-game photos vs generated images, mostly 1600 px JPEG
sdcoco      800  COCO snapshots vs Stable Diffusion 1.x art (content shortcut)
pairs       155  subject-matched photos and generated images, ~1 MP PNG/JPEG
declan       60  one 1024x1536 JPEG pipeline for both classes
adri        337  both classes re-encoded (720 px, JPEG q85)
people      791  portraits, web JPEGs re-encoded q80
========  =====  ================================================================

The headline of every table is the mean AUC over held-out sources
(:func:`sklearn_clipdet.evaluation.cross_source_report`): train on all sources of the pool
but one, score the one left out, average over sources (each weighs the same). Intervals are
95% stratified bootstrap intervals (the mean's resample every held-out source at once).

Sections:

1. features (linear probe): the final embedding, block 8 (the old default), blocks
   6+8+10, plus a native-resolution centre crop's block 6, plus the mean of four
   native-resolution tiles' blocks 6, 8, 10, and the tile count (1 to 4);
2. sources: what training on each source does to the others
   (:func:`sklearn_clipdet.evaluation.source_effects`), on the chosen features;
3. heads on the chosen features and sources: linear probe, RBF SVM, MLPClassifier,
   the default ``RobustMLPClassifier``, its loss and SAM ablations and ``PAPER_RECIPE``
   (the last two heads, the paper's network, take about 15 minutes a fit on 2 cores);
4. tile pooling: the mean of the tiles (shipped) against adding their spread or maximum,
   fewer blocks, more resize blocks, and scoring each tile on its own.

Usage::

    python benchmarks/bench_wild.py [--bootstraps 1000] [--only features,sources,heads,pooling]
    python benchmarks/bench_wild.py --only sources --sources-head default --pools photoreal

Without the shared features it prints why and exits with status 0.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_clipdet import PAPER_RECIPE, RobustMLPClassifier
from sklearn_clipdet.evaluation import cross_source_report, source_effects

FEATURES = Path(__file__).resolve().parents[2] / "shared" / "data" / "features"
FILES = ("wild-dev-vitb16-layers.npz", "wild-dev2-vitb16-layers.npz")
TILES = "wild-dev-vitb16-tiles.npz"
SOURCES = ("game", "sdcoco", "pairs", "declan", "adri", "people")
BLOCKS = (2, 4, 6, 8, 10, 12)  # column blocks of the layer files, 768 each, then "final"
WIDTH = 768


def l2(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def block(view, number):
    start = BLOCKS.index(number) * WIDTH
    return l2(view[..., start:start + WIDTH])


def load_sources():
    """Per source: the resize and native views, the four tiles, and the labels."""
    arrays = {}
    for name in FILES + (TILES,):
        with np.load(FEATURES / name) as data:
            arrays.update({key: data[key] for key in data.files})
    sources = {}
    for source in SOURCES:
        tiles = arrays[f"{source}_tiles"].astype(np.float32)
        # Tiles are stored as blocks 6, 8, 10: normalise each block of each tile.
        tiles = np.concatenate([l2(tiles[..., i * WIDTH:(i + 1) * WIDTH]) for i in range(3)],
                               axis=-1)
        sources[source] = {
            "resize": arrays[f"{source}_resize"].astype(np.float32),
            "native": arrays[f"{source}_native"].astype(np.float32),
            "tiles": tiles,
            "y": arrays[f"{source}_y"].astype(int),
        }
        assert (arrays[f"{source}_names"] == arrays[f"{source}_names"]).all()
    return sources


def feature_sets(data, n_tiles=4):
    resize, native, tiles = data["resize"], data["native"], data["tiles"]
    final = l2(resize[:, -512:])
    three = np.hstack([block(resize, b) for b in (6, 8, 10)])
    tile_mean = tiles[:, :n_tiles].mean(axis=1)
    return {
        "final embedding (paper)": final,
        "block 8 (old default)": block(resize, 8),
        "blocks 6+8+10": three,
        "blocks 6+8+10 + native b6": np.hstack([three, block(native, 6)]),
        "blocks 6+8+10 + tiles": np.hstack([three, tile_mean]),
        "blocks 6+8+10 + native b6 + tiles": np.hstack([three, block(native, 6), tile_mean]),
        "tiles alone": tile_mean,
    }


def stack(sources, names, make):
    X = np.vstack([make(sources[name]) for name in names])
    y = np.concatenate([sources[name]["y"] for name in names])
    groups = np.concatenate([[name] * len(sources[name]["y"]) for name in names])
    return X, y, groups


def probe():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))


def headline(report):
    mean = report.set_index("held_out").loc["mean"]
    per_source = "  ".join(
        f"{row.held_out} {row.auc:.3f}" for row in report.itertuples() if row.held_out != "mean"
    )
    return f"{mean.auc:.3f} [{mean.ci_low:.3f}, {mean.ci_high:.3f}]   {per_source}"


def section_features(sources, pools, args):
    print("\n## 1. Features (standardised logistic regression, C=0.1)\n")
    for pool in pools:
        print(f"pool: {', '.join(pool)}  (mean AUC over held-out sources [95% CI], per source)")
        names = list(feature_sets(sources[pool[0]]))
        for name in names:
            X, y, groups = stack(sources, pool, lambda d, n=name: feature_sets(d)[n])
            report = cross_source_report(probe(), X, y, groups, n_bootstraps=args.bootstraps,
                                         random_state=0)
            print(f"  {name:36s} {headline(report)}")
        for count in (1, 2, 3):
            X, y, groups = stack(
                sources, pool,
                lambda d, c=count: feature_sets(d, n_tiles=c)["blocks 6+8+10 + tiles"])
            report = cross_source_report(probe(), X, y, groups, n_bootstraps=args.bootstraps,
                                         random_state=0)
            print(f"  {f'blocks 6+8+10 + first {count} tile(s)':36s} {headline(report)}")
        print()


def section_sources(sources, pool, feature_name, args):
    head_name = "the default RobustMLPClassifier" if args.sources_head == "default" else "probe"
    print(f"\n## 2. Sources: what training on each does to the others ({feature_name}, "
          f"{head_name})\n")
    print(f"pool: {', '.join(pool)}")
    X, y, groups = stack(sources, pool, lambda d: feature_sets(d)[feature_name])
    head = RobustMLPClassifier(random_state=0) if args.sources_head == "default" else probe()
    effects = source_effects(head, X, y, groups, n_bootstraps=args.bootstraps,
                             random_state=0)
    table = effects.pivot(index="source", columns="scored_on", values="delta")
    print("AUC with the source in training minus without, per scored source:")
    print(table.loc[list(pool), list(pool) + ["mean"]].round(3).to_string())
    means = effects[effects.scored_on == "mean"].set_index("source")
    print("\nmean effect [95% CI]:")
    for source in pool:
        row = means.loc[source]
        print(f"  {source:8s} {row.delta:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]")
    return effects


def heads():
    """The classic heads, then RobustMLPClassifier: its default, ablations, the 0.2 default."""
    return {
        "linear probe (C=0.1)": probe(),
        "RBF SVM": make_pipeline(StandardScaler(), SVC(C=1.0)),
        "MLPClassifier (256,)": make_pipeline(
            StandardScaler(), MLPClassifier((256,), max_iter=200, early_stopping=True,
                                            random_state=0)),
        "RobustMLPClassifier() (default)": RobustMLPClassifier(random_state=0),
        "  loss='bce'": RobustMLPClassifier(loss="bce", random_state=0),
        "  loss='cvar_auc' (the method's)": RobustMLPClassifier(loss="cvar_auc",
                                                                random_state=0),
        "  loss='auc'": RobustMLPClassifier(loss="auc", random_state=0),
        "  sam=False": RobustMLPClassifier(sam=False, random_state=0),
        "  standardize=False": RobustMLPClassifier(standardize=False, random_state=0),
        "  max_epochs=8": RobustMLPClassifier(max_epochs=8, random_state=0),
        "  hidden_layer_sizes=(256,)": RobustMLPClassifier(hidden_layer_sizes=(256,),
                                                           random_state=0),
        "  (1536,)*3, 'cvar_auc' (0.2 default)": RobustMLPClassifier(
            hidden_layer_sizes=(1536, 1536, 1536), loss="cvar_auc", random_state=0),
        "  PAPER_RECIPE": RobustMLPClassifier(**PAPER_RECIPE, random_state=0),
    }


class TileVotes(ClassifierMixin, BaseEstimator):
    """Tiles scored one by one: a probe on the resized image's blocks and a probe on single
    tiles (each tile labelled as its image), the image's score the sum of the resize logit
    and the mean tile logit, each scaled by its spread on the training rows.

    ``X`` is the resize view's blocks (``resize_width`` columns), then the tiles flattened.
    """

    def __init__(self, resize_width, n_tiles=4):
        self.resize_width = resize_width
        self.n_tiles = n_tiles

    def _split(self, X):
        return X[:, :self.resize_width], X[:, self.resize_width:].reshape(
            len(X) * self.n_tiles, -1)

    def _tile_logits(self, tiles):
        return self.tiles_.decision_function(tiles).reshape(-1, self.n_tiles).mean(axis=1)

    def fit(self, X, y):
        resize, tiles = self._split(np.asarray(X))
        self.classes_ = np.unique(y)
        self.resize_ = probe().fit(resize, y)
        self.tiles_ = probe().fit(tiles, np.repeat(y, self.n_tiles))
        self.scales_ = (self.resize_.decision_function(resize).std(),
                        self._tile_logits(tiles).std())
        return self

    def decision_function(self, X):
        resize, tiles = self._split(np.asarray(X))
        return (self.resize_.decision_function(resize) / self.scales_[0]
                + self._tile_logits(tiles) / self.scales_[1])


def section_pooling(sources, pool, args):
    """How the four tiles enter the features: their mean (shipped) against alternatives."""
    print(f"\n## 4. Tile pooling (linear probe unless said; pool: {', '.join(pool)})\n")

    def three(d):
        return np.hstack([block(d["resize"], b) for b in (6, 8, 10)])

    variants = {
        "blocks 6+8+10 + tile mean (shipped)": (
            probe(), lambda d: np.hstack([three(d), d["tiles"].mean(1)])),
        "  + tile standard deviation": (
            probe(), lambda d: np.hstack([three(d), d["tiles"].mean(1), d["tiles"].std(1)])),
        "  + tile maximum": (
            probe(), lambda d: np.hstack([three(d), d["tiles"].mean(1), d["tiles"].max(1)])),
        "  tile mean of blocks 8+10 only": (
            probe(), lambda d: np.hstack([three(d), d["tiles"].mean(1)[:, WIDTH:]])),
        "  resize blocks 4-12 + tile mean": (
            probe(), lambda d: np.hstack([block(d["resize"], b) for b in (4, 6, 8, 10, 12)]
                                         + [d["tiles"].mean(1)])),
        "tiles scored one by one (TileVotes)": (
            TileVotes(3 * WIDTH), lambda d: np.hstack([three(d),
                                                       d["tiles"].reshape(len(d["y"]), -1)])),
    }
    for name, (head, make) in variants.items():
        X, y, groups = stack(sources, pool, make)
        report = cross_source_report(head, X, y, groups, n_bootstraps=args.bootstraps,
                                     random_state=0)
        print(f"  {name:42s} {headline(report)}", flush=True)


def section_heads(sources, pool, feature_name, args):
    print(f"\n## 3. Heads ({feature_name}; pool: {', '.join(pool)})\n")
    X, y, groups = stack(sources, pool, lambda d: feature_sets(d)[feature_name])
    for name, head in heads().items():
        start = time.perf_counter()
        report = cross_source_report(head, X, y, groups, n_bootstraps=args.bootstraps,
                                     random_state=0)
        seconds = (time.perf_counter() - start) / len(pool)
        print(f"  {name:42s} {headline(report)}   ({seconds:.1f} s per fit)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstraps", type=int, default=1000)
    parser.add_argument("--only", default="features,sources,heads,pooling")
    parser.add_argument("--features", default="blocks 6+8+10 + tiles",
                        help="feature set of sections 2 and 3")
    parser.add_argument("--sources-head", choices=["probe", "default"], default="probe",
                        help="head of section 2: the linear probe or RobustMLPClassifier()")
    parser.add_argument("--pools", choices=["all", "photoreal", "both"], default="both",
                        help="source pools of section 2")
    args = parser.parse_args(argv)
    missing = [name for name in FILES + (TILES,) if not (FEATURES / name).is_file()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found in {FEATURES}")
        return 0
    warnings.filterwarnings("ignore", category=UserWarning)
    pd.set_option("display.width", 140)
    sources = load_sources()
    for source in SOURCES:
        y = sources[source]["y"]
        print(f"{source:8s} {len(y):4d} rows ({int(y.sum())} generated)")
    photoreal = tuple(s for s in SOURCES if s != "sdcoco")
    only = args.only.split(",")
    if "features" in only:
        section_features(sources, [SOURCES, photoreal], args)
    if "sources" in only:
        pools = {"all": [SOURCES], "photoreal": [photoreal], "both": [SOURCES, photoreal]}
        for pool in pools[args.pools]:
            section_sources(sources, pool, args.features, args)
    if "heads" in only:
        section_heads(sources, photoreal, args.features, args)
    if "pooling" in only:
        section_pooling(sources, photoreal, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
