"""Rebuild this folder's images from the playground images they were taken from.

    python sample_images/make_sample.py ../shared/data/playground

Every image is re-encoded the same way (EXIF orientation applied, 320x320
pixels, JPEG quality 90, no metadata), so that pixel size, JPEG quality and
metadata cannot tell the classes apart; the files were chosen so that their
sizes span the same range in both classes.
"""

import argparse
from pathlib import Path

from PIL import Image, ImageOps

SIZE = (320, 320)
QUALITY = 90
# split -> class folder -> source files (relative to the playground folder)
CHOSEN = {
    "train": {
        "real": ["animals_1", "city_6", "food_2", "nature_5", "people_5"],
        "ai": ["gan_2", "diffusion1_3", "diffusion2_2", "diffusion3_2", "diffusion4_1"],
    },
    "test": {
        "real": ["animals_5", "food_1", "people_2"],
        "ai": ["gan_6", "diffusion2_5", "diffusion4_2"],
    },
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("playground", type=Path, help="folder with real/ and ai/ JPEGs")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    for split, classes in CHOSEN.items():
        for label, names in classes.items():
            (here / split / label).mkdir(parents=True, exist_ok=True)
            for name in names:
                with Image.open(args.playground / label / f"{name}.jpg") as source:
                    image = ImageOps.exif_transpose(source).convert("RGB")
                image = image.resize(SIZE, Image.Resampling.LANCZOS, reducing_gap=3.0)
                image.save(here / split / label / f"{name}.jpg", "JPEG", quality=QUALITY)
                print(f"{split}/{label}/{name}.jpg")


if __name__ == "__main__":
    main()
