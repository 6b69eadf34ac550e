"""load_image's ``draft`` option: thumbnails decode a JPEG at reduced scale, and the limits still hold."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from factories import make_image

from mushcam.data import ImageLoadError, decode_image, load_image


def jpeg_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    make_image(width, height).save(buffer, "JPEG", quality=85, exif=_rotated_exif())
    return buffer.getvalue()


def _rotated_exif() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
    return exif.tobytes()


def test_a_jpeg_is_decoded_at_the_smallest_scale_that_stays_above_the_draft_size() -> None:
    data = jpeg_bytes(1600, 1200)
    full = decode_image(data)
    small = decode_image(data, draft=(160, 160))
    assert full.size == (1200, 1600)  # EXIF orientation applied, draft or not
    # 1600 // 160 = 10 and 1200 // 160 = 7: the largest of 1/8, 1/4, 1/2 within both is 1/4 (400 x 300), then rotated
    assert small.size == (300, 400) and small.mode == "RGB"
    reduced = np.asarray(full.resize(small.size), dtype=float)
    assert np.abs(reduced - np.asarray(small, dtype=float)).mean() < 12  # the same picture


def test_the_limits_apply_to_the_declared_size_with_a_draft(tmp_path: Path) -> None:
    side = 9000  # 81 MP declared in a 1-bit PNG of a few kB
    rows = (b"\x00" + bytes((side + 7) // 8)) * side

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    with pytest.raises(ImageLoadError, match=r"9000x9000 pixels \(81 MP\); the limit is 64 MP"):
        decode_image(png, draft=(160, 160))
    other = decode_image(jpeg_bytes(64, 48), draft=(160, 160))
    assert other.size == (48, 64)  # smaller than the draft: decoded as it is
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="the file is empty"):
        load_image(tmp_path / "x.jpg", draft=(160, 160))
