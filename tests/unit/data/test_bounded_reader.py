"""The one bounded file reader (``mushcam.data.read_bytes``): stat first, read at most
``max_bytes + 1``. A 3 GB sample (sparse: no disk is spent) is refused from its size without
its bytes entering memory; a device, a pipe or a folder is named, never opened or read forever."""

from __future__ import annotations

import io
import os
import resource
import time
from pathlib import Path

import pytest

from mushcam.data import MAX_BYTES, ImageLoadError, read_bytes


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def test_a_3_gb_file_is_refused_from_its_size_in_bounded_memory(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "huge.jpg", 3 * 10**9)
    before, start = peak_mb(), time.perf_counter()
    with pytest.raises(ImageLoadError) as error:
        read_bytes(path)
    assert str(error.value) == "huge.jpg is 3000.0 MB; the limit is 52.4 MB"
    assert time.perf_counter() - start < 1.0
    assert peak_mb() - before < 20  # a whole read would have raised the peak by 3,000 MB


def test_a_file_that_grows_after_stat_is_read_at_most_once_past_the_limit(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = sparse_file(tmp_path / "growing.png", 4096)
    with pytest.raises(ImageLoadError, match="growing.png is 4,096 bytes; the limit is 1,000 bytes"):
        read_bytes(path, max_bytes=1000)  # refused from its size
    real_stat = Path.stat

    def stat_before_it_grew(self: Path, **kwargs: object) -> os.stat_result:
        info = real_stat(self, **kwargs)
        return os.stat_result((*info[:6], 10, *info[7:])) if self.name == "growing.png" else info

    monkeypatch.setattr(Path, "stat", stat_before_it_grew)  # stat saw 10 bytes; 4,096 are there to read
    with pytest.raises(ImageLoadError, match="larger than the limit of 1,000 bytes"):
        read_bytes(path, max_bytes=1000)
    stream = io.BytesIO(b"x" * 5000)
    with pytest.raises(ImageLoadError, match="larger than the limit"):
        read_bytes(stream, max_bytes=1000)
    assert stream.tell() == 1001  # read to max_bytes + 1, no further


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p.symlink_to("/dev/zero"), "link.jpg is a character device, not an image file"),
    (lambda p: os.mkfifo(p), "link.jpg is a named pipe (FIFO), not an image file"),
    (lambda p: p.mkdir(), "link.jpg is a folder, not an image file"),
    (lambda p: p.symlink_to(p.parent / "gone.jpg"), "link.jpg is a link to a file that does not exist"),
])
def test_what_is_not_a_regular_file_is_named_not_read(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / "link.jpg"
    make(path)
    start = time.perf_counter()
    with pytest.raises(ImageLoadError) as error:
        read_bytes(path)
    assert expected in str(error.value)
    assert time.perf_counter() - start < 1.0  # /dev/zero never ends; a FIFO's open never returns


def test_the_limit_is_the_documented_one() -> None:
    assert MAX_BYTES == 50 * 1024 * 1024
