"""check-data on hostile data folders (issue 18, section 2): one clear answer each, nothing lost, memory bounded.

Each case runs ``python -m mushcam check-data`` in this process (``mushcam.cli.main``), except the
memory peak, which is measured in a child process (VmHWM). The data set is tiny: a photo and its
byte-identical copy across splits (one pair that must still be found) and an unrelated photo.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import sqlite3
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from factories import make_image
from project_paths import PROJECT_ROOT

from mushcam import store
from mushcam.review import store as review_store

BOMB_SIDE = 13_300  # 177 MP declared: under Pillow's own refusal (179 MP), over MushCAM's 64 MP limit


def write_bomb_png(path: Path, side: int = BOMB_SIDE) -> None:
    """A valid 1-bit PNG of side x side black pixels: a few tens of kB that decode to 177 MP."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes((side + 7) // 8)) * side  # filter byte 0, then the packed bits of one row
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
                     + chunk(b"IEND", b""))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "mushrooms"
    for folder in ("train/A", "test/A", "test/B"):
        (root / folder).mkdir(parents=True)
    make_image(160, 120, seed=3).save(root / "train/A/photo.jpg", quality=90)
    (root / "test/A/copy.jpg").write_bytes((root / "train/A/photo.jpg").read_bytes())
    make_image(160, 120, seed=8).save(root / "test/B/other.jpg", quality=90)
    return root


def make_store(path: Path, data: Path) -> Path:
    """A MushCAM results store with one (empty) run, as evaluate writes it."""
    store.save_run(path, store.RunRecord("resnet50", "x.pt", "0" * 64, "layer4", str(data / "test"),
                                         {"classes": [{"name": "A"}, {"name": "B"}]}, "t", "t", {}, 1, 1.0, 0),
                   store.Predictions((), (), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 2), np.float32)))
    return path


def the_pair_is_found(out: str) -> bool:
    return "near-duplicate pairs: 1 (1 across splits" in out and "train/A/photo.jpg  <->  test/A/copy.jpg" in out


# ------------------------------------------------------------------------------ the one image-opening function


def test_a_png_declaring_177_megapixels_is_skipped_with_the_pixel_limit(dataset: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    write_bomb_png(dataset / "train/A/bomb.png")
    assert (dataset / "train/A/bomb.png").stat().st_size < 200_000
    rc, out, err = run_cli(["check-data", str(dataset), "--no-geometric"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    assert ("unreadable: train/A/bomb.png: the image is 13300x13300 pixels (177 MP); the limit is 64 MP"
            in out.splitlines())
    assert "3 photos (train 1, test 2)" in out and the_pair_is_found(out)


def test_a_sparse_3_gb_file_is_skipped_by_its_size_not_read(dataset: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    huge = dataset / "test/A/huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(3 * 1024**3)  # sparse: 3 GB long, no blocks on disk
    read_whole = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read_whole.append(self.name) or original(self))
    rc, out, err = run_cli(["check-data", str(dataset), "--no-geometric"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    line = next(line for line in out.splitlines() if line.startswith("unreadable: test/A/huge.jpg: "))
    assert "3221.2 MB" in line and "the limit is 52.4 MB" in line
    assert "huge.jpg" not in read_whole  # refused from its size, never read
    assert the_pair_is_found(out)


def test_the_bomb_and_the_sparse_file_keep_the_peak_memory_bounded(dataset: Path) -> None:
    """Before: 2.3 GB (the PNG decoded in full) and 3.9 GB (the sparse file read whole). Now the work adds at most
    150 MB to what the imports (torch, OpenCV) already hold."""
    write_bomb_png(dataset / "train/A/bomb.png")
    with open(dataset / "test/A/huge.jpg", "wb") as handle:
        handle.truncate(3 * 1024**3)
    script = (
        "import re, sys\n"
        "def peak(): return re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "from mushcam.cli import main\n"
        "import mushcam.review.dedup, mushcam.review.matching, mushcam.store  # what check-data imports\n"
        "imported = peak()\n"
        "rc = main(sys.argv[1:])\n"
        "print('VmHWM', imported, peak(), rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "check-data", str(dataset)], capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    imported_kb, peak_kb, rc = (int(v) for v in done.stdout.split("VmHWM")[1].split())
    assert rc == 0 and peak_kb - imported_kb < 150_000, f"the work added {(peak_kb - imported_kb) / 1e3:.0f} MB"
    assert peak_kb < 1_200_000, f"peak {peak_kb / 1e3:.0f} MB"
    assert "unreadable: train/A/bomb.png: the image is 13300x13300 pixels (177 MP)" in done.stdout
    assert "unreadable: test/A/huge.jpg: " in done.stdout and the_pair_is_found(done.stdout)


# ------------------------------------------------------------------------------ names


def test_non_utf8_names_are_skipped_and_the_csv_and_store_hold_the_real_rows(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = (dataset / "train/A/photo.jpg").read_bytes()
    base = os.fsencode(dataset)
    with open(base + b"/test/A/caf\xe9.jpg", "wb") as handle:  # Latin-1 bytes: not UTF-8
        handle.write(photo)
    os.mkdir(base + b"/test/Caf\xe9")
    with open(base + b"/test/Caf\xe9/x.jpg", "wb") as handle:
        handle.write(photo)
    results = make_store(tmp_path / "results.sqlite", dataset)
    pairs = tmp_path / "pairs.csv"
    rc, out, err = run_cli(["check-data", str(dataset), "--store", str(results), "--csv", str(pairs)], capsys)
    assert rc == 0 and "Traceback" not in out + err and err == ""
    lines = out.splitlines()
    assert "unreadable: test/A/caf\\xe9.jpg: the file name is not valid UTF-8; rename the file" in lines
    assert "not walked: test/Caf\\xe9: the class folder's name is not valid UTF-8; rename it" in lines
    assert the_pair_is_found(out) and "1 pairs written to" in out
    rows = list(csv.reader(pairs.open(encoding="utf-8")))
    assert [r[:4] for r in rows] == [["path", "split", "other_path", "other_split"],
                                     ["train/A/photo.jpg", "train", "test/A/copy.jpg", "test"]]
    marks = review_store.load_duplicates(results)
    assert sorted(m.image_path for ms in marks.values() for m in ms) == ["test/A/copy.jpg", "train/A/photo.jpg"]


def test_escape_sequences_in_names_never_reach_the_terminal(dataset: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    name = "\x1b[31mred\rmask.jpg"
    (dataset / "test/B" / name).write_bytes((dataset / "train/A/photo.jpg").read_bytes())
    (dataset / "test/B" / f"\x1b]0;title\x07{name}").write_bytes(b"")  # empty: listed as unreadable
    pairs = tmp_path / "pairs.csv"
    rc, out, err = run_cli(["check-data", str(dataset), "--csv", str(pairs), "--no-geometric"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out + err)  # no ESC, CR, BEL: only newlines
    assert "  0  train/A/photo.jpg  <->  test/B/\\x1b[31mred\\rmask.jpg" in out
    assert "unreadable: test/B/\\x1b]0;title\\x07\\x1b[31mred\\rmask.jpg: the file is empty" in out
    stored = {row[2] for row in csv.reader(pairs.open(encoding="utf-8", newline=""))}
    assert f"test/B/{name}" in stored  # the CSV keeps the real name: nothing is lost
    rc, out, err = run_cli(["check-data", str(tmp_path / "gone\x1b[2J")], capsys)
    assert rc == 2 and err.strip().endswith("data folder not found: " + str(tmp_path / "gone\\x1b[2J"))


def test_two_thousand_empty_files_are_summarised_in_a_bounded_number_of_lines(
        dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(2000):
        (dataset / f"train/A/empty{n:04d}.jpg").touch()
    (dataset / "train/A/zz_text.png").write_text("not a picture")
    rc, out, err = run_cli(["check-data", str(dataset), "--no-geometric"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    lines = out.splitlines()
    assert len(lines) <= 20
    assert ("unreadable: 2,001 files skipped: 2,000 the file is empty; 1 this is not an image file that can be "
            "read (jpg, png, webp, bmp, tiff, gif)") in lines
    examples = [line for line in lines if line.startswith("  train/A/")]
    assert len(examples) == 10 and examples[-1].startswith("  train/A/zz_text.png: this is not an image")
    assert "  … and 1,991 more (--list-skipped lists them all)" in lines and the_pair_is_found(out)
    rc, out, _ = run_cli(["check-data", str(dataset), "--no-geometric", "--list-skipped"], capsys)
    assert rc == 0 and sum(line.startswith("unreadable: train/A/") for line in out.splitlines()) == 2001
    assert "unreadable: train/A/empty1999.jpg: the file is empty" in out.splitlines()


# ------------------------------------------------------------------------------ outputs checked before the work


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` cannot be written, even by root (the immutable attribute), for the block."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot make a read-only file")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another program holds the store's write lock for the block."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


BAD_OUTPUTS = {
    "csv in a missing folder": (["--csv", "{tmp}/missing/pairs.csv"], None,
                                "cannot write --csv {tmp}/missing/pairs.csv: the folder {tmp}/missing does not exist"),
    "csv is a folder": (["--csv", "{tmp}"], None, "--csv {tmp} is a folder; give a file name"),
    "read-only store": (["--store", "{store}"], read_only,
                        "cannot write to the results store {store}: the file or its folder is read-only"),
    "locked store": (["--store", "{store}"], locked, "the results store {store} is locked by another program"),
    "missing store": (["--store", "{tmp}/absent.sqlite"], None, "no results store at {tmp}/absent.sqlite"),
}


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_an_output_that_cannot_be_written_is_refused_before_any_photo_is_read(
        case: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    options, hold, message = BAD_OUTPUTS[case]
    results = make_store(tmp_path / "results.sqlite", dataset)
    before = results.read_bytes(), sorted(p.name for p in tmp_path.iterdir())
    opened = []
    monkeypatch.setattr("mushcam.review.dedup.read_bytes", lambda path: opened.append(path) or b"")
    monkeypatch.setattr("mushcam.store.connection.DEFAULT_TIMEOUT", 0.2)
    argv = ["check-data", str(dataset)] + [o.format(tmp=tmp_path, store=results) for o in options]
    with hold(results) if hold else contextlib.nullcontext():
        rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and out == "" and "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("error: " + message.format(tmp=tmp_path, store=results))
    assert opened == []  # refused before the first photo
    assert (results.read_bytes(), sorted(p.name for p in tmp_path.iterdir())) == before


def test_a_csv_that_fails_at_the_end_leaves_the_earlier_file_whole(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("the earlier run's pairs\n")

    def disk_full(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mushcam.files.os.replace", disk_full)
    rc, out, err = run_cli(["check-data", str(dataset), "--csv", str(pairs), "--no-geometric"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == f"error: cannot write {pairs}: No space left on device"
    assert pairs.read_text() == "the earlier run's pairs\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mushrooms", "pairs.csv"]  # no temp file left
