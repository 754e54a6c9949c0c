"""Tune the robust classifier's loss weights with a grid search over the whole pipeline.

Needs the OpenAI ViT-L/14 weights, downloaded on first use; offline, pass
``--model local-dir:FOLDER``. The feature cache makes the search cheap: every image
is encoded once, however many folds and candidates the search runs.

    python examples/grid_search.py                         # the repository's sample_images/
    python examples/grid_search.py data/ --model local-dir:/path/to/clip
"""

import argparse
import tempfile

import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sklearn_clipdet import load_image_folder, make_detector

from _shared import SAMPLE_IMAGES, add_backbone_options, run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=SAMPLE_IMAGES, help="labelled images")
    add_backbone_options(parser)
    parser.add_argument("--epochs", type=int, default=16)
    args = parser.parse_args(argv)

    data = load_image_folder(args.folder)
    with tempfile.TemporaryDirectory() as cache_dir:
        detector = make_detector(
            args.model, args.pretrained, modalities="image", cache_dir=cache_dir,
            random_state=0, classifier_params={"max_epochs": args.epochs, "batch_size": 64},
        )
        search = GridSearchCV(
            detector,
            {
                "robustmlpclassifier__gamma": [0.3, 0.5, 0.7],
                "robustmlpclassifier__sam_rho": [0.0, 0.05],
            },
            scoring="roc_auc",
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
            error_score="raise",  # a fit that fails (no weights, bad image) stops the search
            verbose=1,
        ).fit(data[["image"]], data["label"])

    results = pd.DataFrame(search.cv_results_)
    columns = ["param_robustmlpclassifier__gamma", "param_robustmlpclassifier__sam_rho",
               "mean_test_score", "std_test_score"]
    print(results[columns].sort_values("mean_test_score", ascending=False).to_string(index=False))
    print("best:", search.best_params_)


if __name__ == "__main__":
    run(main)
