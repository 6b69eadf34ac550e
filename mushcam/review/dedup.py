"""Near-duplicate photos across a dataset's splits: perceptual hashes robust to crops and watermarks.

A test photo whose near-twin (same scene, other crop, a watermark added) sits in the
training split inflates test accuracy and hides errors. Each photo gets a 64-bit DCT
perceptual hash (pHash) of its whole frame and of :data:`CROPS` sub-frames (the centre and
the four corners at 80 % and 65 % of each side)::

    grey 32x32 (area average) -> C = D X D^T (2-D DCT-II) -> the 8x8 lowest frequencies without C[0,0]
               -> bit = coefficient > their median

Two photos are near-duplicates when the Hamming distance between one's whole-frame hash
and *any* hash of the other (whole or a sub-frame) is at most ``threshold`` bits: a crop
of a photo matches the sub-frame of the original that it shows; a watermark changes few
low-frequency coefficients. Unrelated photos differ in about 32 of 64 bits, but photos of
a pale cap on dark ground come within 12 bits of each other, so a candidate must also
match in colour: the mean absolute difference of the aligned 12x12 RGB thumbnails (0-255)
at most ``max_colour_diff`` (the best alignment over the same sub-frames).

Every photo is opened by :func:`mushcam.data.load_image` (the byte and pixel limits of the rest of
MushCAM: a sparse 3 GB file or a PNG declaring 177 MP is skipped with the reason, never read or
decoded), with ``draft`` so that JPEGs are decoded at reduced size: a 1,500-photo set takes seconds.
Skipped files are summarised by reason (:func:`format_check`); file names are printed with
:func:`mushcam.data.printable` (``terminal=True``), stored as they are (valid UTF-8 only).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mushcam.data import ImageSource, image_sha256, is_utf8_name, load_image, printable, read_bytes
from mushcam.exceptions import MushcamError
from mushcam.review.paths import image_files
from mushcam.review.store import NearDuplicate

SPLITS: tuple[str, ...] = ("train", "val", "test")
NAME_NOT_UTF8 = "the file name is not valid UTF-8; rename the file"  # as evaluate, gradcam and compare say
FOLDER_NOT_UTF8 = "the class folder's name is not valid UTF-8; rename it"
SKIPPED_EXAMPLES = 10  # skipped files listed on screen (all of them with --list-skipped)
DEFAULT_THRESHOLD = 12
DEFAULT_COLOUR_DIFF = 24.0
HASH_SIDE = 32
COLOUR_SIDE = 12
# (scale, anchor x, anchor y): anchor 0 = left/top, 0.5 = centre, 1 = right/bottom
CROPS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.5, 0.5),
    *((s, ax, ay) for s in (0.8, 0.65) for ax, ay in ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1))),
)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(HASH_SIDE)
_WEIGHTS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def _bits(low: np.ndarray) -> np.ndarray:
    """uint64 hashes of (N, 64) low-frequency blocks: bit = coefficient > the block's median (DC excluded, set 0)."""
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)
    bits[:, 0] = False  # the mean brightness says little about the scene
    return (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)


def phash(grey: np.ndarray) -> int:
    """64-bit DCT hash of a 2-D grey array (any size; area-averaged to 32x32 first)."""
    small = cv2.resize(np.asarray(grey, dtype=np.float32), (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
    low = (_DCT @ small.astype(np.float64) @ _DCT.T)[:8, :8].reshape(1, 64)
    return int(_bits(low)[0])


def thumbnail(source: ImageSource, side: int = 160) -> np.ndarray:
    """The photo (a path or its bytes) in RGB at about ``side`` px, float32; EXIF rotation applied.

    Opened by :func:`mushcam.data.load_image` (byte and pixel limits; JPEG decoded at reduced
    size): a file it refuses raises :class:`mushcam.data.ImageLoadError` with the reason.
    """
    image = load_image(source, draft=(side, side))
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def fingerprint(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 pHash and 12x12 RGB thumbnail of the whole frame and of every sub-frame in :data:`CROPS`."""
    height, width = rgb.shape[:2]
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    smalls = np.empty((len(CROPS), HASH_SIDE, HASH_SIDE), dtype=np.float64)
    colours = np.empty((len(CROPS), COLOUR_SIDE, COLOUR_SIDE, 3), dtype=np.float32)
    for n, (scale, ax, ay) in enumerate(CROPS):
        w, h = max(2, round(width * scale)), max(2, round(height * scale))
        x0, y0 = round((width - w) * ax), round((height - h) * ay)
        smalls[n] = cv2.resize(grey[y0:y0 + h, x0:x0 + w], (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
        colours[n] = cv2.resize(rgb[y0:y0 + h, x0:x0 + w], (COLOUR_SIDE, COLOUR_SIDE), interpolation=cv2.INTER_AREA)
    low = (_DCT @ smalls @ _DCT.T)[:, :8, :8].reshape(len(CROPS), 64)  # one batched 2-D DCT
    return _bits(low), colours


def colour_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute RGB difference (0-255) of two photos' thumbnails, at the best sub-frame alignment."""
    one = np.abs(a[0][None] - b).mean(axis=(1, 2, 3)).min()
    two = np.abs(b[0][None] - a).mean(axis=(1, 2, 3)).min()
    return float(min(one, two))


def distances(hashes: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(N, N) uint8: min Hamming distance between one photo's whole-frame hash and any hash of the
    other, symmetrised."""
    n = len(hashes)
    whole = hashes[:, 0]
    out = np.empty((n, n), dtype=np.uint8)
    for start in range(0, n, chunk):
        block = whole[start:start + chunk, None, None] ^ hashes[None, :, :]
        out[start:start + chunk] = np.bitwise_count(block).min(axis=2)
    return np.minimum(out, out.T)


@dataclass(frozen=True)
class DataCheck:
    """What ``check-data`` found. Paths are relative to the data folder (``test/Amanita/x.jpg``)."""

    root: str
    counts: dict[str, int]  # images per split
    pairs: tuple[NearDuplicate, ...]  # every near-duplicate pair (image in the earlier split first)
    threshold: int
    max_colour_diff: float
    seconds: float
    unreadable: tuple[tuple[str, str], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # folders not walked, and why
    exact: int = 0  # pairs with identical bytes
    geometric: dict[tuple[str, str], str] = field(default_factory=dict)  # pairs only the second stage found: why

    def cross_split(self) -> list[NearDuplicate]:
        return [p for p in self.pairs if p.split != p.other_split]

    def with_twin_in(self, split: str, other: str) -> set[str]:
        """Paths of ``split`` images with a near-duplicate in ``other``."""
        found = set()
        for p in self.pairs:
            if p.split == split and p.other_split == other:
                found.add(p.image_path)
            if p.other_split == split and p.split == other:
                found.add(p.other_path)
        return found


@dataclass
class _Photo:
    path: str
    split: str
    sha256: str
    hashes: np.ndarray = field(repr=False)
    colours: np.ndarray = field(repr=False)
    rotated: np.ndarray | None = field(default=None, repr=False)  # for the second stage: rotated hashes
    histogram: np.ndarray | None = field(default=None, repr=False)  # and the colour histogram


def scan_splits(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """(split, file) for every image under ``root/{train,val,test}/<Class>/``, and the folders refused."""
    found: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        base = root.resolve()
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not is_utf8_name(class_dir.name):
                skipped.append((printable(f"{split}/{class_dir.name}"), FOLDER_NOT_UTF8))
                continue
            resolved = class_dir.resolve()
            if resolved != base and base not in resolved.parents:
                skipped.append((f"{split}/{class_dir.name}",
                                f"links outside the data folder (to {resolved}); not walked"))
                continue
            found.extend((split, path) for path in image_files(class_dir, root))
    return found, skipped


def check_data(root: str | os.PathLike[str], threshold: int = DEFAULT_THRESHOLD,
               max_colour_diff: float = DEFAULT_COLOUR_DIFF,
               progress: Callable[[int, int], None] | None = None, geometric: bool = True) -> DataCheck:
    """Hash every photo under ``root/{train,val,test}`` and list the near-duplicate pairs.

    With ``geometric`` (the default), a second stage (:mod:`mushcam.review.matching`: looser and rotated
    hashes and colour histograms propose pairs, ORB features with a RANSAC homography confirm them) adds
    the same find in another frame: a crop stretched back, a rotation, a stamped text line, a colour
    shift, which the hash threshold alone misses."""
    start = time.perf_counter()
    base = Path(root).expanduser()
    if not base.is_dir():
        raise MushcamError(f"data folder not found: {printable(base, terminal=True)}")
    if not 0 <= threshold <= 32:
        raise MushcamError(f"--threshold must be between 0 and 32 bits; got {threshold}")
    files, skipped = scan_splits(base)
    if not files:
        shown = printable(base, terminal=True)
        raise MushcamError(f"no images under {shown}/train, {shown}/val or {shown}/test "
                           "(expected ROOT/<split>/<Class>/<image>)")
    photos: list[_Photo] = []
    unreadable = []
    for n, (split, path) in enumerate(files, 1):
        relative = path.relative_to(base).as_posix()
        try:
            photos.append(_photo(path, relative, split, geometric))
        except (OSError, MushcamError) as exc:
            unreadable.append((printable(relative), str(exc)))
        if progress is not None:
            progress(n, len(files))
    matrix = distances(np.stack([p.hashes for p in photos])) if photos else np.zeros((0, 0), np.uint8)
    order = {s: i for i, s in enumerate(SPLITS)}
    pairs, exact = [], 0
    rows, cols = np.nonzero(np.triu(matrix <= threshold, k=1))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        a, b = photos[i], photos[j]
        if a.sha256 != b.sha256 and colour_diff(a.colours, b.colours) > max_colour_diff:
            continue
        if (order[b.split], b.path) < (order[a.split], a.path):
            a, b = b, a
        exact += a.sha256 == b.sha256
        pairs.append(NearDuplicate(a.sha256, a.path, a.split, b.sha256, b.path, b.split, int(matrix[i, j])))
    found = second_stage(base, photos, matrix, pairs, order) if geometric and len(photos) > 1 else {}
    pairs.sort(key=lambda p: (order[p.split], order[p.other_split], p.distance, p.image_path, p.other_path))
    counts = {s: sum(1 for p in photos if p.split == s) for s in SPLITS if (base / s).is_dir()}
    return DataCheck(str(base), counts, tuple(pairs), threshold, max_colour_diff, time.perf_counter() - start,
                     tuple(unreadable), tuple(skipped), exact, found)


def _photo(path: Path, relative: str, split: str, geometric: bool) -> _Photo:
    """One file read once (size-checked before reading), hashed and fingerprinted; MushcamError with the reason
    when it is skipped (a name that cannot be stored, too large, not an image, too many pixels)."""
    if not is_utf8_name(relative):
        raise MushcamError(NAME_NOT_UTF8)
    data = read_bytes(path)
    rgb = thumbnail(data)
    photo = _Photo(relative, split, image_sha256(data), *fingerprint(rgb))
    if geometric:  # what the second stage proposes from, made from this decode (no second pass over the files)
        from mushcam.review.matching import colour_histogram, rotated_hashes  # builds on this module: imported here

        photo.rotated, photo.histogram = rotated_hashes(rgb), colour_histogram(rgb)
    return photo


def second_stage(base: Path, photos: Sequence[_Photo], matrix: np.ndarray, pairs: list[NearDuplicate],
                 order: dict[str, int]) -> dict[tuple[str, str], str]:
    """Pairs the hash threshold missed but local features confirm: appended to ``pairs``; their reasons by paths."""
    from mushcam.review.matching import confirm_pairs, propose_from

    known = {(p.image_path, p.other_path) for p in pairs} | {(p.other_path, p.image_path) for p in pairs}
    by_path = {p.path: i for i, p in enumerate(photos)}
    candidates = propose_from(np.stack([p.hashes for p in photos]), np.stack([p.rotated for p in photos]),
                              np.stack([p.histogram for p in photos]))
    todo = [(base / photos[c.i].path, base / photos[c.j].path) for c in candidates
            if (photos[c.i].path, photos[c.j].path) not in known]
    reasons: dict[tuple[str, str], str] = {}
    for same in confirm_pairs(todo):
        i = by_path[Path(same.path).relative_to(base).as_posix()]
        j = by_path[Path(same.other_path).relative_to(base).as_posix()]
        a, b = photos[i], photos[j]
        if (order[b.split], b.path) < (order[a.split], a.path):
            a, b = b, a
        pairs.append(NearDuplicate(a.sha256, a.path, a.split, b.sha256, b.path, b.split, int(matrix[i, j])))
        reasons[(a.path, b.path)] = same.reason
    return reasons


def format_check(check: DataCheck, listed: int = 20, all_skipped: bool = False) -> str:
    """The result as text: counts, pairs across splits, test images with a twin in training, what was skipped.

    Skipped folders and files are summarised (counts by reason, at most :data:`SKIPPED_EXAMPLES` of
    each listed) unless ``all_skipped``. Every line goes through :func:`mushcam.data.printable` with
    ``terminal=True``: a file name holding ESC or CR cannot recolour the terminal or rewrite the line.
    """
    lines = [f"{sum(check.counts.values())} photos ({', '.join(f'{s} {n}' for s, n in check.counts.items())}) "
             f"under {check.root}; "
             f"pHash within {check.threshold} bits of 64 and colour within {check.max_colour_diff:g}; "
             f"{check.seconds:.1f} s"]
    cross = check.cross_split()
    lines.append(f"near-duplicate pairs: {len(check.pairs)} ({len(cross)} across splits, "
                 f"{len(check.pairs) - len(cross)} within a split, {check.exact} byte-identical, "
                 f"{len(check.geometric)} found only by matching local features)")
    for split, other in (("test", "train"), ("val", "train"), ("test", "val")):
        if split in check.counts and other in check.counts:
            twins = check.with_twin_in(split, other)
            share = len(twins) / check.counts[split] if check.counts[split] else 0.0
            lines.append(f"{split} images with a near-duplicate in {other}: {len(twins)} of {check.counts[split]} "
                         f"({share:.1%})")
    examples = None if all_skipped else SKIPPED_EXAMPLES
    lines += skipped_lines("not walked", "folders", check.skipped, examples)
    lines += skipped_lines("unreadable", "files", check.unreadable, examples)
    if cross:
        first = "" if len(cross) <= listed else f", first {listed}"
        lines.append(f"closest pairs across splits (distance in bits){first}:")
        lines += [f"  {p.distance:2d}  {p.image_path}  <->  {p.other_path}"
                  + (f"  ({check.geometric[(p.image_path, p.other_path)]})"
                     if (p.image_path, p.other_path) in check.geometric else "")
                  for p in cross[:listed]]
    return "\n".join(printable(line, terminal=True) for line in lines)


def skipped_lines(label: str, what: str, items: Sequence[tuple[str, str]], examples: int | None = SKIPPED_EXAMPLES,
                  reasons: int = 5) -> list[str]:
    """``label: path: reason`` for each item when they are few (or ``examples`` is None); else a summary:
    the count by reason (the ``reasons`` most common), ``examples`` of them (one per reason first), the rest counted."""
    if examples is None or len(items) <= examples:
        return [f"{label}: {path}: {reason}" for path, reason in items]
    counts = Counter(reason for _, reason in items).most_common()
    head = "; ".join(f"{n:,} {reason}" for reason, n in counts[:reasons])
    if len(counts) > reasons:
        head += f"; {sum(n for _, n in counts[reasons:]):,} for {len(counts) - reasons:,} other reasons"
    first = sorted({reason: i for i, (_, reason) in reversed(list(enumerate(items)))}.values())[:examples]
    taken = set(first)
    rest = (i for i in range(len(items)) if i not in taken)
    chosen = sorted(first + [next(rest) for _ in range(examples - len(first))])
    lines = [f"{label}: {len(items):,} {what} skipped: {head}"]
    lines += [f"  {items[i][0]}: {items[i][1]}" for i in chosen]
    lines.append(f"  … and {len(items) - len(chosen):,} more (--list-skipped lists them all)")
    return lines


def pairs_csv_rows(pairs: Sequence[NearDuplicate]) -> list[list[str]]:
    """The pairs as CSV rows, header first (written by :func:`mushcam.csvfile.write_csv`, which guards them)."""
    return [["path", "split", "other_path", "other_split", "distance_bits", "sha256", "other_sha256"]] + [
        [p.image_path, p.split, p.other_path, p.other_split, str(p.distance), p.image_sha256, p.other_sha256]
        for p in pairs]
