"""Shared fixtures: a tiny offline open_clip model, small stand-ins for the default models,
the playground images and the repository's sample images.

The shared data folder is ``../shared/data`` beside the clone. Set ``CLIPDET_SHARED_DATA``
to another folder to use that one instead; a folder that does not exist runs the suite as
on a clone with nothing beside it (``CLIPDET_SHARED_DATA=/nonexistent python -m pytest``),
where the tests that need the shared data skip.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_clipdet.testing import write_tiny_model

SHARED_DATA_DIR = Path(os.environ.get("CLIPDET_SHARED_DATA")
                       or Path(__file__).resolve().parents[2] / "shared" / "data")
PLAYGROUND_DIR = SHARED_DATA_DIR / "playground"


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``cuda`` where no CUDA device is present (CI has none)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_name(tmp_path_factory):
    """``"local-dir:<folder>"`` of a tiny random open_clip model (32 px images, 16-d embeddings).

    Usable as ``model_name`` of CLIPFeaturizer or of open_clip's own factory functions.
    """
    return write_tiny_model(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_name):
    """Folder holding the tiny model's ``open_clip_config.json`` and safetensors weights."""
    return Path(tiny_model_name.removeprefix("local-dir:"))


@pytest.fixture(scope="session")
def playground_dir():
    """``../shared/data/playground`` (``real/`` and ``ai/`` JPEGs, 60 images up to 4000 px;
    see ``CLIPDET_SHARED_DATA`` above); skips the test when absent. Only tests of the
    playground itself use it: the others run on the sample images."""
    if not (PLAYGROUND_DIR / "real").is_dir() or not (PLAYGROUND_DIR / "ai").is_dir():
        pytest.skip(f"playground images not found at {PLAYGROUND_DIR.resolve()}")
    return PLAYGROUND_DIR


@pytest.fixture(scope="session")
def playground_samples(playground_dir):
    """``(paths, labels)``: the playground JPEG paths (str) and labels, 1 = generated, 0 = real."""
    real = sorted(str(p) for p in (playground_dir / "real").glob("*.jpg"))
    fake = sorted(str(p) for p in (playground_dir / "ai").glob("*.jpg"))
    if not real or not fake:
        pytest.skip(f"playground folder {playground_dir} has no JPEGs")
    return real + fake, np.array([0] * len(real) + [1] * len(fake))


SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_images"


@pytest.fixture(scope="session")
def sample_samples():
    """``(paths, labels)``: the repository's 16 sample JPEGs (``sample_images/train`` and
    ``test``, 320 px, 8 real then 8 generated), labels 1 = generated, 0 = real.

    They need nothing beside the clone: the tests that only need some labelled images use
    these rather than the playground.
    """
    real = sorted(str(p) for p in SAMPLE_DIR.glob("*/real/*.jpg"))
    fake = sorted(str(p) for p in SAMPLE_DIR.glob("*/ai/*.jpg"))
    assert len(real) == len(fake) == 8, "sample_images/ must hold 8 real and 8 generated JPEGs"
    return real + fake, np.array([0] * len(real) + [1] * len(fake))


@pytest.fixture(scope="session")
def sample_dir(sample_samples, tmp_path_factory):
    """One folder of the 16 sample images, laid out as the playground: ``real/`` and ``ai/``
    (copies of ``sample_images/*/real`` and ``*/ai``; names say the generator)."""
    root = tmp_path_factory.mktemp("samples")
    for path, label in zip(*sample_samples):
        folder = root / ("ai" if label else "real")
        folder.mkdir(exist_ok=True)
        shutil.copyfile(path, folder / Path(path).name)
    return root


@pytest.fixture(scope="session")
def size_shortcut_dir(sample_samples, tmp_path_factory):
    """The playground's pixel-size shortcut in small, built from the sample images:
    ``real/`` holds the 8 real ones enlarged to square JPEGs of 640 to 1440 px, ``ai/``
    the 8 generated ones at 320 px, all saved at JPEG quality 90, names kept (so
    ``group_from="prefix"`` still names the generators).
    """
    from PIL import Image

    root = tmp_path_factory.mktemp("size_shortcut")
    paths, labels = sample_samples
    sizes = iter([640, 800, 960, 1120, 1280, 1440, 720, 1040])
    for path, label in zip(paths, labels):
        folder = root / ("ai" if label else "real")
        folder.mkdir(exist_ok=True)
        with Image.open(path) as image:
            image = image.convert("RGB")
            if not label:
                side = next(sizes)
                image = image.resize((side, side), Image.Resampling.BICUBIC)
            image.save(folder / Path(path).name, quality=90)
    return root


@pytest.fixture
def small_models(monkeypatch, tiny_model_name):
    """Swap the default backbone and classifier for small ones, for code written for real use.

    Every CLIPFeaturizer loads the tiny random model whatever its ``model_name`` (so
    ``"ViT-L-14", "openai"`` needs no download), and RobustMLPClassifier's defaults become one
    block of 32 units trained for 3 epochs. Only speed changes: the same code runs.
    """
    from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier
    from sklearn_clipdet._clip._backbone import load_backbone

    def load_tiny(featurizer):
        return load_backbone(
            tiny_model_name, None, device=featurizer.device, precision=featurizer.precision
        )

    monkeypatch.setattr(CLIPFeaturizer, "load_backbone", load_tiny)
    # The classifier's defaults are changed where Python keeps them, on its __init__: a
    # subclass with other defaults would be another class to scikit-learn's clone and to
    # save_detector (which records the class), and the scripts construct the class by name.
    init = RobustMLPClassifier.__init__
    monkeypatch.setattr(init, "__defaults__", ((32,),))
    monkeypatch.setattr(init, "__kwdefaults__", {**init.__kwdefaults__, "max_epochs": 3})


@pytest.fixture
def sample_workdir(tmp_path, monkeypatch):
    """An empty current folder in which ``sample_images/`` holds the repository's samples."""
    (tmp_path / "sample_images").symlink_to(SAMPLE_DIR, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def string_label_detector(tiny_model_name, tmp_path):
    """``fit(folder) -> (data, detector, model_file)``: a tiny detector trained on the
    folder's images with the words "fake"/"real" as labels (``generated_label="fake"``),
    saved with ``save_detector`` to ``model_file``, which the command line then reads."""
    from sklearn_clipdet import load_image_folder, make_detector, save_detector

    def fit(folder):
        data = load_image_folder(folder)
        names = np.where(data["label"] == 1, "fake", "real")
        detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                                 generated_label="fake",
                                 classifier_params=dict(hidden_layer_sizes=(4,), max_epochs=1))
        detector.fit(data[["image"]], names)
        assert detector[-1].generated_label_ == "fake"
        model_file = tmp_path / "strings.safetensors"
        save_detector(detector, model_file)
        return data, detector, model_file

    return fit


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory):
    """A tiny detector in the shipped format (``sklearn_clipdet.pretrained``): detector file
    plus probe features, on a tiny random model with two image blocks.

    A dict: ``model`` (its ``local-dir:``), ``path`` (the detector file), the fitted
    ``detector``, the training ``images`` and ``labels``, and the ``folder`` holding them.
    """
    from sklearn.pipeline import Pipeline

    from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier, save_detector
    from sklearn_clipdet.pretrained import save_probes

    folder = tmp_path_factory.mktemp("pretrained")
    model = write_tiny_model(folder / "model", vision_layers=2)
    images = sorted(str(p) for p in (SAMPLE_DIR / "train").rglob("*.*"))
    labels = np.array([int(Path(p).parent.name == "ai") for p in images])
    assert 0 < labels.sum() < len(labels)
    views = {"modalities": "image", "views": "resize+tiles", "n_tiles": 4, "num_workers": 0}
    detector = Pipeline([
        ("clipfeaturizer", CLIPFeaturizer(model, None, **views)),
        ("robustmlpclassifier", RobustMLPClassifier(hidden_layer_sizes=(), max_epochs=3,
                                                    random_state=0)),
    ]).fit(images, labels)
    path = folder / "tiny.safetensors"
    save_detector(detector, path)
    save_probes(detector, path)
    return {"model": model, "path": path, "detector": detector, "images": images,
            "labels": labels, "folder": folder}
