"""The job's inputs: which images ``--data`` names, and which of them a ``--shard k/N`` takes."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mushcam.data import IMAGE_EXTENSIONS, is_utf8_name, printable, scan_images
from mushcam.exceptions import UsageError


@dataclass(frozen=True)
class ImageItem:
    """One input image: its file, its path relative to the data root, its class folder."""

    path: Path
    relpath: str
    label: str | None  # the class folder's name (ImageFolder layout), None for a flat folder or a file


def collect_images(
    sources: Sequence[str | os.PathLike[str]],
    on_skip: Callable[[str, str], None] | None = None,
) -> list[ImageItem]:
    """The images named by ``--data``: folders and/or files, sorted by relative path.

    A folder contributes the images directly inside it (no class) and those under each
    sub-folder ``<Class>/`` (the class is the folder's name: the ImageFolder layout).
    Relative paths are taken from the deepest folder common to all sources, so the same
    command line gives the same relative paths (and shards) on every machine. Symlinked
    image files are accepted (their relative path is where the link lies, not where it
    points). Files that cannot be used (a name that is not valid UTF-8, a broken link) are
    reported through ``on_skip(path, reason)`` and left out.
    """
    if not sources:
        raise UsageError("--data names no folder or file")
    skip = on_skip or (lambda path, reason: None)
    roots: list[Path] = []
    found: list[tuple[Path, Path, str | None]] = []  # (file to read, where it lies, class)
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            root = path.resolve()
            roots.append(root)
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS and not child.name.startswith("."):
                    if is_utf8_name(child.name):
                        found.append((child.resolve(), root / child.name, None))
                    else:
                        skip(printable(child.name), "the file name is not valid UTF-8; rename the file")
            scan = scan_images(path)
            for relpath, reason in scan.skipped:
                skip(relpath, reason)
            found.extend((item.path, root / item.relpath, item.label) for item in scan.images)
        elif path.is_file():
            if not is_utf8_name(path):
                raise UsageError(f"--data: the file name {printable(path)} is not valid UTF-8; rename the file")
            where = path.parent.resolve() / path.name
            roots.append(where.parent)
            found.append((path.resolve(), where, None))
        else:
            raise UsageError(f"--data: no such file or folder: {printable(path)}")
    base = Path(os.path.commonpath([str(r) for r in roots]))
    items: dict[str, ImageItem] = {}
    for path, where, label in found:
        relpath = where.relative_to(base).as_posix()
        items.setdefault(relpath, ImageItem(path, relpath, label))
    if not items:
        raise UsageError(
            f"no images found in {', '.join(printable(s) for s in sources)} "
            f"(looked for {', '.join(IMAGE_EXTENSIONS)} directly inside and in class folders)"
        )
    return [items[key] for key in sorted(items)]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"k/N"`` -> (k, N) with 1 <= k <= N; None for no sharding."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--shard must look like k/N (for example 2/4); got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text}: k must be between 1 and N (shards are numbered 1..N)")
    return k, n


def shard_of(relpath: str, n: int) -> int:
    """The shard (1..n) an image belongs to: a hash of its relative path, stable everywhere."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select_shard(items: Sequence[ImageItem], shard: tuple[int, int] | None) -> list[ImageItem]:
    """The items of shard k of N (all items without sharding)."""
    if shard is None:
        return list(items)
    k, n = shard
    return [item for item in items if shard_of(item.relpath, n) == k]
