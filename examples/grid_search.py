"""Choose a detector's settings by how well it detects generators it never saw.

A detector in the wild meets images of generators that were not in its training data,
so settings are best chosen on exactly that. ``LeaveOneGeneratorOut`` gives a grid
search folds that each hold out one generator (and a share of the real images); every
candidate is scored by its ROC AUC on the held-out generators. The chosen model is then
reported generator by generator with ``cross_generator_report``.

Needs the OpenAI ViT-B/16 weights, downloaded on first use; offline, pass
``--model local-dir:FOLDER`` (for instance the real ViT-B/16 image tower that
``../shared/tools/real-clip-weights.sh`` builds). The feature cache encodes every image
once per image-layer setting, however many folds and candidates the search runs.
Images are grouped by the generator in their file name (``gan_1.jpg``,
``diffusion2_3.jpg``; real photos by category), as in the repository's sample images:

    python examples/grid_search.py                      # sample_images/, 16 images
    python examples/grid_search.py ../shared/data/playground --model local-dir:/path/to/clip
"""

import argparse
import tempfile

import pandas as pd
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_clipdet import load_image_folder, make_detector
from sklearn_clipdet.evaluation import LeaveOneGeneratorOut, cross_generator_report

from _shared import SAMPLE_IMAGES, add_backbone_options, run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=SAMPLE_IMAGES, help="labelled images")
    add_backbone_options(parser)
    args = parser.parse_args(argv)

    data = load_image_folder(args.folder, group_from="prefix")
    X, y, groups = data[["image"]], data["label"], data["group"]
    n_generators = groups[y == 1].nunique()
    # One fold per generator; the real images are split by their own groups (categories).
    cv = LeaveOneGeneratorOut(GroupKFold(n_generators))
    with tempfile.TemporaryDirectory() as cache_dir:
        detector = make_detector(args.model, args.pretrained, modalities="image",
                                 cache_dir=cache_dir, random_state=0)
        search = GridSearchCV(
            detector,
            {
                "clipfeaturizer__image_layers": ["auto", "final"],
                "robustmlpclassifier__gamma": [0.3, 0.5, 0.7],
            },
            scoring="roc_auc",
            cv=cv,
            error_score="raise",  # a fit that fails (no weights, bad image) stops the search
            verbose=1,
        ).fit(X, y, groups=groups)

        results = pd.DataFrame(search.cv_results_)
        columns = ["param_clipfeaturizer__image_layers", "param_robustmlpclassifier__gamma",
                   "mean_test_score", "std_test_score"]
        print("ROC AUC on held-out generators, mean over folds:")
        print(results[columns].sort_values("mean_test_score", ascending=False)
              .to_string(index=False))
        print("best:", search.best_params_)

        report = cross_generator_report(search.best_estimator_, X, y, groups, real_cv=cv.real_cv,
                                        random_state=0)
    table = report.pivot(index="held_out", columns="metric", values="value")
    print("\nthe chosen settings, each generator held out in turn:")
    print(table[["roc_auc", "average_precision", "eer"]]
          .to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    run(main)
