"""The shipped detector: its file, and a tiny detector of the same format end to end
(fixture ``tiny_pretrained`` in conftest.py, shared with the command line's tests)."""

import json

import numpy as np
import pytest
from safetensors import safe_open
from sklearn.base import clone

from sklearn_clipdet import load_detector, save_detector
from sklearn_clipdet.exceptions import DetectorFileError
from sklearn_clipdet.pretrained import (
    MIN_PROBE_COSINE,
    PRETRAINED_DETECTOR,
    check_probes,
    load_pretrained,
    probe_images,
    probes_path,
)
from sklearn_clipdet.testing import write_tiny_model


def test_the_tiny_detector_loads_checked_and_scores_as_trained(tiny_pretrained):
    loaded = load_pretrained(model_name=tiny_pretrained["model"], pretrained=None,
                             path=tiny_pretrained["path"])
    images = tiny_pretrained["images"]
    np.testing.assert_allclose(loaded.predict_proba(images),
                               tiny_pretrained["detector"].predict_proba(images), atol=1e-5)
    assert loaded[0].views == "resize+tiles" and loaded[0].backbone_fingerprint is None
    cosines = check_probes(loaded, tiny_pretrained["path"])
    assert cosines.shape == (4,) and cosines.min() > 0.9999


def test_the_loaded_detector_refits_clones_and_saves(tiny_pretrained, tmp_path):
    loaded = load_pretrained(model_name=tiny_pretrained["model"], pretrained=None,
                             path=tiny_pretrained["path"])
    images, labels = tiny_pretrained["images"], tiny_pretrained["labels"]
    refitted = clone(loaded).fit(images, labels)
    assert refitted.predict_proba(images).shape == (len(images), 2)
    save_detector(loaded, tmp_path / "again.safetensors")
    again = load_detector(tmp_path / "again.safetensors", model_name=tiny_pretrained["model"])
    np.testing.assert_allclose(again.predict_proba(images), loaded.predict_proba(images),
                               atol=1e-6)


def test_another_backbone_is_refused_by_name(tiny_pretrained):
    other = write_tiny_model(tiny_pretrained["folder"] / "other", vision_layers=2, seed=1)
    with pytest.raises(DetectorFileError, match=r"is not the one the detector tiny.safetensors "
                                                r"was trained on.*cosine of"):
        load_pretrained(model_name=other, pretrained=None, path=tiny_pretrained["path"])


def test_missing_probes_are_an_error_naming_the_file(tiny_pretrained, tmp_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(tiny_pretrained["path"].read_bytes())
    with pytest.raises(DetectorFileError, match="lone.probes.safetensors"):
        load_pretrained(model_name=tiny_pretrained["model"], pretrained=None, path=lone)


def test_probe_images_are_fixed_and_varied():
    first, second = probe_images(), probe_images()
    assert len(first) == 4 and all(a.shape == (256, 320, 3) for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert len({a.tobytes() for a in first}) == 4
    assert all(a.std() > 30 for a in first)


def test_the_shipped_file_names_its_backbone_views_and_blocks():
    assert PRETRAINED_DETECTOR.is_file() and probes_path(PRETRAINED_DETECTOR).is_file()
    size = PRETRAINED_DETECTOR.stat().st_size + probes_path(PRETRAINED_DETECTOR).stat().st_size
    assert size < 5_000_000
    with safe_open(str(PRETRAINED_DETECTOR), framework="pt") as file:
        header = json.loads(file.metadata()["sklearn_clipdet"])
    featurizer = header["featurizer"]
    assert (featurizer["model_name"], featurizer["pretrained"]) == ("ViT-B-16", "openai")
    assert featurizer["views"] == "resize+tiles" and featurizer["image_layers"] == [6, 8, 10]
    assert featurizer["modalities"] == "image"
    # The file loads without the backbone (which loads on first use) and keeps its head.
    detector = load_detector(PRETRAINED_DETECTOR)
    assert detector[-1].module_.output.in_features == 2 * 3 * 768
    assert 0 < MIN_PROBE_COSINE < 1


def test_a_damaged_probe_file_is_a_detector_file_error(tiny_pretrained, tmp_path):
    from sklearn_clipdet.pretrained import probes_path

    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny_pretrained["path"].read_bytes())
    probes_path(copy).write_bytes(probes_path(tiny_pretrained["path"]).read_bytes()[:40])
    with pytest.raises(DetectorFileError, match="no readable probe features"):
        load_pretrained(model_name=tiny_pretrained["model"], pretrained=None, path=copy)
