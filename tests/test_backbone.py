import json
import logging
import re
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from sklearn_clipdet._clip import _backbone
from sklearn_clipdet._clip._backbone import (
    WeightsUnavailableError,
    clear_backbone_cache,
    load_backbone,
    resolve_device,
)
from sklearn_clipdet.testing import TINY_MODEL_CFG, write_tiny_model


def test_tiny_model_loads_through_open_clip(tiny_model_name, tiny_model_dir):
    config = json.loads((tiny_model_dir / "open_clip_config.json").read_text())
    assert config["model_cfg"] == TINY_MODEL_CFG and config["preprocess_cfg"]["size"] == 32
    backbone = load_backbone(tiny_model_name, None, device="cpu")
    assert (backbone.image_dim, backbone.text_dim) == (16, 16)
    assert backbone.image_size == (32, 32)
    assert not backbone.model.training
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_tiny_model_is_deterministic(tmp_path, tiny_model_name):
    again = load_backbone(write_tiny_model(tmp_path), None, device="cpu")
    first = load_backbone(tiny_model_name, None, device="cpu")
    assert again is not first
    assert again.fingerprint == first.fingerprint


def test_models_are_shared_per_settings(tiny_model_name):
    first = load_backbone(tiny_model_name, "ignored-for-local-dir", device="cpu")
    assert load_backbone(tiny_model_name, None, device="auto" if not torch.cuda.is_available()
                         else "cpu") is first
    assert load_backbone(tiny_model_name, None, device="cpu", precision="int8") is not first


def test_int8_is_close_to_fp32(tiny_model_name):
    fp32 = load_backbone(tiny_model_name, None, device="cpu")
    int8 = load_backbone(tiny_model_name, None, device="cpu", precision="int8")
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())
    assert int8.fingerprint != fp32.fingerprint
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = fp32.encode_image(pixels), int8.encode_image(pixels)
    assert not torch.equal(a, b)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99


def test_fingerprint_depends_on_weights(tmp_path, tiny_model_name):
    other = load_backbone(write_tiny_model(tmp_path, seed=1), None, device="cpu")
    assert other.fingerprint != load_backbone(tiny_model_name, None, device="cpu").fingerprint


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_needs_cuda(precision):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        load_backbone("ViT-B-32", None, device="cpu", precision=precision)


def test_int8_needs_cpu():
    with pytest.raises(ValueError, match="CPU only"):
        load_backbone("ViT-B-32", None, device="cuda", precision="int8")


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        load_backbone("ViT-B-32", None, device="cpu", precision="fp8")


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize(
    "model_name, pretrained, reason",
    [
        ("ViT-B-32", "/nonexistent/open_clip_pytorch_model.bin",
         "the pretrained weights file /nonexistent/open_clip_pytorch_model.bin does not exist"),
        ("ViT-B-32", "opanai", r"'opanai' is neither a pretrained tag of 'ViT-B-32' "
                               r"\(close matches: openai\) nor a file"),
        ("local-dir:/nonexistent/folder", None,
         "the local-dir folder /nonexistent/folder does not exist"),
        ("ViT-B-23", None, r"'ViT-B-23' is not one of the \d+ open_clip architectures; "
                           "close matches: ViT-B-32"),
        ("vit-l-14", "openai", "close matches: ViT-L-14"),
    ],
)
def test_mistyped_sources_are_named_before_anything_is_built(model_name, pretrained, reason,
                                                            monkeypatch):
    def must_not_build(*args, **kwargs):
        raise AssertionError("open_clip was called for a source that cannot load")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", must_not_build)
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone(model_name, pretrained, device="cpu")
    message = str(info.value)
    assert f"model_name={model_name!r}" in message and f"pretrained={pretrained!r}" in message
    assert re.search(reason, info.value.reason)
    assert len(message) < 400  # no list of every architecture or tag
    # Weights on disk would not help: no advice about working offline.
    assert not info.value.offline_hint and "HF_HUB_OFFLINE" not in message


def test_local_dir_without_config_or_weights(tmp_path):
    folder = Path(write_tiny_model(tmp_path / "model").removeprefix("local-dir:"))
    (folder / "open_clip_model.safetensors").unlink()  # open_clip would use random weights
    with pytest.raises(WeightsUnavailableError, match=r"has no weights file .*holds "
                                                      r"\[open_clip_config\.json\]"):
        load_backbone(f"local-dir:{folder}", None, device="cpu")
    (folder / "open_clip_config.json").rename(folder / "config.json")
    with pytest.raises(WeightsUnavailableError, match=r"has no open_clip_config\.json "
                                                      r"\(it holds \[config\.json\]\)"):
        load_backbone(f"local-dir:{folder}", None, device="cpu")
    with pytest.raises(WeightsUnavailableError, match="is a file, not a folder"):
        load_backbone(f"local-dir:{folder / 'config.json'}", None, device="cpu")


def test_failed_download_names_the_offline_options_and_logs_no_error(monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(_backbone, "_check_download_reachable", lambda *args: None)
    monkeypatch.setattr(open_clip.factory, "download_pretrained", fail)
    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    caplog.set_level(logging.DEBUG, logger="sklearn_clipdet")
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("ViT-B-32", "openai", device="cpu")
    assert info.value.offline_hint and "connection reset" in info.value.reason
    assert "local-dir:" in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    # open_clip's own logging.error line is kept out of the root logger's output ...
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Failed to download" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)
    # ... and the root logger is left as it was.
    assert root.handlers == handlers and root.filters == filters


def test_local_checkpoint_file_as_pretrained(tiny_model_dir, tiny_model_name):
    # Register the tiny architecture under a name, as users do with add_model_config.
    config = json.loads((tiny_model_dir / "open_clip_config.json").read_text())["model_cfg"]
    config_file = tiny_model_dir.parent / "tiny-arch-for-test.json"
    config_file.write_text(json.dumps(config))
    open_clip.add_model_config(config_file)
    try:
        checkpoint = str(tiny_model_dir / "open_clip_model.safetensors")
        from_file = load_backbone("tiny-arch-for-test", checkpoint, device="cpu")
        from_dir = load_backbone(tiny_model_name, None, device="cpu")
        assert from_file is not from_dir
        tokens = from_dir.tokenizer(["a red car"])
        torch.testing.assert_close(from_file.encode_text(tokens), from_dir.encode_text(tokens))
    finally:
        open_clip.factory._MODEL_CONFIGS.pop("tiny-arch-for-test", None)


def test_cache_is_bounded_and_clearable(tmp_path, monkeypatch):
    monkeypatch.setattr(_backbone, "_CACHE_SIZE", 1)
    first = load_backbone(write_tiny_model(tmp_path / "a", seed=2), None, device="cpu")
    load_backbone(write_tiny_model(tmp_path / "b", seed=3), None, device="cpu")
    assert first not in _backbone._cache.values()
    clear_backbone_cache()
    assert not _backbone._cache


def test_preprocess_image_matches_open_clip(tiny_model_name):
    from PIL import Image

    backbone = load_backbone(tiny_model_name, None, device="cpu")
    rng = np.random.default_rng(0)
    for shape in [(50, 70, 3), (32, 32, 3), (17, 90, 3)]:
        image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
        assert torch.equal(backbone.preprocess_image(image), backbone.preprocess(image))


def test_unreachable_download_host_fails_before_building_the_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    def must_not_build(*args, **kwargs):
        raise AssertionError("the model was built before checking that weights can be had")

    monkeypatch.setattr(_backbone.socket, "create_connection", refuse)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", must_not_build)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                  "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with pytest.raises(WeightsUnavailableError, match="cannot reach .*network is unreachable") \
            as info:
        load_backbone("ViT-B-32", "openai", device="cpu")
    assert info.value.offline_hint
