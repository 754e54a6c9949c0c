"""Shared fixtures: a tiny offline open_clip model, small stand-ins for the default models,
the playground images and the repository's sample images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_clipdet.testing import write_tiny_model

PLAYGROUND_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "playground"


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
    """``../shared/data/playground`` (``real/`` and ``ai/`` JPEGs); skips the test when absent."""
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
def string_label_detector(tiny_model_name, tmp_path, monkeypatch):
    """``fit(folder) -> (data, detector, model_file)``: a tiny detector trained on the
    folder's images with the words "fake"/"real" as labels (``generated_label="fake"``), which
    ``persistence.load_detector`` returns for ``model_file``, so that the command line
    scores it as saved."""
    from sklearn_clipdet import load_image_folder, make_detector, persistence

    def fit(folder):
        data = load_image_folder(folder)
        names = np.where(data["label"] == 1, "fake", "real")
        detector = make_detector(tiny_model_name, None, modalities="image", device="cpu",
                                 generated_label="fake",
                                 classifier_params=dict(hidden_layer_sizes=(4,), max_epochs=1))
        detector.fit(data[["image"]], names)
        assert detector[-1].generated_label_ == "fake"
        model_file = tmp_path / "strings.safetensors"
        model_file.write_bytes(b"stands for the detector above")
        monkeypatch.setattr(persistence, "load_detector", lambda path, **kwargs: detector)
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
