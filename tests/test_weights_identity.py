"""A model loaded from local files is loaded again when the files are replaced in place:
in one process, and on a warm Dask worker."""

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._clip import _backbone
from sklearn_clipdet._clip._backbone import load_backbone
from sklearn_clipdet.testing import write_tiny_model


def text_embedding(backbone):
    return backbone.encode_text(backbone.tokenizer(["a red car"]))


def test_local_dir_weights_replaced_in_place_load_fresh(tmp_path):
    name = write_tiny_model(tmp_path / "model", seed=0)
    first = load_backbone(name, None, device="cpu")
    assert load_backbone(name, None, device="cpu") is first  # unchanged files: shared

    write_tiny_model(tmp_path / "model", seed=1)  # same names, same sizes, other weights
    second = load_backbone(name, None, device="cpu")

    assert second is not first
    assert second.fingerprint != first.fingerprint
    assert not torch.equal(text_embedding(second), text_embedding(first))
    expected = load_backbone(write_tiny_model(tmp_path / "seed1", seed=1), None, device="cpu")
    assert second.fingerprint == expected.fingerprint
    assert load_backbone(name, None, device="cpu") is second
    # The stale model is dropped, not kept beside the new one.
    assert sum(b.model_name == second.model_name for b in _backbone._cache.values()) == 1


def test_local_dir_config_replaced_in_place_loads_fresh(tmp_path):
    name = write_tiny_model(tmp_path / "model")
    first = load_backbone(name, None, device="cpu")
    config_file = tmp_path / "model" / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config["preprocess_cfg"]["mean"] = [0.5, 0.5, 0.5]
    config_file.write_text(json.dumps(config, indent=2))

    second = load_backbone(name, None, device="cpu")
    assert second is not first
    assert tuple(second.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)
    assert second.fingerprint != first.fingerprint


def test_other_files_in_the_folder_do_not_reload_the_model(tmp_path):
    name = write_tiny_model(tmp_path / "model")
    first = load_backbone(name, None, device="cpu")
    (tmp_path / "model" / "scores.csv").write_text("image,score\n")
    (tmp_path / "model" / "run.log").write_text("started\n")
    assert load_backbone(name, None, device="cpu") is first


def test_deleted_local_dir_is_not_served_from_memory(tmp_path):
    name = write_tiny_model(tmp_path / "model")
    load_backbone(name, None, device="cpu")
    for path in (tmp_path / "model").iterdir():
        path.unlink()
    with pytest.raises(_backbone.WeightsUnavailableError, match="has no open_clip_config.json"):
        load_backbone(name, None, device="cpu")


def test_checkpoint_file_replaced_in_place_loads_fresh(tmp_path, tiny_model_dir):
    # The tiny architecture registered under a name, as users do with add_model_config.
    config = json.loads((tiny_model_dir / "open_clip_config.json").read_text())["model_cfg"]
    config_file = tmp_path / "tiny-arch-for-identity.json"
    config_file.write_text(json.dumps(config))
    checkpoint = tmp_path / "weights.safetensors"

    def load_weights(seed):
        folder = Path(write_tiny_model(tmp_path / f"seed{seed}", seed=seed).split(":", 1)[1])
        shutil.copyfile(folder / "open_clip_model.safetensors", checkpoint)  # in place
        return load_backbone("tiny-arch-for-identity", str(checkpoint), device="cpu")

    open_clip.add_model_config(config_file)
    try:
        first, second = load_weights(0), load_weights(1)
    finally:
        open_clip.factory._MODEL_CONFIGS.pop("tiny-arch-for-identity", None)
    assert second is not first
    assert second.fingerprint != first.fingerprint
    assert not torch.equal(text_embedding(second), text_embedding(first))


@pytest.mark.parametrize(
    "model_name, pretrained", [("hf-hub:org/repo", None), ("ViT-B-32", "openai")]
)
def test_named_sources_are_shared_by_name(monkeypatch, model_name, pretrained):
    created = []

    def fake_create(*args):
        created.append(args)
        return types.SimpleNamespace(model_name=args[0])

    monkeypatch.setattr(_backbone, "_create", fake_create)
    try:
        first = load_backbone(model_name, pretrained, device="cpu")
        assert load_backbone(model_name, pretrained, device="cpu") is first
    finally:
        _backbone.clear_backbone_cache()
    assert len(created) == 1


def worker_fingerprint(model_name):
    from sklearn_clipdet.distributed import _backbone_fingerprint

    return _backbone_fingerprint(CLIPFeaturizer(model_name, None, device="cpu"))


def test_warm_dask_worker_loads_replaced_weights(tmp_path, sample_samples):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("pyarrow")
    import cloudpickle

    from sklearn_clipdet.distributed import featurize, read_features

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    images = list(sample_samples[0][:4])
    name = write_tiny_model(tmp_path / "model", seed=0)
    featurizer = CLIPFeaturizer(name, None, modalities="image", device="cpu")
    output = tmp_path / "out"
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        with distributed.Client(cluster) as client:
            before = client.submit(worker_fingerprint, name, pure=False).result()
            featurize(images, featurizer, output, client=client, partition_size=2)

            write_tiny_model(tmp_path / "model", seed=1)  # the worker stays warm
            after = client.submit(worker_fingerprint, name, pure=False).result()
            assert after != before
            assert after == worker_fingerprint(name)  # what a fresh process loads
            with pytest.raises(ValueError, match=r"backbone: other weights.*fingerprint"):
                featurize(images, featurizer, output, client=client, partition_size=2)
            replaced = featurize(
                images, featurizer, output, client=client, partition_size=2, overwrite=True
            )
    finally:
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert replaced.computed == [0, 1]
    np.testing.assert_allclose(
        read_features(output).to_numpy(), featurizer.fit_transform(images), atol=1e-6
    )
