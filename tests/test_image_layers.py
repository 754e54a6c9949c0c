"""Image features from intermediate blocks: which blocks, their read-out, names, cache, files."""

import json
import types

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from sklearn_clipdet import CLIPFeaturizer, load_detector, make_detector, persistence, save_detector
from sklearn_clipdet._clip._image_layers import resolve_image_layers
from sklearn_clipdet.testing import write_tiny_model

WIDTH, EMBED = 32, 16  # token width and embedding size of the tiny model


@pytest.fixture(scope="module")
def three_blocks(tmp_path_factory):
    """A tiny model whose image tower has three transformer blocks."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny3"), vision_layers=3)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]


def featurize(model, images, **params):
    params = {"modalities": "image", "device": "cpu", "normalize": False, "draft_decode": False,
              "num_workers": 0, **params}
    featurizer = CLIPFeaturizer(model, None, **params).fit(images)
    return featurizer.transform(images), featurizer


def _pixels(featurizer, images):
    """open_clip's own preprocessing of the images."""
    backbone = featurizer.load_backbone()
    return torch.stack([backbone.preprocess(Image.fromarray(image)) for image in images])


def class_tokens(featurizer, images):
    """Each block's class token, computed by running open_clip's blocks one by one."""
    visual = featurizer.load_backbone().model.visual
    tokens = []
    with torch.no_grad():
        x = visual._embeds(_pixels(featurizer, images))
        for block in visual.transformer.resblocks:
            x = block(x)
            tokens.append(x[:, 0])
    return visual, tokens


def test_auto_reads_the_blocks_at_one_half_two_thirds_and_five_sixths_of_the_depth():
    def tower(depth):
        blocks = types.SimpleNamespace(resblocks=[None] * depth)
        return types.SimpleNamespace(transformer=blocks, class_embedding=torch.zeros(1),
                                     forward_intermediates=None)

    assert resolve_image_layers("auto", tower(12)) == (6, 8, 10)
    assert resolve_image_layers("auto", tower(24)) == (12, 16, 20)
    assert resolve_image_layers("auto", tower(32)) == (16, 21, 27)
    assert resolve_image_layers("auto", tower(2)) == (1, 2)  # one entry per block
    assert resolve_image_layers((-1, "final", 3), tower(12)) == (12, "final", 3)
    resnet = types.SimpleNamespace()  # no transformer, no class token
    assert resolve_image_layers("auto", resnet) == ("final",)
    with pytest.raises(ValueError, match="not a vision transformer with a class token"):
        resolve_image_layers(4, resnet)


@pytest.mark.parametrize("spec, message", [
    (13, "outside the tower's 12 blocks"), (0, "outside"), (-13, "outside"),
    ((8, 8), "names a layer twice"), ((), "at least one layer"), ((True,), "block numbers"),
    (("8",), "block numbers or 'final'"),
])
def test_bad_layer_specifications_are_refused(spec, message):
    tower = types.SimpleNamespace(transformer=types.SimpleNamespace(resblocks=[None] * 12),
                                  class_embedding=torch.zeros(1), forward_intermediates=None)
    with pytest.raises(ValueError, match=message):
        resolve_image_layers(spec, tower)


def test_blocks_are_the_class_tokens_through_the_final_layer_norm(three_blocks, images):
    features, featurizer = featurize(three_blocks, images, image_layers=(2, -1, "final"))
    visual, tokens = class_tokens(featurizer, images)
    with torch.no_grad():
        expected = torch.cat([visual.ln_post(tokens[1]), visual.ln_post(tokens[2]),
                              featurizer.load_backbone().model.encode_image(
                                  _pixels(featurizer, images))], 1).numpy()
    assert features.shape == (len(images), 2 * WIDTH + EMBED)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    names = featurizer.get_feature_names_out()
    assert len(names) == features.shape[1]
    assert [names[0], names[WIDTH], names[2 * WIDTH], names[-1]] == [
        "image_block2_0", "image_block3_0", "image_0", f"image_{EMBED - 1}"]


def test_read_outs(three_blocks, images):
    raw, featurizer = featurize(three_blocks, images, image_layers=3, layer_output="raw")
    norm, _ = featurize(three_blocks, images, image_layers=3, layer_output="norm")
    projected, _ = featurize(three_blocks, images, image_layers=3, layer_output="projected")
    final, _ = featurize(three_blocks, images, image_layers="final")
    visual, tokens = class_tokens(featurizer, images)
    np.testing.assert_allclose(raw, tokens[2].numpy(), atol=1e-5)
    assert raw.shape[1] == norm.shape[1] == WIDTH and projected.shape[1] == EMBED
    assert not np.allclose(raw, norm, atol=1e-3)
    # The last block's token through LayerNorm and projection is the image embedding.
    np.testing.assert_allclose(projected, final, atol=1e-5)


def test_auto_is_the_default_and_each_layer_is_normalised_alone(three_blocks, images):
    features, featurizer = featurize(three_blocks, images, normalize=True,
                                     image_layers=(1, "final"))
    np.testing.assert_allclose(np.linalg.norm(features[:, :WIDTH], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features[:, WIDTH:], axis=1), 1, atol=1e-5)
    default, featurizer = featurize(three_blocks, images)
    assert featurizer.image_layers == "auto"
    assert featurizer.get_feature_names_out()[0] == "image_block2_0"  # 2 of 3 blocks
    np.testing.assert_array_equal(default, featurize(three_blocks, images, image_layers=2)[0])


def test_every_precision_on_the_cpu(three_blocks, images):
    fp32, _ = featurize(three_blocks, images, image_layers=(2, "final"))
    int8, _ = featurize(three_blocks, images, image_layers=(2, "final"), precision="int8")
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    assert int8.shape == fp32.shape and cosine.min() > 0.99


def test_the_cache_is_keyed_by_the_layers(three_blocks, images, tmp_path, monkeypatch):
    block1, _ = featurize(three_blocks, images, image_layers=1, cache_dir=tmp_path)
    block2, _ = featurize(three_blocks, images, image_layers=2, cache_dir=tmp_path)
    raw2, _ = featurize(three_blocks, images, image_layers=2, cache_dir=tmp_path,
                        layer_output="raw")
    assert not np.allclose(block1, block2) and not np.allclose(block2, raw2)
    calls = []
    monkeypatch.setattr(CLIPFeaturizer, "_encode_images",
                        lambda self, backbone, pixels: calls.append(len(pixels)))
    again, _ = featurize(three_blocks, images, image_layers=2, cache_dir=tmp_path)
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(again, block2)


def test_detector_files_keep_the_layers_and_older_files_read_final(three_blocks, images,
                                                                    tmp_path):
    y = np.array([0, 1, 0, 1, 1])
    detector = make_detector(three_blocks, None, modalities="image", device="cpu",
                             random_state=0, featurizer_params={"image_layers": (2, "final")},
                             classifier_params={"hidden_layer_sizes": (4,), "max_epochs": 1})
    detector.fit(images, y)
    path = tmp_path / "detector.safetensors"
    save_detector(detector, path)
    loaded = load_detector(path, model_name=three_blocks)
    assert loaded[0].image_layers == [2, "final"]
    np.testing.assert_array_equal(loaded.predict_proba(images), detector.predict_proba(images))

    # sklearn-clipdet 0.1 wrote no image_layers: its featurizers read the final embedding.
    with safe_open(str(path), framework="pt") as file:
        header = json.loads(file.metadata()["sklearn_clipdet"])
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    header["featurizer"].pop("image_layers")
    header["checksum"] = persistence._checksum(header, tensors)
    save_file(tensors, str(path), metadata={"sklearn_clipdet": json.dumps(header)})
    assert load_detector(path, model_name=three_blocks)[0].image_layers == "final"
