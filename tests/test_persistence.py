import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.datasets import make_classification

from sklearn_clipdet import (
    RobustMLPClassifier,
    load_detector,
    make_detector,
    persistence,
    save_detector,
)
from sklearn_clipdet.persistence import DetectorFileError


@pytest.fixture(scope="module")
def fitted(tiny_model_name, playground_samples):
    paths, y = playground_samples
    detector = make_detector(
        tiny_model_name, None, modalities="image", device="cpu", random_state=0,
        classifier_params=dict(hidden_layer_sizes=(16, 8), batch_size=64, max_epochs=3),
    ).fit(paths, y)
    return detector, paths


@pytest.fixture()
def saved(fitted, tmp_path):
    detector, _ = fitted
    path = tmp_path / "detector.safetensors"
    save_detector(detector, path)
    return path


def test_round_trip_gives_identical_probabilities(fitted, saved, monkeypatch):
    detector, paths = fitted

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_detector must not unpickle")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded = load_detector(saved)
    assert [name for name, _ in loaded.steps] == [name for name, _ in detector.steps]
    fingerprint = detector[0].load_backbone().fingerprint
    assert loaded[0].get_params() == {**detector[0].get_params(),
                                      "backbone_fingerprint": fingerprint}
    assert loaded[1].get_params(deep=False) == detector[1].get_params(deep=False)
    np.testing.assert_array_equal(loaded.predict_proba(paths), detector.predict_proba(paths))


def test_header_records_versions_and_backbone(fitted, saved):
    with safe_open(str(saved), framework="pt") as file:
        header = json.loads(file.metadata()["sklearn_clipdet"])
    assert header["library_version"] == persistence.__version__
    backbone = header["backbone"]
    assert backbone["model_name"] == fitted[0][0].model_name
    assert len(backbone["fingerprint"]) >= 32 and backbone["image_dim"] == 16
    assert header["classifier"]["classes"] == [0, 1]


def test_version_mismatch_warns(saved, monkeypatch):
    monkeypatch.setattr(persistence, "__version__", "99.0")
    with pytest.warns(UserWarning, match="saved with sklearn-clipdet 0.1.0; this is 99.0"):
        load_detector(saved)


def test_tampered_weights_are_refused(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0xFF  # tensor data sit at the end of the file
    saved.write_bytes(bytes(data))
    with pytest.raises(DetectorFileError, match="checksum"):
        load_detector(saved)


def test_truncated_file_is_refused(saved):
    saved.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(DetectorFileError, match="truncated"):
        load_detector(saved)


def test_not_a_detector_file(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(DetectorFileError):
        load_detector(junk)
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "missing.safetensors")


def _rewrite(path, edit_header=None, edit_tensors=None):
    with safe_open(str(path), framework="pt") as file:
        header = json.loads(file.metadata()["sklearn_clipdet"])
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    if edit_header:
        edit_header(header)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={"sklearn_clipdet": json.dumps(header)})


def test_incomplete_header_is_refused(saved):
    _rewrite(saved, edit_header=lambda h: h["classifier"].pop("classes"))
    with pytest.raises(DetectorFileError, match=r"incomplete; missing \['classes'\]"):
        load_detector(saved)


def test_missing_weights_are_refused(saved):
    def drop_one(tensors):
        name = sorted(tensors)[0]
        del tensors[name]

    _rewrite(saved, edit_tensors=drop_one)
    with pytest.raises(DetectorFileError, match="checksum"):
        load_detector(saved)
    # Even with a matching checksum, the network must find all its weights.
    with safe_open(str(saved), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    def consistent(header):
        header["checksum"] = persistence._checksum(header, tensors)

    _rewrite(saved, edit_header=consistent)
    with pytest.raises(DetectorFileError, match="missing"):
        load_detector(saved)


def test_tampered_header_is_refused(saved):
    def swap_classes(header):
        header["classifier"]["classes"] = header["classifier"]["classes"][::-1]

    _rewrite(saved, edit_header=swap_classes)
    with pytest.raises(DetectorFileError, match="checksum"):
        load_detector(saved)


def test_unknown_setting_is_a_file_error(saved):
    with safe_open(str(saved), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}

    def add_setting(header):
        header["classifier"]["params"]["bogus"] = 1
        header["checksum"] = persistence._checksum(header, tensors)

    _rewrite(saved, edit_header=add_setting)
    with pytest.raises(DetectorFileError, match="invalid classifier settings"):
        load_detector(saved)


def test_cuda_detector_loads_on_a_cpu_machine(saved, monkeypatch):
    with safe_open(str(saved), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}

    def trained_on_gpu(header):
        header["classifier"]["params"]["device"] = "cuda"
        header["checksum"] = persistence._checksum(header, tensors)

    _rewrite(saved, edit_header=trained_on_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="saved for device 'cuda'.*loading on the CPU"):
        loaded = load_detector(saved)
    assert loaded[1].device == "cpu"


def test_classifier_alone_round_trips(tmp_path):
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    labels = np.array(["fake", "real"])[y]
    clf = RobustMLPClassifier(hidden_layer_sizes=(8,), batch_size=32, max_epochs=2,
                              random_state=0).fit(X, labels)
    path = tmp_path / "clf.safetensors"
    save_detector(clf, path)
    loaded = load_detector(path)
    assert isinstance(loaded, RobustMLPClassifier)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_unsaveable_settings_are_named(tmp_path):
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    clf = RobustMLPClassifier(hidden_layer_sizes=(4,), max_epochs=1,
                              random_state=np.random.RandomState(0)).fit(X, y)
    with pytest.raises(ValueError, match="random_state=RandomState"):
        save_detector(clf, tmp_path / "clf.safetensors")
    with pytest.raises(ValueError, match="Pipeline of CLIPFeaturizer then RobustMLPClassifier"):
        save_detector("not a detector", tmp_path / "x.safetensors")


def test_loaded_detector_warns_when_its_backbone_changed(saved, fitted, tmp_path):
    from sklearn_clipdet.testing import write_tiny_model

    detector, paths = fitted
    loaded = load_detector(saved)
    assert loaded[0].backbone_fingerprint == loaded[0].load_backbone().fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same backbone: no warning
        loaded.predict_proba(paths[:2])
    other = write_tiny_model(tmp_path / "other", seed=1)  # same config, other weights
    loaded[0].set_params(model_name=other)
    with pytest.warns(UserWarning, match="not the one the detector was trained with"):
        loaded.predict_proba(paths[:2])
