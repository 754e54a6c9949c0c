"""``clipdet audit``: whether trivial properties of the images give their labels away."""

import sys
import warnings

from ..exceptions import CommandError
from . import _options
from ._data import read_data
from ._outputs import check_outputs, write_table
from ._run import run


def add_parser(commands):
    audit = commands.add_parser(
        "audit", help="check whether trivial properties (size, format, captions) give away "
        "the labels",
    )
    audit.add_argument("data", help="labelled image folder or CSV file")
    audit.add_argument("--threshold", type=_options.audit_threshold, default=0.8,
                       help="AUC from which a property is flagged, in (0.5, 1] (default 0.8)")
    audit.add_argument("--cv", type=_options.folds, default=5,
                       help="cross-validation folds, at least 2 (default 5)")
    audit.add_argument("--out", type=_options.table_file,
                       help="write the audit table (.csv or .parquet)")
    audit.add_argument("--strict", action="store_true",
                       help="exit with status 1 when a shortcut is flagged (default: warn)")
    audit.set_defaults(run=main)
    return audit


def main(args):
    from ..evaluation import audit_shortcuts

    check_outputs(args.out)
    data = read_data(args.data, need_labels=True, on_error=None)
    table = run(_quiet_audit, audit_shortcuts, data, data["label"].to_numpy(),
                threshold=args.threshold, cv=args.cv)
    print(f"shortcut audit of {len(data)} images: cross-validated AUC of models that see only "
          "one trivial property (0.5 = no information)")
    print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"))
    if args.out:
        write_table(table, args.out)
        print(f"audit table written to {args.out}")
    flagged = table[table["flagged"]]
    if flagged.empty:
        print(f"no shortcut found (no AUC >= {args.threshold})")
        return
    found = ", ".join(f"{p} (AUC {a:.2f})" for p, a in zip(flagged["property"], flagged["auc"]))
    message = (f"shortcut found: {found}; a detector can separate these images without "
               "looking at their content")
    if args.strict:
        raise CommandError(message)
    print(f"clipdet audit: warning: {message}", file=sys.stderr)


def _quiet_audit(audit_shortcuts, *args, **kwargs):
    """The audit without its ShortcutWarning: the command reports flagged rows itself."""
    from ..evaluation import ShortcutWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortcutWarning)
        return audit_shortcuts(*args, **kwargs)
