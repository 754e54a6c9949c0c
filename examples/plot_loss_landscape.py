"""Loss landscapes of the detector's MLP trained with and without SAM.

Sharpness-Aware Minimisation looks for weights whose whole neighbourhood has a
low loss. This script trains the same RobustMLPClassifier twice on synthetic
features (standing in for CLIP embeddings), once with SAM (the default) and
once with plain AdamW (``sam=False``), and draws the filter-normalised loss
landscapes of both around their trained weights, with the same random
directions and the same contour levels, as in the paper's figure.

Runs offline (no CLIP model) and needs matplotlib
(``pip install "sklearn-clipdet[plot]"``). It evaluates the loss about a thousand
times, in small batches: on 2 CPU cores shared with other jobs it took about a minute
with one torch thread, and 17 minutes with torch's default two threads, which wait for
each other on busy cores::

    OMP_NUM_THREADS=1 python examples/plot_loss_landscape.py --out loss_landscape.png
"""

import argparse
import sys

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError:
    sys.exit('plot_loss_landscape.py needs matplotlib: pip install "sklearn-clipdet[plot]"')
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklearn_clipdet import RobustMLPClassifier
from sklearn_clipdet.evaluation import loss_landscape, plot_loss_landscape


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="loss_landscape.png", help="PNG file to write")
    parser.add_argument("--points", type=int, default=21, help="grid points per direction")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-samples", type=int, default=3000, help="synthetic feature rows")
    args = parser.parse_args(argv)

    X, y = make_classification(
        n_samples=args.n_samples, n_features=64, n_informative=24, flip_y=0.05, class_sep=0.8,
        random_state=0,
    )
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

    models = {}
    for name, sam in [("SAM", True), ("plain AdamW", False)]:
        models[name] = RobustMLPClassifier(
            (256, 256), sam=sam, max_epochs=args.epochs, batch_size=256, random_state=0
        ).fit(X_train, y_train)

    # Shared contour levels: from the lower centre loss to the higher edge loss of both.
    preview = {name: loss_landscape(clf, X_train, y_train, n_points=5, random_state=0)
               for name, clf in models.items()}
    low = min(p.center_loss for p in preview.values())
    high = max(p.losses_2d.max() for p in preview.values())
    levels = np.linspace(low, high, 15)

    figure = Figure(figsize=(12, 3.8), layout="constrained")
    ax_1d, ax_sam, ax_plain = figure.subplots(1, 3)
    print(f"{'training':<12} {'test AUC':>8} {'loss at w':>10} {'mean 1-D':>9} "
          f"{'mean 2-D':>9}")
    for (name, clf), ax_2d in zip(models.items(), (ax_sam, ax_plain)):
        landscape = plot_loss_landscape(
            clf, X_train, y_train, n_points=args.points, random_state=0,
            ax=(ax_1d, ax_2d), label=name, levels=levels,
        )
        auc = roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1])
        print(f"{name:<12} {auc:8.4f} {landscape.center_loss:10.4f} "
              f"{landscape.losses_1d.mean():9.4f} {landscape.losses_2d.mean():9.4f}")
    ax_1d.set_title("1-D (same direction)")
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
