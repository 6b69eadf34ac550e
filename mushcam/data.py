"""Safe image loading, preprocessing to the manifest's input spec, and test-set scanning."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from mushcam.exceptions import MushcamError
from mushcam.manifest import InputSpec
from mushcam.text import terminal_safe

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MAX_BYTES = 50 * 1024 * 1024  # 50 MB: larger than any camera JPEG
MAX_PIXELS = 64_000_000  # 64 MP: refuses decompression bombs before decoding
DISPLAY_MAX_SIDE = 1024  # px: the display copy of a photo (app, compare, views); the model sees full resolution

ImageSource = str | os.PathLike[str] | bytes | BinaryIO


class ImageLoadError(MushcamError):
    """The input is not an image we can safely decode (the message says why)."""


class DataFolderError(MushcamError, FileNotFoundError):
    """A data folder cannot be scanned (missing, not a folder, or far too large to be a data set)."""


MAX_SCAN_ENTRIES = 1_000_000  # files and folders looked at under one data root before giving up


def read_bytes(source: ImageSource, max_bytes: int = MAX_BYTES) -> bytes:
    """The raw bytes of a path, a bytes object or a file-like object, size-checked.

    The one bounded reader: a path is stat'ed before it is opened (a 3 GB file is refused
    from its size, a device or pipe from its type) and never more than ``max_bytes + 1``
    bytes are read from anything, so a file that grows meanwhile cannot exhaust memory.
    """
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(Path(source), max_bytes)
    else:
        data = source.read(max_bytes + 1)
    if len(data) == 0:
        raise ImageLoadError("the file is empty")
    if len(data) > max_bytes:
        raise ImageLoadError(f"the file is larger than the limit of {_size(max_bytes)}")
    return data


_SPECIAL_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def _read_path(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of a regular file, refused by its size before reading."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageLoadError(f"{printable(path)} is a link to a file that does not exist") from None
        raise ImageLoadError(f"no such file: {printable(path)}") from None
    except OSError as exc:
        raise ImageLoadError(f"cannot read {printable(path)}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageLoadError(f"{printable(path)} is a folder, not an image file; give one image file")
    special = next((what for test, what in _SPECIAL_FILES if test(info.st_mode)), None)
    if special:
        raise ImageLoadError(f"{printable(path)} is {special}, not an image file; give one image file")
    if info.st_size > max_bytes:
        raise ImageLoadError(f"{printable(path.name)} is {_size(info.st_size)}; the limit is {_size(max_bytes)}")
    try:
        with open(path, "rb") as handle:
            return handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageLoadError(f"cannot read {printable(path)}: {exc.strerror or exc}") from None


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes:,} bytes"


def image_sha256(data: bytes) -> str:
    """Hex SHA-256 of an image file's bytes: the image's identity in caches and stores."""
    return hashlib.sha256(data).hexdigest()


def load_image(
    source: ImageSource, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image into an 8-bit RGB PIL image, safely: the one way MushCAM opens a photo.

    EXIF orientation is applied; greyscale, alpha (composited on white), palette, CMYK and
    16-bit images are converted; an animated image gives its first frame. Empty, truncated,
    non-image and oversized (decompression-bomb) inputs raise :class:`ImageLoadError`.
    ``draft=(w, h)`` is for thumbnails: a JPEG is decoded at the smallest scale 1/1, 1/2,
    1/4 or 1/8 that stays at least ``w x h`` (``Image.draft``; other formats decode in full).
    The limits apply to the size the file declares, draft or not.
    """
    return decode_image(read_bytes(source, max_bytes), max_pixels, draft)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None) -> Image.Image:
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
        if draft is not None:
            image.draft(None, draft)  # JPEG: decode at a reduced scale; a no-op for other formats
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


def printable(path: str | os.PathLike[str], terminal: bool = False) -> str:
    """A path as text that any file, terminal, database or web page accepts.

    File names are bytes on Linux; one that is not valid UTF-8 reaches Python with
    surrogate escapes, which SQLite, CSV files, JSON and Streamlit refuse. Such bytes are
    shown as ``\\xNN`` escapes. With ``terminal``, control and format characters too (ESC,
    CR, bidi overrides: ``\\x1b``, ``\\r``, ``\\u202e``), which would recolour a terminal,
    move its cursor or reorder the line: for names printed, never for names stored.
    """
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return terminal_safe(text) if terminal else text


def is_utf8_name(path: str | os.PathLike[str]) -> bool:
    """Whether a path can be written as UTF-8 text (stored, shown) without loss."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class FolderScan:
    """The images of a ``root/<Class>/`` folder, and what was left out with the reason."""

    images: list[LabelledImage]
    skipped: list[tuple[str, str]]  # (path relative to the root, printable; reason)


def _links_above(folder: Path, root: Path) -> Path | None:
    """Where a symlinked class folder points when that would walk the data root again or
    everything above it (``/``, the root itself, one of its parents); None when it is safe."""
    if not folder.is_symlink():
        return None
    target = folder.resolve()
    if target == root or target in root.parents or target == Path(target.anchor):
        return target
    return None


def scan_images(root: str | os.PathLike[str], max_entries: int = MAX_SCAN_ENTRIES) -> FolderScan:
    """Every image under ``root/<Class>/`` (recursively), sorted by class then path.

    Symlinked image files are followed (a data set made of links is common); links to
    folders below a class folder are not. A class folder that links to ``/``, to the root or
    above it is skipped. Files whose names are not valid UTF-8 are skipped with the reason
    (they cannot be stored or shown). More than ``max_entries`` files and folders is refused:
    the root is then not a data set.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataFolderError(f"data folder not found: {printable(root)}")
    resolved_root = root.resolve()
    found: list[LabelledImage] = []
    skipped: list[tuple[str, str]] = []
    seen = 0
    try:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DataFolderError(f"cannot list the data folder {printable(root)}: {exc.strerror or exc}") from None
    for class_dir in class_dirs:
        if not is_utf8_name(class_dir.name):
            skipped.append((printable(class_dir.name), "the class folder's name is not valid UTF-8; rename it"))
            continue
        target = _links_above(class_dir, resolved_root)
        if target is not None:
            reason = f"the class folder links to {target}, which holds the data folder itself; not followed"
            skipped.append((class_dir.name, reason))
            continue
        files: list[Path] = []
        for folder, _dirs, names in os.walk(class_dir, onerror=None, followlinks=False):
            seen += 1 + len(_dirs) + len(names)
            if seen > max_entries:
                raise DataFolderError(
                    f"more than {max_entries:,} files and folders under {printable(root)}: that is not a data set "
                    "of ROOT/<Class>/<image>; point at the folder that holds the class folders"
                )
            files.extend(Path(folder, name) for name in names)
        for path in sorted(files, key=lambda p: p.parts):
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            relpath = path.relative_to(root).as_posix()
            if not is_utf8_name(relpath):
                skipped.append((printable(relpath), "the file name is not valid UTF-8; rename the file"))
                continue
            if not path.is_file():
                if path.is_symlink():
                    skipped.append((relpath, "a link to a file that does not exist"))
                continue
            found.append(LabelledImage(path.resolve(), relpath, class_dir.name))
    return FolderScan(found, skipped)


def scan_image_folder(root: str | os.PathLike[str]) -> list[LabelledImage]:
    """Every usable image under ``root/<Class>/``: :func:`scan_images` without the skip list."""
    return scan_images(root).images


def resolve_inside(root: str | os.PathLike[str], relpath: str) -> Path:
    """``root / relpath``, refusing an absolute path or one that climbs out with ``..``.

    The check is on the path as written, not on where links point: a data folder made of
    symlinked files is accepted here as in ``evaluate``, ``gradcam`` and ``compare``.
    """
    base = Path(root).expanduser().resolve()
    parts = Path(relpath).parts
    if not relpath or Path(relpath).is_absolute() or ".." in parts:
        raise MushcamError(f"refused path outside the data folder: {relpath!r}")
    return base / relpath
