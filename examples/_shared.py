"""What the image examples share: the sample images, the backbone options, short failures.

Not an example itself; the scripts beside it import it (Python puts a script's own
folder on the import path).
"""

import sys
from pathlib import Path

from sklearn_clipdet.exceptions import WeightsUnavailableError

#: The 16 labelled images that come with the repository (train/ and test/).
SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "sample_images"


def add_backbone_options(parser):
    """``--model`` and ``--pretrained``, by default the library's OpenAI ViT-B/16."""
    parser.add_argument("--model", default="ViT-B-16", help="open_clip model or local-dir:FOLDER")
    parser.add_argument("--pretrained", default="openai", help="pretrained tag or checkpoint")


def run(main):
    """Call ``main()``; missing weights, files, network or packages end in one line, not a
    traceback."""
    try:
        main()
    except (WeightsUnavailableError, OSError, ImportError) as error:
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")
