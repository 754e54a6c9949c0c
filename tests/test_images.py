import io
import os
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from sklearn_clipdet._images._reading import (
    DecodeOptions,
    ImageDecodeError,
    content_hash,
    decode_image,
    describe_input,
    is_missing,
    load_source,
    open_limited,
    read_file,
    reduce_to_target,
    sample_errors,
    to_rgb,
)


def encode(image, format="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def pixels(image):
    return np.asarray(image)


# --- modes -----------------------------------------------------------------------------------


def test_rgba_is_composited_on_white():
    array = np.zeros((2, 2, 4), dtype=np.uint8)
    array[0, 0] = (255, 0, 0, 255)  # opaque red
    array[0, 1] = (255, 0, 0, 0)  # fully transparent
    array[1, 0] = (0, 0, 0, 128)  # half-transparent black
    rgb = pixels(decode_image(encode(Image.fromarray(array, "RGBA"))))
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert abs(int(rgb[1, 0, 0]) - 127) <= 1


def test_la_is_composited_on_white():
    image = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")
    rgb = pixels(decode_image(encode(image)))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == (0, 0, 0)


def test_palette_with_transparency():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    rgb = pixels(decode_image(encode(image)))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == (0, 255, 0)


def test_palette_without_transparency():
    image = Image.new("P", (1, 1))
    image.putpalette([10, 20, 30] + [0] * 765)
    assert tuple(pixels(decode_image(encode(image)))[0, 0]) == (10, 20, 30)


def test_sixteen_bit_gray_is_scaled():
    array = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    rgb = pixels(decode_image(encode(Image.fromarray(array))))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("mode", ["L", "1", "CMYK"])
def test_other_modes_become_rgb(mode):
    image = Image.new(mode, (3, 2), {"L": 200, "1": 1, "CMYK": (0, 0, 0, 0)}[mode])
    rgb = decode_image(encode(image, "TIFF" if mode == "CMYK" else "PNG"))
    assert rgb.mode == "RGB" and rgb.size == (3, 2)
    expected = {"L": (200,) * 3, "1": (255,) * 3, "CMYK": (255,) * 3}[mode]
    assert tuple(pixels(rgb)[0, 0]) == expected


def test_cmyk_jpeg():
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    rgb = pixels(decode_image(encode(image, "JPEG", quality=95)))
    assert rgb[8, 8, 0] > 200 and rgb[8, 8, 1] < 60 and rgb[8, 8, 2] < 60


def test_to_rgb_keeps_rgb_images():
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(image) is image


# --- orientation, frames, limits --------------------------------------------------------------


def test_exif_orientation_is_applied():
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encode(Image.fromarray(array), "JPEG", quality=95, exif=exif.tobytes())
    rgb = decode_image(data)
    assert rgb.size == (20, 40)  # width and height swapped
    top = pixels(rgb)[2, 10]
    assert top[0] > 200 and top[1] < 60  # the red left half is now on top


def test_first_frame_of_animated_gif():
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=10)
    rgb = pixels(decode_image(buffer.getvalue()))
    assert rgb[4, 4, 0] > 200 and rgb[4, 4, 2] < 60


def test_first_frame_of_a_pil_image_keeps_its_position():
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=10)
    image = Image.open(buffer)
    image.seek(1)
    rgb = pixels(decode_image(image))
    assert rgb[4, 4, 0] > 200
    assert image.tell() == 1


def test_decompression_bomb_limit():
    data = encode(Image.new("RGB", (20, 20)))
    with pytest.raises(Image.DecompressionBombError, match="max_image_pixels"):
        decode_image(data, DecodeOptions(max_image_pixels=399))
    assert decode_image(data, DecodeOptions(max_image_pixels=400)).size == (20, 20)


def test_pixel_limit_never_reads_or_changes_pils_global(monkeypatch):
    # Other threads and libraries must never see PIL's process-wide limit change, not even
    # while an image is being opened: record it whenever PIL's PNG plugin parses a header.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    factory, accept = Image.OPEN["PNG"]
    seen = []

    def recording_factory(*args):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return factory(*args)

    monkeypatch.setitem(Image.OPEN, "PNG", (recording_factory, accept))
    data = encode(Image.new("RGB", (20, 20)))
    assert open_limited(io.BytesIO(data), None).size == (20, 20)
    assert decode_image(data, DecodeOptions(max_image_pixels=10_000)).size == (20, 20)
    assert seen and set(seen) == {50}


def test_open_limited_reads_headers_like_pil():
    image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    for image_format in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        data = encode(image, image_format)
        opened = open_limited(io.BytesIO(data), 16)
        reference = Image.open(io.BytesIO(data))
        assert (opened.format, opened.mode, opened.size) == (
            reference.format, reference.mode, reference.size)
        np.testing.assert_array_equal(np.asarray(opened), np.asarray(reference))
    with pytest.raises(Image.DecompressionBombError, match="limit of 15"):
        open_limited(io.BytesIO(encode(image)), 15)
    with pytest.raises(Image.UnidentifiedImageError):
        open_limited(io.BytesIO(b"not an image at all"), None)


def test_limit_above_pils_global_is_allowed_and_global_restored(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    data = encode(Image.new("RGB", (20, 20)))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))  # PIL alone refuses it
    assert decode_image(data, DecodeOptions(max_image_pixels=1000)).size == (20, 20)
    assert decode_image(data, DecodeOptions(max_image_pixels=None)).size == (20, 20)
    assert Image.MAX_IMAGE_PIXELS == 50


# --- reduced-size decoding --------------------------------------------------------------------


def test_draft_decodes_large_jpeg_at_reduced_size_covering_the_target():
    data = encode(Image.new("RGB", (1200, 900), (10, 120, 200)), "JPEG")
    options = DecodeOptions(target_size=(32, 32), draft_margin=3.0)
    image = decode_image(data, options)
    assert image.size == (150, 113)  # 1/8 scale
    assert min(image.size) >= 3 * 32
    full = decode_image(data, DecodeOptions(target_size=(32, 32), draft=False))
    assert full.size == (1200, 900)


def test_draft_stays_above_margin():
    data = encode(Image.new("RGB", (400, 300)), "JPEG")
    image = decode_image(data, DecodeOptions(target_size=(64, 64), draft_margin=2.0))
    assert image.size == (200, 150)  # 1/4 would give 75 px < 2 * 64
    assert decode_image(data, DecodeOptions(target_size=(224, 224))).size == (400, 300)


def test_draft_applies_to_camera_jpegs_that_open_as_mpo():
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (1200, 900), (10, 120, 200)), Image.new("RGB", (64, 48))
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    image = decode_image(buffer.getvalue(), DecodeOptions(target_size=(32, 32)))
    assert image.size == (150, 113)


def test_reduce_to_target_keeps_the_margin():
    image = Image.new("RGB", (1000, 700), (10, 120, 200))
    options = DecodeOptions(target_size=(32, 32), draft_margin=3.0)
    reduced = reduce_to_target(image, options)
    assert reduced.size == (143, 100)  # 1/7 (PIL rounds up): the short side stays >= 3 * 32
    assert tuple(np.asarray(reduced)[50, 50]) == (10, 120, 200)
    small = Image.new("RGB", (150, 120))
    assert reduce_to_target(small, options) is small  # no factor of 2 fits


def test_draft_never_applies_to_png():
    data = encode(Image.new("RGB", (1200, 900)))
    assert decode_image(data, DecodeOptions(target_size=(32, 32))).size == (1200, 900)


# --- refused images ---------------------------------------------------------------------------


def test_float_images_are_refused_not_blackened():
    # PIL would clip [0, 1] floats to 0-255 and give a black image without a word.
    image = Image.fromarray(np.full((4, 4), 0.8, dtype=np.float32), "F")
    with pytest.raises(ImageDecodeError, match="mode 'F'.*ambiguous"):
        with sample_errors(2, image):
            decode_image(image)
    with pytest.raises(ValueError, match="mode 'F'"):
        decode_image(encode(image, "TIFF"))


@pytest.mark.parametrize("size", [(0, 0), (0, 5), (5, 0)])
def test_images_without_pixels_are_refused(size):
    with pytest.raises(ValueError, match=rf"no pixels \({size[0]}x{size[1]}\)"):
        decode_image(Image.new("RGB", size))


# --- sources and errors -----------------------------------------------------------------------


def test_load_source_reads_paths(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(Image.new("RGB", (2, 2))))
    assert load_source(path) == path.read_bytes() == load_source(str(path))


@pytest.mark.parametrize(
    "item, message",
    [
        (None, "missing image"),
        (float("nan"), "missing image"),
        (b"", "empty bytes"),
        (3.5, "unsupported input type float"),
        (np.zeros((4, 4), dtype=np.float32), "dtype uint8"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "shape"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "no pixels"),
    ],
)
def test_load_source_rejects(item, message):
    with pytest.raises((ValueError, TypeError), match=message):
        load_source(item)


def run_with_timeout(function, timeout=10):
    """``function()`` in a daemon thread: its exception or result, or a failure if it blocks."""
    outcome = {}

    def target():
        try:
            outcome["result"] = function()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "reading blocked"
    return outcome


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome = run_with_timeout(lambda: load_source(str(fifo)))
    assert "named pipe (FIFO), not a regular file" in str(outcome["error"])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_devices_are_refused_without_reading():
    outcome = run_with_timeout(lambda: load_source("/dev/zero"))
    assert "character device, not a regular file" in str(outcome["error"])


def test_sockets_and_directories_are_refused(tmp_path):
    with pytest.raises(ValueError, match="is a directory, not a regular file"):
        load_source(tmp_path)
    if hasattr(socket, "AF_UNIX"):
        path = tmp_path / "s.jpg"
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            with pytest.raises(ValueError, match="is a socket, not a regular file"):
                load_source(path)


def test_bytes_read_are_capped(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(Image.new("RGB", (8, 8))))
    size = path.stat().st_size
    assert load_source(path, max_bytes=size) == path.read_bytes()
    assert load_source(path, max_bytes=None) == path.read_bytes()
    with pytest.raises(ValueError, match=f"limit of max_image_bytes={size - 1} bytes"):
        load_source(path, max_bytes=size - 1)
    with pytest.raises(ValueError, match="max_image_bytes=10 "):
        load_source(path.read_bytes(), max_bytes=10)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_read_stops_at_the_cap_when_the_size_is_unknown():
    assert os.stat("/proc/self/status").st_size == 0  # a regular file that reports no size
    with pytest.raises(ValueError, match="max_image_bytes=10 "):
        read_file("/proc/self/status", max_bytes=10)


def test_sample_errors_name_sample_path_and_reason(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ImageDecodeError) as info:
        with sample_errors(3, str(missing)):
            load_source(str(missing))
    error = info.value
    assert error.index == 3 and "file not found" in error.reason
    assert str(error).startswith(f"Sample 3 (path '{missing}')")
    assert isinstance(error.__cause__, FileNotFoundError)


def test_truncated_jpeg_is_an_error():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                      dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageDecodeError, match="truncated"):
        with sample_errors(0, data[: len(data) // 2]):
            decode_image(data[: len(data) // 2])


def test_not_an_image_is_an_error():
    with pytest.raises(ImageDecodeError, match="not an image"):
        with sample_errors(0, b"hello"):
            decode_image(b"hello, I am text")


def test_describe_input():
    assert describe_input("a.jpg") == "path 'a.jpg'"
    assert describe_input(b"abc") == "bytes, 3 bytes"
    assert describe_input(np.zeros((2, 3), np.uint8)) == "array, dtype uint8, shape (2, 3)"
    assert describe_input(Image.new("L", (4, 5))) == "PIL image, mode L, 4x5"
    assert describe_input(None) == "None"


def test_is_missing():
    import pandas as pd

    assert is_missing(None) and is_missing(float("nan")) and is_missing(pd.NA)
    assert not is_missing("") and not is_missing(0) and not is_missing(np.zeros(2))


def test_content_hash():
    array = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    assert content_hash(array) == content_hash(image)  # same pixels, same hash
    assert content_hash(encode(image)) == content_hash(encode(image))
    assert content_hash(encode(image)) != content_hash(encode(image, "BMP"))
    other = array.copy()
    other[0, 0, 0] ^= 1
    assert content_hash(other) != content_hash(array)
