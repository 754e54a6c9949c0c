"""Train a detector on labelled images, then score held-out images.

Needs the OpenAI ViT-B/16 weights, downloaded on first use; offline, pass
``--model local-dir:FOLDER`` (for instance the tiny random model of the README's
"Offline use" section, whose scores mean nothing).

    python examples/quickstart.py                       # the repository's sample_images/
    python examples/quickstart.py --train data/train --test data/test

Each folder holds ``real/`` and ``fake/`` (or ``ai/``, ``0_real/`` + ``1_fake/``, ...)
sub-folders; see :func:`sklearn_clipdet.load_image_folder`.
"""

import argparse

from sklearn.metrics import roc_auc_score

from sklearn_clipdet import load_image_folder, make_detector

from _shared import SAMPLE_IMAGES, add_backbone_options, run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=SAMPLE_IMAGES / "train", help="labelled training images")
    parser.add_argument("--test", default=SAMPLE_IMAGES / "test", help="labelled images to score")
    add_backbone_options(parser)
    parser.add_argument("--epochs", type=int, default=32)
    args = parser.parse_args(argv)

    train, test = load_image_folder(args.train), load_image_folder(args.test)
    # Images from the wild have no caption: use image features only.
    detector = make_detector(
        args.model, args.pretrained, modalities="image", random_state=0, verbose=1,
        classifier_params={"max_epochs": args.epochs},
    )
    detector.fit(train[["image"]], train["label"])
    scores = detector.predict_proba(test[["image"]])[:, 1]  # column 1: label 1, generated
    print(f"ROC AUC on {len(test)} held-out images: {roc_auc_score(test['label'], scores):.3f}")
    for path, score in zip(test["image"], scores):
        print(f"{score:.3f}  {path}")


if __name__ == "__main__":
    run(main)
