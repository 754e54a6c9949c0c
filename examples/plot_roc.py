"""Cross-validated ROC curve of the detector, saved as a PNG.

Needs the OpenAI ViT-B/16 weights (downloaded on first use; offline, pass
``--model local-dir:FOLDER``) and matplotlib (``pip install "sklearn-clipdet[plot]"``).

    python examples/plot_roc.py                            # the repository's sample_images/
    python examples/plot_roc.py data/ --out roc.png
"""

import argparse
import sys
import tempfile

try:
    from matplotlib.figure import Figure
except ImportError:
    sys.exit('plot_roc.py needs matplotlib: pip install "sklearn-clipdet[plot]"')
from sklearn.metrics import RocCurveDisplay
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from sklearn_clipdet import load_image_folder, make_detector

from _shared import SAMPLE_IMAGES, add_backbone_options, run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=SAMPLE_IMAGES, help="labelled images")
    add_backbone_options(parser)
    parser.add_argument("--out", default="roc.png", help="PNG file to write")
    args = parser.parse_args(argv)

    data = load_image_folder(args.folder)
    with tempfile.TemporaryDirectory() as cache_dir:  # each image is encoded once, not per fold
        detector = make_detector(args.model, args.pretrained, modalities="image",
                                 cache_dir=cache_dir, random_state=0,
                                 classifier_params={"batch_size": 64})
        scores = cross_val_predict(
            detector, data[["image"]], data["label"], method="predict_proba",
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
        )[:, 1]
    figure = Figure(figsize=(5, 5))
    ax = figure.subplots()
    RocCurveDisplay.from_predictions(data["label"], scores, ax=ax, name="5-fold CV")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"ROC curve written to {args.out}")


if __name__ == "__main__":
    run(main)
