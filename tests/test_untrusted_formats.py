"""Only raster formats are decoded: PostScript and other formats PIL knows are refused by
content, whatever the file's name, with an error that names the sample and the format."""

import io

import numpy as np
import pytest
from PIL import Image

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._images._reading import RASTER_FORMATS, open_limited
from sklearn_clipdet.exceptions import ImageDecodeError


def _encoded(image_format):
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM"])
def test_raster_formats_open(image_format):
    assert image_format in RASTER_FORMATS
    assert open_limited(io.BytesIO(_encoded(image_format)), None).format == image_format


def test_postscript_named_jpg_is_refused_without_running_ghostscript(
        tmp_path, tiny_model_name, monkeypatch):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(_encoded("EPS"))
    import subprocess

    def no_programs(*args, **kwargs):
        raise AssertionError(f"a program was started: {args[0]!r}")

    monkeypatch.setattr(subprocess, "Popen", no_programs)
    monkeypatch.setattr(subprocess, "check_call", no_programs)
    for draft_decode in (True, False):
        featurizer = CLIPFeaturizer(tiny_model_name, None, modalities="image",
                                    draft_decode=draft_decode, num_workers=0).fit(None)
        with pytest.raises(ImageDecodeError, match=r"Sample 0 \(path .*holiday.jpg.*EPS format"):
            featurizer.transform([str(path)])
    lenient = CLIPFeaturizer(tiny_model_name, None, modalities="image", on_error="nan",
                             views="resize+tiles", num_workers=0).fit(None)
    with pytest.warns(UserWarning, match="could not be read"):
        features = lenient.transform([str(path), _encoded("PNG")])
    assert np.isnan(features[0]).all() and np.isfinite(features[1]).all()
