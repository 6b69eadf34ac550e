"""Safe image loading, preprocessing to the manifest's input spec, and test-set scanning."""

from __future__ import annotations

from mushcam.exceptions import MushcamError

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from mushcam.manifest import InputSpec

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MAX_BYTES = 50 * 1024 * 1024  # 50 MB: larger than any camera JPEG
MAX_PIXELS = 64_000_000  # 64 MP: refuses decompression bombs before decoding

ImageSource = str | os.PathLike[str] | bytes | BinaryIO


class ImageLoadError(MushcamError):
    """The input is not an image we can safely decode (the message says why)."""


def read_bytes(source: ImageSource, max_bytes: int = MAX_BYTES) -> bytes:
    """The raw bytes of a path, a bytes object or a file-like object, size-checked."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"no such file: {path}")
        if path.stat().st_size > max_bytes:
            raise ImageLoadError(f"{path.name} is {_size(path.stat().st_size)}; the limit is {_size(max_bytes)}")
        data = path.read_bytes()
    else:
        data = source.read(max_bytes + 1)
    if len(data) == 0:
        raise ImageLoadError("the file is empty")
    if len(data) > max_bytes:
        raise ImageLoadError(f"the file is larger than the limit of {_size(max_bytes)}")
    return data


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes:,} bytes"


def image_sha256(data: bytes) -> str:
    """Hex SHA-256 of an image file's bytes: the image's identity in caches and stores."""
    return hashlib.sha256(data).hexdigest()


def load_image(
    source: ImageSource, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Decode an image into an 8-bit RGB PIL image, safely.

    EXIF orientation is applied; greyscale, alpha (composited on white), palette, CMYK and
    16-bit images are converted; an animated image gives its first frame. Empty, truncated,
    non-image and oversized (decompression-bomb) inputs raise :class:`ImageLoadError`.
    """
    return decode_image(read_bytes(source, max_bytes), max_pixels)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode already-read bytes; see :func:`load_image`."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageLoadError("this is not an image file that can be read (jpg, png, webp, bmp, tiff, gif)") from None
    except Image.DecompressionBombError:
        raise ImageLoadError("the image is too large to decode safely") from None
    except Exception as exc:  # noqa: BLE001 - malformed headers raise many types
        raise ImageLoadError(f"the image data is truncated or corrupt ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
            f"the limit is {max_pixels / 1e6:.0f} MP"
        )
    if width < 1 or height < 1:
        raise ImageLoadError("the image has no pixels")
    try:
        image.seek(0)  # animated GIF/WebP/TIFF: first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise ImageLoadError(f"the image data is truncated or corrupt ({exc})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, scaling 16/32-bit and float data instead of clipping."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max(initial=0))
        if mode.startswith("I;16") or (mode == "I" and 255 < peak <= 65535 and values.min(initial=0) >= 0):
            scaled = values / 257.0  # full 16-bit range onto 0..255
        elif mode == "I" and 0 <= values.min(initial=0) and peak <= 255:
            scaled = values
        else:  # float data or an unusual integer range: stretch to its own range
            low = float(values.min(initial=0))
            scaled = (values - low) / max(peak - low, 1e-12) * 255.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def crop_box(image_size: tuple[int, int], spec: InputSpec) -> tuple[int, int, int, int]:
    """The region of the original image (left, top, right, bottom) that the network sees.

    ``squash`` uses the whole image; ``center_crop`` the central square of side min(W, H).
    """
    width, height = image_size
    if spec.resize == "squash":
        return (0, 0, width, height)
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return (left, top, left + side, top + side)


def preprocess(image: Image.Image, spec: InputSpec) -> torch.Tensor:
    """A normalised ``3 x size x size`` float tensor: crop (if any), resize, (x - mean) / std."""
    region = image.crop(crop_box(image.size, spec)) if spec.resize == "center_crop" else image
    resized = region.convert("RGB").resize((spec.size, spec.size), Image.Resampling.BILINEAR, reducing_gap=None)
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (tensor - mean) / std


@dataclass(frozen=True)
class LabelledImage:
    path: Path  # absolute
    relpath: str  # relative to the data root, with forward slashes
    label: str  # the class folder's name


def scan_image_folder(root: str | os.PathLike[str]) -> list[LabelledImage]:
    """Every image under ``root/<Class>/`` (recursively), sorted by class then path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    found = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
                found.append(LabelledImage(path.resolve(), path.relative_to(root).as_posix(), class_dir.name))
    return found


def resolve_inside(root: str | os.PathLike[str], relpath: str) -> Path:
    """``root / relpath``, refusing any path that resolves outside ``root`` (.., links)."""
    base = Path(root).resolve()
    target = (base / relpath).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"refused path outside the data folder: {relpath!r}")
    return target
