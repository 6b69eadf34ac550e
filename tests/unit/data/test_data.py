"""Safe image loading and preprocessing."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_image, write_image_folder
from PIL import Image

from mushcam.data import (
    ImageLoadError,
    crop_box,
    load_image,
    preprocess,
    resolve_inside,
    scan_image_folder,
)
from mushcam.manifest import InputSpec


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), (200, 30, 30))
    wide.paste((30, 30, 200), (0, 0, 10, 20))  # blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(encode(wide, "JPEG", exif=exif, quality=95))
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[:5].reshape(-1, 3).mean(0)
    assert top[2] > 150 and top[0] < 100  # the blue band is now at the top


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 100, (100, 100, 100)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ],
)
def test_modes_become_rgb(mode, value, expected):
    image = Image.new(mode, (8, 8), value)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    loaded = load_image(encode(image, fmt))
    assert loaded.mode == "RGB"
    assert tuple(np.asarray(loaded)[4, 4]) == expected


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    loaded = np.asarray(load_image(encode(rgba, "PNG")))
    assert tuple(loaded[4, 4]) == (255, 255, 255)
    assert tuple(loaded[1, 1]) == (0, 0, 255)
    palette = rgba.convert("P")
    assert load_image(encode(palette, "PNG")).mode == "RGB"


def test_16_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    loaded = np.asarray(load_image(encode(image, "PNG")))[0, :, 0]
    assert loaded.tolist() == [0, 128, 255]


def test_animated_image_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = np.asarray(load_image(data))
    assert loaded[0, 0, 0] > 200 and loaded[0, 0, 1] < 50


def test_webp_bmp_tiff_load(tmp_path: Path):
    image = make_image(32, 24)
    for fmt, suffix in (("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tiff")):
        path = tmp_path / f"x.{suffix}"
        image.save(path, format=fmt)
        assert load_image(path).size == (32, 24)


def png_with_header(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height (a decompression bomb's trick)."""
    data = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"this is plain text, not a picture", "not an image file"),
        (png_with_header(20000, 20000), "too large|limit is 64 MP"),
        (png_with_header(9000, 9000), "limit is 64 MP"),
    ],
)
def test_bad_inputs_are_refused_clearly(data, message):
    with pytest.raises(ImageLoadError, match=message):
        load_image(data)


def test_truncated_image_is_refused():
    data = encode(make_image(64, 64), "JPEG")
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_size_limits(tmp_path: Path):
    with pytest.raises(ImageLoadError, match="larger than the limit of 100 bytes"):
        load_image(encode(make_image(), "PNG"), max_bytes=100)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 200_000)
    with pytest.raises(ImageLoadError, match="big.png is 0.2 MB; the limit is 0.1 MB"):
        load_image(big, max_bytes=100_000)
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_preprocess_squash_and_center_crop():
    image = Image.new("RGB", (300, 100), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 100, 100))  # left third black
    squash = preprocess(image, InputSpec(size=32, resize="squash", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    crop = preprocess(image, InputSpec(size=32, resize="center_crop", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert squash.shape == crop.shape == (3, 32, 32)
    assert float(squash[0, 16, 2]) == pytest.approx(-1.0)  # black squashed into the left third
    assert float(squash[0, 16, 30]) == pytest.approx(1.0)
    assert torch.allclose(crop, torch.ones_like(crop))  # the centre square is all white
    assert crop_box((300, 100), InputSpec(resize="center_crop")) == (100, 0, 200, 100)
    assert crop_box((300, 100), InputSpec(resize="squash")) == (0, 0, 300, 100)


def test_preprocess_normalises_with_mean_and_std():
    image = Image.new("RGB", (10, 10), (255, 0, 51))
    tensor = preprocess(image, InputSpec(size=4, mean=(0.5, 0.5, 0.2), std=(0.5, 0.25, 0.1)))
    assert tensor[:, 0, 0].tolist() == pytest.approx([1.0, -2.0, 0.0], abs=1e-6)


def test_scan_image_folder_and_resolve_inside(tmp_path: Path):
    root = write_image_folder(tmp_path / "data", ["Boletus", "Amanita"], per_class=2)
    (root / "Amanita" / "notes.txt").write_text("ignored")
    found = scan_image_folder(root)
    assert [(f.label, f.relpath) for f in found] == [
        ("Amanita", "Amanita/img_0.png"),
        ("Amanita", "Amanita/img_1.png"),
        ("Boletus", "Boletus/img_0.png"),
        ("Boletus", "Boletus/img_1.png"),
    ]
    assert resolve_inside(root, "Amanita/img_0.png") == (root / "Amanita" / "img_0.png").resolve()
    for bad in ("../outside.png", "/etc/passwd", "Amanita/../../x.png"):
        with pytest.raises(ValueError, match="outside the data folder"):
            resolve_inside(root, bad)
