"""``clipdet featurize``: CLIP features of images, written to a table."""

from . import _options
from ._data import check_captions, model_input, read_data
from ._model import choose_modalities, make_featurizer
from ._outputs import check_outputs, write_table
from ._run import run
from ._runtime import check_runtime


def add_parser(commands):
    featurize = commands.add_parser("featurize", help="write CLIP features of images to a table")
    featurize.add_argument("data", help="image folder or CSV file")
    featurize.add_argument("--out", required=True, type=_options.table_file,
                           help="output table (.csv or .parquet)")
    _options.add_model_options(featurize)
    _options.add_runtime_options(featurize)
    featurize.set_defaults(run=main)
    return featurize


def main(args):
    import pandas as pd

    check_outputs(args.out)
    check_runtime(args)
    data = read_data(args.data, need_labels=False, on_error=args.on_error)
    modalities = choose_modalities(args, data)
    check_captions(data, args.data, modalities, args.default_text)
    featurizer = make_featurizer(args, modalities)
    features = run(featurizer.fit_transform, model_input(data))
    frame = pd.DataFrame(features, columns=featurizer.get_feature_names_out())
    frame.insert(0, "image", data["image"].to_numpy())
    if "label" in data:
        frame.insert(1, "label", data["label"].to_numpy())
    write_table(frame, args.out)
    print(f"wrote {features.shape[0]} x {features.shape[1]} features to {args.out}")
