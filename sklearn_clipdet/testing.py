"""Offline helpers for tests: a tiny, randomly initialised open_clip model.

No pretrained CLIP weights can be downloaded in tests. :func:`write_tiny_model`
writes a very small CLIP model (ViT image tower, transformer text tower) to a
folder in the format open_clip reads through its ``local-dir:`` schema, so the
featurizer exercises open_clip's own loading path end to end.
"""

import copy
import json
from pathlib import Path

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import save_file

__all__ = ["TINY_MODEL_CFG", "write_tiny_model"]

#: open_clip ``model_cfg`` of the tiny model: 32 px images, 16-d embeddings.
TINY_MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 32,
        "head_width": 16,
        "layers": 1,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,  # open_clip's SimpleTokenizer vocabulary
        "width": 32,
        "heads": 2,
        "layers": 1,
    },
}


def write_tiny_model(directory, *, image_size=32, embed_dim=16, vision_layers=1, seed=0):
    """Write a tiny random open_clip model to ``directory``.

    The folder receives ``open_clip_config.json`` (with ``model_cfg`` and
    ``preprocess_cfg``) and ``open_clip_model.safetensors``. The weights depend
    only on ``seed`` and the sizes, so two calls give identical models. The
    global torch random state is left untouched.

    Parameters
    ----------
    directory : str or path-like
        Folder to write to; created if needed.
    image_size : int, default=32
        Side of the square model input, in pixels.
    embed_dim : int, default=16
        Size of the image and text embeddings.
    vision_layers : int, default=1
        Transformer blocks of the image tower (more, to test intermediate layers).
    seed : int, default=0
        Seed of the random initialisation.

    Returns
    -------
    model_name : str
        ``"local-dir:<absolute path>"``, usable as ``model_name`` of
        :class:`~sklearn_clipdet.CLIPFeaturizer` or of
        ``open_clip.create_model_and_transforms``.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    model_cfg = copy.deepcopy(TINY_MODEL_CFG)
    model_cfg["embed_dim"] = int(embed_dim)
    model_cfg["vision_cfg"]["image_size"] = int(image_size)
    model_cfg["vision_cfg"]["layers"] = int(vision_layers)
    preprocess_cfg = {
        "size": int(image_size),
        "mode": "RGB",
        "mean": list(OPENAI_DATASET_MEAN),
        "std": list(OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**copy.deepcopy(model_cfg))
    state_dict = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state_dict, str(directory / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (directory / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return f"local-dir:{directory}"
