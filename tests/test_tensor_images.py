import io

import numpy as np
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from sklearn_clipdet._images import _tensors
from sklearn_clipdet._images._reading import decode_image
from sklearn_clipdet._images._tensors import TensorPreprocess, decode_jpegs, inspect_jpeg


def random_image(seed, size=(40, 24), mode="RGB"):
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def jpeg(image, orientation=1, **kwargs):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes(), **kwargs)
    return buffer.getvalue()


def as_array(tensor):
    return tensor.permute(1, 2, 0).numpy()


# --- which images take the tensor path ---------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"progressive": True}, {"subsampling": 0}])
def test_plain_jpegs_are_accepted(kwargs):
    header = inspect_jpeg(jpeg(random_image(0), **kwargs), None)
    assert header == (40, 24, 1)
    assert inspect_jpeg(jpeg(random_image(0, mode="L")), None) == (40, 24, 1)
    assert inspect_jpeg(jpeg(random_image(0), orientation=6), None).orientation == 6


def test_camera_jpegs_that_open_as_mpo_are_accepted():
    buffer = io.BytesIO()
    random_image(0).save(buffer, "MPO", save_all=True, append_images=[random_image(1)])
    assert inspect_jpeg(buffer.getvalue(), None) == (40, 24, 1)


def test_what_pil_must_decode_is_refused():
    image = random_image(0)
    png = io.BytesIO()
    image.save(png, "PNG")
    cmyk = jpeg(image.convert("CMYK"))
    data = jpeg(image)
    garbage = b"\xff\xd8" + bytes(100) + b"\xff\xd9"  # the markers of a JPEG, nothing else
    for refused in (png.getvalue(), cmyk, data[:-100], data + b"trailing", garbage):
        assert inspect_jpeg(refused, None) is None
    assert inspect_jpeg(data, 40 * 24 - 1) is None  # over the pixel limit
    assert inspect_jpeg(data, 40 * 24) is not None


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decoded_jpegs_are_upright_like_pils(orientation):
    data = jpeg(random_image(orientation), orientation=orientation)
    (decoded,) = decode_jpegs([data], [inspect_jpeg(data, None)], "cpu")
    np.testing.assert_array_equal(as_array(decoded), np.asarray(decode_image(data)))


def test_grey_progressive_and_mpo_jpegs_decode_like_pil():
    mpo = io.BytesIO()
    random_image(2).save(mpo, "MPO", save_all=True, append_images=[random_image(3)])
    datas = [jpeg(random_image(0, mode="L")), jpeg(random_image(1), progressive=True),
             mpo.getvalue()]
    decoded = decode_jpegs(datas, [inspect_jpeg(d, None) for d in datas], "cpu")
    for data, image in zip(datas, decoded):
        assert image.shape[0] == 3
        np.testing.assert_array_equal(as_array(image), np.asarray(decode_image(data)))


def test_decoding_is_split_into_calls_of_bounded_pixels(monkeypatch):
    datas = [jpeg(random_image(seed)) for seed in range(5)]
    headers = [inspect_jpeg(data, None) for data in datas]
    calls = []
    decode = _tensors.decode_jpeg
    monkeypatch.setattr(_tensors, "decode_jpeg",
                        lambda inputs, **kwargs: calls.append(len(inputs)) or decode(inputs,
                                                                                      **kwargs))
    monkeypatch.setattr(_tensors, "DEVICE_DECODE_CHUNK_PIXELS", 2 * 40 * 24)
    held = []  # full-size images alive at once: those of one call only
    decoded = decode_jpegs(datas, headers, "cpu", then=lambda images: held.append(
        len(images)) or [image.clone() for image in images])
    assert calls == [2, 2, 1] and held == [2, 2, 1]
    for data, image in zip(datas, decoded):
        np.testing.assert_array_equal(as_array(image), np.asarray(decode_image(data)))


# --- preprocessing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        {"size": 32, "resize_mode": "shortest"},
        {"size": (24, 40), "resize_mode": "shortest"},
        {"size": 32, "resize_mode": "longest", "fill_color": 128},
        {"size": (30, 20), "resize_mode": "squash", "interpolation": "bilinear"},
    ],
)
def test_preprocessing_matches_open_clip(cfg):
    cfg = {**vars(PreprocessCfg()), **cfg}
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    preprocess = TensorPreprocess(cfg)
    images = [random_image(seed, size) for seed, size in
              enumerate([(57, 41), (41, 57), (32, 32), (200, 31), (13, 9)])]
    tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images]
    ours = preprocess.normalize(torch.stack(preprocess.resize_crop_many(tensors)))
    expected = torch.stack([reference(image) for image in images])
    assert ours.shape == expected.shape and ours.dtype == torch.float32
    # PIL's and torchvision's antialiased kernels differ by a grey level here and there.
    difference = (ours - expected).abs()
    assert difference.max() <= 2.5 / 255 / 0.26 and difference.mean() < 0.005


def test_images_of_one_size_are_resized_together(monkeypatch):
    preprocess = TensorPreprocess({**vars(PreprocessCfg()), "size": 16})
    images = [torch.from_numpy(np.array(random_image(seed, size))).permute(2, 0, 1)
              for seed, size in enumerate([(30, 20), (20, 30), (30, 20), (30, 20)])]
    calls = []
    resize_crop = preprocess.resize_crop
    monkeypatch.setattr(preprocess, "resize_crop",
                        lambda batch: calls.append(batch.shape[0]) or resize_crop(batch))
    together = preprocess.resize_crop_many(images)
    assert sorted(calls) == [1, 3]
    for image, result in zip(images, together):
        np.testing.assert_array_equal(result.numpy(), resize_crop(image).numpy())


def test_normalize_equals_to_tensor_and_normalize():
    cfg = vars(PreprocessCfg())  # OpenAI's mean and std
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False).transforms[-2:]
    image = random_image(0, (16, 16))
    expected = reference[1](reference[0](image))
    ours = TensorPreprocess(cfg).normalize(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    torch.testing.assert_close(ours[0], expected, rtol=0, atol=0)
