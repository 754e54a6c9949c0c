"""The ``clipdet`` command: featurize, train, predict and evaluate over folders or CSV files.

Data arguments are either a folder laid out as :func:`load_image_folder`
expects (``real/`` and ``fake/`` sub-folders, ...) or a CSV file with an
``image`` column (paths relative to the CSV's folder), optional ``text`` and,
for training and evaluation, ``label`` (1 = generated, 0 = real); see
:func:`~sklearn_clipdet.datasets.load_image_csv`. ``predict`` and
``evaluate`` without a detector file use the shipped detector
(:mod:`sklearn_clipdet.pretrained`).

Each command checks what it can before the long work starts (its arguments,
output paths, device, feature cache, data and labels, the detector file and
its backbone). A failure ends with one line on standard error and a non-zero
exit status: 2 for invalid arguments, 1 for other errors, 130 when
interrupted (Ctrl-C), 143 when terminated (SIGTERM: ``kill``, ``docker stop``,
Slurm). Output files are written whole or not at all, and temporary files
and folders are removed, also when interrupted or terminated.

One module per command holds its options (``add_parser``) beside its work
(``main``); the options several commands share are in ``_options``. Nothing
here imports torch until a command runs, so ``clipdet --help`` is quick.
"""

from ._entrypoint import main

__all__ = ["main"]
