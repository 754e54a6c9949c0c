import json
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.datasets import make_classification

import sklearn_clipdet
from sklearn_clipdet import (
    CLIPFeaturizer,
    RobustMLPClassifier,
    load_detector,
    make_detector,
    persistence,
    save_detector,
)
from sklearn_clipdet.persistence import DetectorFileError


@pytest.fixture(scope="module")
def fitted(tiny_model_name, sample_samples):
    paths, y = sample_samples
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


@pytest.fixture()
def load(tiny_model_name):
    """load_detector pointed at the tiny backbone, which a file alone may not choose."""

    def load(path, **kwargs):
        return load_detector(path, model_name=tiny_model_name, **kwargs)

    return load


def test_round_trip_gives_identical_probabilities(fitted, saved, load, monkeypatch):
    detector, paths = fitted

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_detector must not unpickle")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded = load(saved)
    assert [name for name, _ in loaded.steps] == [name for name, _ in detector.steps]
    fingerprint = detector[0].load_backbone().fingerprint
    assert loaded[0].get_params() == {**detector[0].get_params(), "cache_dir": None,
                                      "backbone_fingerprint": fingerprint,
                                      "image_layers": [1]}  # "auto" as it resolved
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


def test_version_mismatch_warns(saved, load, monkeypatch):
    monkeypatch.setattr(persistence, "__version__", "99.0")
    ours = re.escape(sklearn_clipdet.__version__)
    with pytest.warns(UserWarning, match=f"saved with sklearn-clipdet {ours}; this is 99.0"):
        load(saved)


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


def test_unknown_setting_is_a_file_error(saved, load):
    with safe_open(str(saved), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}

    def add_setting(header):
        header["classifier"]["params"]["bogus"] = 1
        header["checksum"] = persistence._checksum(header, tensors)

    _rewrite(saved, edit_header=add_setting)
    with pytest.raises(DetectorFileError, match="invalid classifier settings"):
        load(saved)


def test_cuda_detector_loads_on_a_cpu_machine(saved, load, monkeypatch):
    with safe_open(str(saved), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}

    def trained_on_gpu(header):
        header["classifier"]["params"]["device"] = "cuda"
        header["checksum"] = persistence._checksum(header, tensors)

    _rewrite(saved, edit_header=trained_on_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="saved for device 'cuda'.*loading on the CPU"):
        loaded = load(saved)
    assert loaded[1].device == "cpu"


def test_a_featurizer_saved_on_a_missing_gpu_loads_on_the_cpu(saved, load, monkeypatch):
    """Issue 19 item 13: the featurizer's saved device is checked like the classifier's."""
    _craft(saved, edit_header=lambda header: header["featurizer"].update(device="cuda:7"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="saved for device 'cuda:7'.*loading on the CPU"):
        loaded = load(saved)
    assert (loaded[0].device, loaded[1].device) == ("cpu", "cpu")


@pytest.mark.parametrize("bad", ["banana", "meta", "cuda:x"])
def test_a_featurizer_device_that_is_no_device_is_a_file_error(saved, load, bad):
    _craft(saved, edit_header=lambda header: header["featurizer"].update(device=bad))
    with pytest.raises(DetectorFileError, match="saved device"):
        load(saved)


def test_fp16_features_are_computed_in_fp32_on_a_cpu_machine(saved, load, monkeypatch):
    def trained_on_gpu_in_fp16(header):
        header["classifier"]["params"]["device"] = "cuda"
        header["featurizer"].update(device="cuda", precision="fp16")

    _craft(saved, edit_header=trained_on_gpu_in_fp16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="computes its features in fp16.*computed in fp32"):
        loaded = load(saved)
    assert (loaded[0].device, loaded[0].precision) == ("cpu", "fp32")
    assert loaded[0].backbone_fingerprint is None  # it covers the precision: not comparable


def test_a_file_chooses_no_limits_threads_or_devices_of_its_own(saved, load):
    def loosened(header):
        header["featurizer"].update(max_image_pixels=None, max_image_bytes=None,
                                    num_workers=10**6, verbose=1)

    _craft(saved, edit_header=loosened)
    featurizer = load(saved)[0]
    defaults = CLIPFeaturizer()
    for name in ("max_image_pixels", "max_image_bytes", "num_workers", "verbose"):
        assert getattr(featurizer, name) == getattr(defaults, name)
    _craft(saved, edit_header=lambda header: header["classifier"]["params"].update(
        device="meta"))
    with pytest.raises(DetectorFileError, match="saved device 'meta' is not one to run on"):
        load(saved)


@pytest.mark.parametrize("buffer", ["input_scale", "hidden.1.running_var"])
def test_scales_that_would_give_nan_scores_are_refused(saved, load, buffer):
    def zeroed(tensors):
        name = f"classifier.module.{buffer}"
        tensors[name] = torch.full_like(tensors[name], -1.0 if "running_var" in name else 0.0)

    _craft(saved, edit_tensors=zeroed)
    with pytest.raises(DetectorFileError, match="not positive"):
        load(saved)


def test_an_interrupted_classifier_is_not_saved(tmp_path):
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    clf = RobustMLPClassifier((4,), max_epochs=1, random_state=0).fit(X, y)
    clf.interrupted_ = True  # as a KeyboardInterrupt during its training leaves it
    with pytest.raises(ValueError, match="interrupted"):
        save_detector(clf, tmp_path / "half.safetensors")
    assert not (tmp_path / "half.safetensors").exists()


def test_auto_layers_are_saved_as_the_blocks_they_select(saved):
    with safe_open(str(saved), framework="pt") as file:
        header = json.loads(file.metadata()["sklearn_clipdet"])
    assert header["featurizer"]["image_layers"] == [1]  # "auto" on the tiny model's 1 block
    assert "num_workers" not in header["featurizer"] and "cache_dir" not in header["featurizer"]


def test_classifier_alone_round_trips(tmp_path):
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    labels = np.array(["fake", "real"])[y]
    clf = RobustMLPClassifier(hidden_layer_sizes=(8,), batch_size=32, max_epochs=2,
                              generated_label="fake", random_state=0).fit(X, labels)
    path = tmp_path / "clf.safetensors"
    save_detector(clf, path)
    loaded = load_detector(path)
    assert isinstance(loaded, RobustMLPClassifier)
    assert loaded.generated_label == "fake" and loaded.generated_label_ == "fake"
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


def test_loaded_detector_warns_when_its_backbone_changed(saved, fitted, load, tmp_path):
    from sklearn_clipdet.testing import write_tiny_model

    detector, paths = fitted
    loaded = load(saved)
    assert loaded[0].backbone_fingerprint == loaded[0].load_backbone().fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same backbone: no warning
        loaded.predict_proba(paths[:2])
    other = write_tiny_model(tmp_path / "other", seed=1)  # same config, other weights
    loaded[0].set_params(model_name=other)
    with pytest.warns(UserWarning, match="not the one the detector was trained with"):
        loaded.predict_proba(paths[:2])


def _craft(path, edit_header=None, edit_tensors=None):
    """Rewrite ``path`` as a malicious author would: edited, with a matching checksum."""

    def edit_and_sign(header, tensors):
        if edit_header:
            edit_header(header)
        if edit_tensors:
            edit_tensors(tensors)
        header["checksum"] = persistence._checksum(header, tensors)

    with safe_open(str(path), framework="pt") as file:
        header = json.loads(file.metadata()["sklearn_clipdet"])
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    edit_and_sign(header, tensors)
    save_file(tensors, str(path), metadata={"sklearn_clipdet": json.dumps(header)})


def _set(section, key, value):
    def edit(header):
        target = header if section is None else header[section]
        target[key] = value

    return edit


def _set_param(key, value):
    def edit(header):
        header["classifier"]["params"][key] = value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _set("classifier", "classes", [1, 0]),
        _set("classifier", "classes", [0, 0]),
        _set("classifier", "classes", [0, 1, 2]),
        _set("classifier", "classes", []),
        _set("classifier", "classes", [0, "1"]),
        _set("classifier", "classes", [False, 1]),
        _set("classifier", "classes", [[0], [1]]),
        _set("classifier", "classes", [0.5, float("nan")]),
        _set("classifier", "classes_dtype", "garbage"),
        _set("classifier", "classes_dtype", "<M8[ns]"),
        _set("classifier", "classes_dtype", "<U999999999999"),
        _set("classifier", "classes_dtype", "<U1"),  # 0 and 1 would become "0" and "1"
        _set(None, "format_version", True),
        _set(None, "format_version", -1),
        _set(None, "format_version", 0),
        _set(None, "format_version", 1.0),
        _set(None, "steps", ["a__b", "c"]),
        _set(None, "steps", ["same", "same"]),
        _set("classifier", "n_features_in", True),
        _set("classifier", "n_features_in", -16),
        _set("classifier", "n_features_in", 10**40),
        _set("classifier", "feature_names_in", ["only one"]),
        _set_param("hidden_layer_sizes", [-5, 8]),
        _set_param("hidden_layer_sizes", [[[16]], 8]),
        _set_param("hidden_layer_sizes", True),
        _set_param("callbacks", ["x"]),
        _set_param("dropout", 7),
        _set_param("module__dropout", 0.9),
        _set_param("iterator_train__num_workers", 4),
        _set_param("train_split", "ValidSplit(5)"),
        _set_param("generated_label", "not a class"),
    ],
)
def test_crafted_settings_are_file_errors(saved, load, edit):
    _craft(saved, edit_header=edit)
    with pytest.raises(DetectorFileError):
        load(saved)


def test_deeply_nested_header_is_a_file_error(saved, load):
    with safe_open(str(saved), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    header = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    save_file(tensors, str(saved), metadata={"sklearn_clipdet": header})
    with pytest.raises(DetectorFileError, match="not valid JSON"):
        load(saved)


@pytest.mark.parametrize(
    "edit_tensors",
    [
        lambda t: t.update({name: v.double() for name, v in t.items() if v.is_floating_point()}),
        lambda t: t.update({name: torch.full_like(v, float("nan")) for name, v in t.items()
                            if v.is_floating_point()}),
        lambda t: t.update({"not.the.classifier": torch.zeros(2)}),
    ],
    ids=["float64", "nan", "stray"],
)
def test_crafted_weights_are_file_errors(saved, load, edit_tensors):
    _craft(saved, edit_tensors=edit_tensors)
    with pytest.raises(DetectorFileError):
        load(saved)


def test_oversized_network_is_refused_before_it_is_built(saved, load, monkeypatch):
    def never(self):
        raise AssertionError("the network must not be built before the shapes are checked")

    monkeypatch.setattr(RobustMLPClassifier, "initialize", never)
    _craft(saved, edit_header=_set_param("hidden_layer_sizes", [30000, 30000]))
    assert saved.stat().st_size < 16384  # a small file that claims a huge network
    with pytest.raises(DetectorFileError, match="unexpected shape"):
        load(saved)


def test_a_hundred_thousand_claimed_layers_are_refused_at_once(saved, load, monkeypatch):
    """A short header can list any number of layers: the claim is checked against the
    tensors before any network (even on torch's meta device) is built."""
    from sklearn_clipdet import modules

    def never(*args, **kwargs):
        raise AssertionError("no network may be built for a claim the weights do not back")

    monkeypatch.setattr(modules.DetectorMLP, "__init__", never)
    monkeypatch.setattr(RobustMLPClassifier, "initialize", never)
    _craft(saved, edit_header=_set_param("hidden_layer_sizes", [64] * 100_000))
    with pytest.raises(DetectorFileError, match=r"unexpected shape.*100000 in all"):
        load(saved)


def test_backbone_source_on_disk_or_hub_is_not_taken_from_the_file(saved, tmp_path):
    with pytest.raises(DetectorFileError, match=r"local-dir:.*pass model_name="):
        load_detector(saved)
    for model_name, pretrained in [
        ("hf-hub:someone/model", None),
        ("ViT-B-32", str(tmp_path / "weights.bin")),
        ("ViT-B-32", "no-such-tag"),
        ("no-such-architecture", None),
    ]:
        def source(header, model_name=model_name, pretrained=pretrained):
            header["featurizer"].update(model_name=model_name, pretrained=pretrained)

        _craft(saved, edit_header=source)
        with pytest.raises(DetectorFileError, match="pass model_name="):
            load_detector(saved)


def test_registry_backbone_is_taken_from_the_file(saved):
    def registry(header):
        header["featurizer"].update(model_name="ViT-B-32", pretrained="openai")

    _craft(saved, edit_header=registry)
    loaded = load_detector(saved)  # nothing is fetched until the first transform
    assert (loaded[0].model_name, loaded[0].pretrained) == ("ViT-B-32", "openai")


def test_model_name_replaces_the_saved_source(saved, tiny_model_name, fitted):
    loaded = load_detector(saved, model_name=tiny_model_name)
    assert (loaded[0].model_name, loaded[0].pretrained) == (tiny_model_name, None)
    assert loaded[0].backbone_fingerprint == fitted[0][0].load_backbone().fingerprint
    with pytest.raises(ValueError, match="needs model_name"):
        load_detector(saved, pretrained="openai")


def test_cache_dir_is_neither_saved_nor_used(fitted, tmp_path, load):
    detector, _ = fitted
    cache = tmp_path / "relative-cache"
    detector[0].set_params(cache_dir=cache)
    try:
        path = tmp_path / "detector.safetensors"
        save_detector(detector, path)
    finally:
        detector[0].set_params(cache_dir=None)
    with safe_open(str(path), framework="pt") as file:
        assert "cache_dir" not in json.loads(file.metadata()["sklearn_clipdet"])["featurizer"]
    assert load(path)[0].cache_dir is None

    elsewhere = tmp_path / "planted"
    _craft(path, edit_header=_set("featurizer", "cache_dir", str(elsewhere)))
    with pytest.warns(UserWarning, match="cache_dir=.*ignored"):
        loaded = load(path)
    assert loaded[0].cache_dir is None
    assert not elsewhere.exists()


def test_cuda_device_without_cuda_is_a_clear_error(saved, load, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device on this machine"):
        load(saved, device="cuda")


def test_file_is_written_whole_with_the_umask_mode(fitted, tmp_path, monkeypatch):
    import os

    detector, _ = fitted
    path = tmp_path / "detector.safetensors"
    path.write_bytes(b"previous")
    previous = os.umask(0o022)
    try:
        def broken(tensors, filename, metadata=None):
            with open(filename, "wb") as file:
                file.write(b"half")
            raise OSError("disk full")

        monkeypatch.setattr(persistence, "save_file", broken)
        with pytest.raises(OSError, match="disk full"):
            save_detector(detector, path)
        assert path.read_bytes() == b"previous"
        monkeypatch.undo()
        save_detector(detector, path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.safetensors"]


def test_files_from_before_standardize_and_auto_batches_load_as_trained(saved, load, fitted):
    """sklearn-clipdet 0.1 saved neither parameter; its networks were not standardised."""
    detector, paths = fitted
    legacy = dict(detector[-1].get_params(deep=False), standardize=False, batch_size=2048)
    old = type(detector[-1])(**legacy).fit(detector[:-1].transform(paths), detector[-1].classes_[
        (np.arange(len(paths)) % 2)])

    def as_version_01(header):
        for name in ("standardize", "batch_size"):
            header["classifier"]["params"].pop(name)

    def old_weights(tensors):
        for name in [n for n in tensors if n.endswith(("input_mean", "input_scale"))]:
            tensors.pop(name)
        for name, tensor in old.module_.state_dict().items():
            tensors[f"classifier.module.{name}"] = tensor

    _craft(saved, edit_header=as_version_01, edit_tensors=old_weights)
    loaded = load(saved)
    assert loaded[-1].standardize is False and loaded[-1].batch_size == 2048
    features = detector[:-1].transform(paths)
    np.testing.assert_array_equal(loaded[-1].predict_proba(features), old.predict_proba(features))


@pytest.mark.parametrize("edit, message", [
    (_set_param("callbacks__print_log__sink", "print"), "no callbacks or their settings"),
    (_set(None, "steps", ["memory", "robustmlpclassifier"]), "name the two pipeline steps"),
    (_set(None, "steps", ["clipfeaturizer", "verbose"]), "name the two pipeline steps"),
    (_set("classifier", "classes_dtype", "|i1"), "do not fit classes_dtype"),
])
def test_settings_that_break_a_later_refit_or_labels_out_of_range_are_refused(
        saved, load, edit, message):
    def with_large_labels(header):
        header["classifier"]["classes"] = [0, 300]  # 300 does not fit in int8
        edit(header)

    _craft(saved, edit_header=with_large_labels if "dtype" in message else edit)
    with pytest.raises(DetectorFileError, match=message):
        load(saved)


def test_a_five_thousand_digit_integer_is_a_detector_file_error(saved):
    with safe_open(str(saved), framework="pt") as file:
        text = file.metadata()["sklearn_clipdet"]
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    text = text.replace('"max_epochs": ', '"max_epochs": ' + "9" * 5000 + ", \"_\": ", 1)
    save_file(tensors, str(saved), metadata={"sklearn_clipdet": text})
    with pytest.raises(DetectorFileError, match="not valid JSON"):
        load_detector(saved)
