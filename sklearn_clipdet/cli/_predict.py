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
        "generated) and label (the detector's decision at its threshold)",
    )
    predict.set_defaults(run=main)
    return predict


def main(args):
    import pandas as pd

    from ..evaluation import score_images

    check_outputs(args.out)
    check_runtime(args)
    data = read_data(args.data, need_labels=False, on_error=args.on_error)
    detector = load_detector(args)
    scores, labels = run(score_images, detector, model_input(data), return_labels=True)
    out = pd.DataFrame({"image": data["image"].to_numpy(), "score": scores, "label": labels})
    write_table(out, args.out)
    print(f"wrote {len(out)} scores (probability that the image is generated) and predicted "
          f"labels to {args.out}")
