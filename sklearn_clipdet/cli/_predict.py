"""``clipdet predict``: the score and label of each image, by a detector file or the shipped
detector, written to a table."""

from . import _options
from ._data import model_input, read_data
from ._model import load_detector
from ._outputs import check_outputs, write_table
from ._run import run
from ._runtime import check_runtime


def add_parser(commands):
    predict = commands.add_parser("predict", help="score images with a trained detector")
    _options.add_detector_arguments(predict, data_help="image folder or CSV file")
    _options.add_runtime_options(predict)
    predict.add_argument(
        "--out", required=True, type=_options.table_file,
        help="output table (.csv or .parquet): image, score (probability that the image is "
        "generated), label (the detector's decision at its threshold) and distance (how far "
        "the image lies from the training data: about 1 for images like it, more for others)",
    )
    predict.set_defaults(run=main)
    return predict


def main(args):
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from ..evaluation import score_images, training_distance

    check_outputs(args.out)
    check_runtime(args)
    data = read_data(args.data, need_labels=False, on_error=args.on_error)
    detector = load_detector(args)
    # Images are encoded once; the scores and the distances both read their features.
    features = run(detector[:-1].transform, model_input(data))
    on_features = Pipeline([("features", "passthrough"), ("classifier", detector[-1])])
    scores, labels = run(score_images, on_features, features, return_labels=True)
    try:
        distance = training_distance(on_features, features)
    except ValueError:  # a classifier that does not standardise has no training spread
        distance = np.full(len(features), np.nan)
    out = pd.DataFrame({"image": data["image"].to_numpy(), "score": scores, "label": labels,
                        "distance": distance})
    write_table(out, args.out)
    print(f"wrote {len(out)} scores (probability that the image is generated) and predicted "
          f"labels to {args.out}")
