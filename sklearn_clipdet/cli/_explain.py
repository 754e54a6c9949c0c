"""``clipdet explain``: where the evidence is, the score of every native-resolution cell of
an image drawn over it (see ``evaluation.tile_scores``)."""

import importlib.util
from pathlib import Path

from ..exceptions import CommandError
from . import _options
from ._model import load_detector
from ._outputs import check_outputs, write_table
from ._run import run
from ._runtime import check_runtime

PLOT_EXTRA = 'pip install "sklearn-clipdet[plot]"'


def add_parser(commands):
    explain = commands.add_parser(
        "explain",
        help="draw the score of every native-resolution cell of an image over it (needs the "
        "plot extra)",
    )
    _options.add_detector_arguments(explain, data_help="image file")
    explain.add_argument(
        "--out", required=True, type=_options.png_file,
        help="the map to write (.png): the image with each cell's score over it, the cells "
        "the detector pools outlined",
    )
    explain.add_argument(
        "--table", type=_options.table_file,
        help="also write the cells (.csv or .parquet): left, top, right, bottom, entropy, "
        "pooled, score",
    )
    _options.add_runtime_options(explain, cache=False, on_error=False)
    explain.set_defaults(run=main)
    return explain


def main(args):
    from ..evaluation import plot_tile_scores, tile_scores

    if importlib.util.find_spec("matplotlib") is None:
        raise CommandError(f"clipdet explain draws with matplotlib, which is not installed; "
                           f"install the plot extra: {PLOT_EXTRA}")
    check_outputs(args.out, args.table)
    check_runtime(args)
    image = Path(args.data)
    if not image.is_file():
        raise CommandError(f"no image file at {image}")
    detector = load_detector(args)
    table = run(tile_scores, detector, str(image))  # refuses a detector without tiles
    run(plot_tile_scores, str(image), table, path=args.out)
    if args.table is not None:
        write_table(table, args.table)
    top = table.loc[table["score"].idxmax()]
    print(f"image score {table.attrs['image_score']:.4f}; {len(table)} cells "
          f"({int(table['pooled'].sum())} pooled by the detector), the highest "
          f"{top['score']:.4f} at left {top['left']}, top {top['top']}, right {top['right']}, "
          f"bottom {top['bottom']}")
    print(f"map written to {args.out}" + (f", cells to {args.table}" if args.table else ""))
