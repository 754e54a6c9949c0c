"""``python -m sklearn_clipdet.cli``: the ``clipdet`` command."""

import sys

from ._entrypoint import main

sys.exit(main())
