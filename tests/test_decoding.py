import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet import featurizer as featurizer_module
from sklearn_clipdet._images import _decoding
from sklearn_clipdet._images._decoding import PixelBudget, ordered_map
from sklearn_clipdet._images._reading import ImageDecodeWarning
from sklearn_clipdet.testing import write_tiny_model


def random_array(seed, shape=(48, 64, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth_array(seed, shape=(48, 64, 3)):
    """A photo-like image: smooth colour gradients (noise would magnify the differences
    between JPEG decoders' chroma upsampling)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    channels = [np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y
                                    + rng.uniform())) for _ in range(3)]
    return np.uint8(np.clip(127.5 + 120 * np.stack(channels, axis=-1), 0, 255))


def encode(array, image_format="JPEG", **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, image_format, **kwargs)
    return buffer.getvalue()


def cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def model_64(tmp_path_factory):
    """A tiny model with 64 px inputs, where decoding differences show more than at 32 px."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny64"), image_size=64)


@pytest.fixture
def tensor_path_on_cpu(monkeypatch):
    """Run the GPU path (batched decode_jpeg, tensor preprocessing) on CPU tensors."""
    monkeypatch.setattr(featurizer_module, "jpeg_batch_device",
                        lambda device, fast: torch.device("cpu") if fast else None)


def featurize(model_name, images, **params):
    params = {"modalities": "image", "device": "cpu", "batch_size": 8, **params}
    return CLIPFeaturizer(model_name, **params).fit(images).transform(images)


# --- the decoded-memory budget ----------------------------------------------------------------


def test_pixel_budget_bounds_pixels_held_at_once():
    budget = PixelBudget(100)
    held, peak, lock = [0], [0], threading.Lock()

    def decode(pixels):
        with budget.reserve(pixels):
            with lock:
                held[0] += min(pixels, 100)
                peak[0] = max(peak[0], held[0])
            time.sleep(0.01)
            with lock:
                held[0] -= min(pixels, 100)

    threads = [threading.Thread(target=decode, args=(pixels,))
               for pixels in [40, 40, 40, 250, 40, 10, 60]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= 100 and budget.in_use == 0


def test_pixel_budget_is_released_on_errors():
    budget = PixelBudget(10)
    with pytest.raises(RuntimeError), budget.reserve(8):
        raise RuntimeError("decoding failed")
    with budget.reserve(10):
        assert budget.in_use == 10


def test_decoding_holds_at_most_the_budget(tiny_model_name, monkeypatch):
    # Large PNGs decoded by four workers: with a budget of one image's pixels, never two at once.
    pixels = 300 * 200
    monkeypatch.setattr(_decoding, "DECODE_BUDGET", PixelBudget(pixels))
    held, peak, lock = [0], [0], threading.Lock()
    load_rgb = _decoding.load_rgb

    def counting_load_rgb(image):
        with lock:
            held[0] += image.width * image.height
            peak[0] = max(peak[0], held[0])
        time.sleep(0.02)  # keep the decodes overlapping if nothing prevents it
        try:
            return load_rgb(image)
        finally:
            with lock:
                held[0] -= image.width * image.height

    monkeypatch.setattr(_decoding, "load_rgb", counting_load_rgb)
    images = [encode(random_array(seed, (200, 300, 3)), "PNG") for seed in range(6)]
    features = featurize(tiny_model_name, images, num_workers=4)
    assert np.isfinite(features).all()
    assert peak[0] == pixels


# --- ordered read-ahead -----------------------------------------------------------------------


def test_ordered_map_keeps_order_and_window():
    started = []

    def work(index, item):
        started.append(index)
        time.sleep(0.002 * (index % 3))
        return index, item

    results = []
    for result in ordered_map(work, "abcdefghij", workers=3, window=4):
        results.append(result)
        assert max(started) < len(results) + 4  # never more than the window ahead
    assert results == list(enumerate("abcdefghij"))


# --- the tensor (GPU) path, run on CPU tensors ------------------------------------------------


def test_tensor_path_matches_the_pil_path_on_large_and_small_jpegs(
        model_64, size_shortcut_dir, tensor_path_on_cpu):
    # a few large photos (640 to 1440 px, as camera photos are) and small generated images
    paths = sorted(map(str, (size_shortcut_dir / "real").glob("*.jpg")))[:4]
    paths += sorted(map(str, (size_shortcut_dir / "ai").glob("*.jpg")))[-4:]
    tensor_path = featurize(model_64, paths)
    pil_path = featurize(model_64, paths, draft_decode=False)  # open_clip's own preprocessing
    assert cosine(tensor_path, pil_path).min() >= 0.999


def test_tensor_path_mixes_formats_and_errors_in_input_order(
        tiny_model_name, tmp_path, tensor_path_on_cpu, monkeypatch):
    calls = []
    decode_jpegs = _decoding.decode_jpegs
    monkeypatch.setattr(_decoding, "decode_jpegs", lambda datas, *args, **kwargs: calls.append(
        len(datas)) or decode_jpegs(datas, *args, **kwargs))
    good = [random_array(seed) for seed in range(4)]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(encode(good[0])[:300])
    X = [encode(good[0]), encode(good[1], "PNG"), str(truncated), None,
         encode(good[2], progressive=True), good[3], encode(good[0].mean(2).astype(np.uint8))]
    with pytest.warns(ImageDecodeWarning, match=r"indices \[2, 3\]"):
        features = featurize(tiny_model_name, X, on_error="nan", batch_size=3)
    assert sum(calls) == 3  # the three plain JPEGs; the rest went through PIL
    assert np.isnan(features[[2, 3]]).all() and np.isfinite(features[[0, 1, 4, 5, 6]]).all()
    with monkeypatch.context() as patch:
        patch.setattr(featurizer_module, "jpeg_batch_device", lambda device, fast: None)
        expected = featurize(tiny_model_name, [X[i] for i in (0, 1, 4, 5, 6)])
    np.testing.assert_allclose(features[[0, 1, 4, 5, 6]], expected, atol=1e-5)


def test_a_batch_nvjpeg_refuses_is_decoded_by_pil(tiny_model_name, tensor_path_on_cpu,
                                                  monkeypatch):
    from sklearn_clipdet._images._tensors import JpegHeader

    def refuse(*args, **kwargs):
        raise RuntimeError("Error while decoding JPEG images")

    monkeypatch.setattr(_decoding, "decode_jpegs", refuse)
    # Let a truncated JPEG through to the batch decoder too: PIL must then explain it.
    monkeypatch.setattr(_decoding, "inspect_jpeg", lambda data, limit: JpegHeader(64, 48, 1))
    X = [encode(random_array(0)), encode(random_array(1))[:300], encode(random_array(2))]
    featurizer = CLIPFeaturizer(tiny_model_name, modalities="image", device="cpu",
                                on_error="nan").fit(X)
    with pytest.warns(ImageDecodeWarning, match=r"indices \[1\]"):
        features = featurizer.transform(X)
    assert "truncated" in featurizer.failures_[0].reason
    monkeypatch.setattr(featurizer_module, "jpeg_batch_device", lambda device, fast: None)
    np.testing.assert_allclose(features[[0, 2]], featurize(tiny_model_name, [X[0], X[2]]),
                               atol=1e-6)


# --- on a GPU ---------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_features_match_the_cpu_pil_path_on_the_playground(model_64, playground_samples):
    paths = playground_samples[0]
    gpu = featurize(model_64, paths, device="cuda", batch_size=16)
    cpu = featurize(model_64, paths, draft_decode=False)
    assert cosine(gpu, cpu).min() >= 0.999


@pytest.mark.cuda
def test_cuda_decoding_matches_cpu_decoding_for_every_kind_of_jpeg():
    from sklearn_clipdet._images._tensors import decode_jpegs, inspect_jpeg

    image = Image.fromarray(smooth_array(0, (90, 70, 3)))
    mpo = io.BytesIO()
    image.save(mpo, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))])
    exif = Image.Exif()
    exif[0x0112] = 6
    datas = [encode(np.asarray(image)), encode(np.asarray(image), progressive=True),
             encode(np.asarray(image.convert("L"))), mpo.getvalue(),
             encode(np.asarray(image), exif=exif.tobytes()),
             encode(np.asarray(image), subsampling=0)]
    headers = [inspect_jpeg(data, None) for data in datas]
    assert None not in headers
    on_gpu = decode_jpegs(datas, headers, "cuda")
    on_cpu = decode_jpegs(datas, headers, "cpu")
    for gpu, cpu in zip(on_gpu, on_cpu):
        assert gpu.is_cuda and gpu.shape == cpu.shape
        # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels.
        assert (gpu.cpu().int() - cpu.int()).abs().float().mean() < 3


@pytest.mark.cuda
def test_cuda_path_keeps_one_row_per_input_in_order(tiny_model_name, tmp_path):
    good = [smooth_array(seed) for seed in range(5)]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(encode(good[0])[:300])
    X = [encode(good[0]), encode(good[1], "PNG"), str(truncated), encode(good[2]), None,
         good[3], encode(good[4])] * 3
    with pytest.warns(ImageDecodeWarning):
        gpu = featurize(tiny_model_name, X, device="cuda", on_error="nan", batch_size=4)
    with pytest.warns(ImageDecodeWarning):
        cpu = featurize(tiny_model_name, X, device="cpu", on_error="nan", batch_size=4)
    np.testing.assert_array_equal(np.isnan(gpu).all(1), np.isnan(cpu).all(1))
    ok = ~np.isnan(cpu).all(1)
    assert cosine(gpu[ok], cpu[ok]).min() >= 0.999


@pytest.mark.cuda
def test_cuda_text_features_match_the_cpu(tiny_model_name):
    captions = [f"caption number {i}" for i in range(1500)]  # more than one GPU text batch
    params = {"modalities": "text", "batch_size": 8}
    gpu = CLIPFeaturizer(tiny_model_name, device="cuda", **params).fit(captions)
    cpu = CLIPFeaturizer(tiny_model_name, device="cpu", **params).fit(captions)
    np.testing.assert_allclose(gpu.transform(captions), cpu.transform(captions), atol=1e-4)
