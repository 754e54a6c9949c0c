"""Train a detector on a folder of real and generated images, then score new images.

The folder holds ``real/`` and ``fake/`` (or ``ai/``, ``0_real/`` + ``1_fake/``, ...)
sub-folders; see :func:`sklearn_clipdet.load_image_folder`. A quarter of the
images is held out to measure the detector.

    python examples/quickstart.py ../shared/data/playground
    python examples/quickstart.py ../shared/data/playground --model local-dir:/path/to/clip

With network access the default backbone (OpenAI ViT-L/14, about 900 MB) is
downloaded once; offline, pass ``--model local-dir:FOLDER`` or
``--pretrained CHECKPOINT`` (see the README).
"""

import argparse

from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklearn_clipdet import load_image_folder, make_detector

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder", help="folder with real and generated images")
parser.add_argument("--model", default="ViT-L-14", help="open_clip model or local-dir:FOLDER")
parser.add_argument("--pretrained", default="openai", help="pretrained tag or checkpoint")
parser.add_argument("--epochs", type=int, default=32)
args = parser.parse_args()

data = load_image_folder(args.folder)
train, test = train_test_split(data, test_size=0.25, stratify=data["label"], random_state=0)

# Images from the wild have no caption: use image features only.
detector = make_detector(
    args.model, args.pretrained, modalities="image", random_state=0, verbose=1,
    classifier_params={"max_epochs": args.epochs},
)
detector.fit(train[["image"]], train["label"])
scores = detector.predict_proba(test[["image"]])[:, 1]  # column 1: label 1, generated
print(f"held-out ROC AUC on {len(test)} images: {roc_auc_score(test['label'], scores):.3f}")
for path, score in list(zip(test["image"], scores))[:5]:
    print(f"{score:.3f}  {path}")
