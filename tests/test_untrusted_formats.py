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


def test_folder_walks_do_not_follow_links_out_of_the_folder(tmp_path):
    from sklearn_clipdet.datasets import list_images, load_image_folder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.png").write_bytes(_encoded("PNG"))
    data = tmp_path / "data"
    for label in ("real", "ai"):
        (data / label).mkdir(parents=True)
        (data / label / f"{label}.png").write_bytes(_encoded("PNG"))
    (data / "real" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (data / "ai" / "stolen.png").symlink_to(elsewhere / "secret.png")
    (data / "real" / "inner.png").symlink_to(data / "ai" / "ai.png")  # inside: kept
    with pytest.warns(UserWarning, match=r"2 links under .* point outside it.*ai/stolen.png"):
        images = list_images(data)
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in images) == [
        "ai/ai.png", "real/inner.png", "real/real.png"]
    assert all("secret" not in p and "elsewhere" not in p for p in images)
    with pytest.warns(UserWarning, match="point outside it"):
        table = load_image_folder(data)
    assert len(table) == 3
