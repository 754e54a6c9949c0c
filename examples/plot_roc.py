"""Cross-validated ROC curve of the detector, saved as a PNG.

    python examples/plot_roc.py ../shared/data/playground --model local-dir:CLIP_DIR --out roc.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import RocCurveDisplay  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: E402

from sklearn_clipdet import load_image_folder, make_detector  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder")
parser.add_argument("--model", default="ViT-L-14")
parser.add_argument("--pretrained", default="openai")
parser.add_argument("--out", default="roc.png")
args = parser.parse_args()

data = load_image_folder(args.folder)
detector = make_detector(args.model, args.pretrained, modalities="image", random_state=0,
                         classifier_params={"batch_size": 64})
scores = cross_val_predict(
    detector, data[["image"]], data["label"], method="predict_proba",
    cv=StratifiedKFold(5, shuffle=True, random_state=0),
)[:, 1]
fig, ax = plt.subplots(figsize=(5, 5))
RocCurveDisplay.from_predictions(data["label"], scores, ax=ax, name="5-fold CV")
ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
fig.savefig(args.out, dpi=120, bbox_inches="tight")
print(f"ROC curve written to {args.out}")
