"""The test set: the images under ``ROOT/<Class>/<image>`` whose class folder is a manifest class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mushcam.data import IMAGE_EXTENSIONS, printable, scan_images
from mushcam.manifest import Manifest
from mushcam.store import Skipped


@dataclass(frozen=True)
class TestImage:
    """One image to evaluate: absolute path, path relative to the data root, true class index."""

    path: Path
    relpath: str
    true_idx: int


@dataclass(frozen=True)
class TestSet:
    root: Path  # resolved
    images: tuple[TestImage, ...]
    skipped: tuple[Skipped, ...]  # class folders not in the manifest, loose files


def scan_test_set(root: str | Path, manifest: Manifest) -> TestSet:
    """The images under ``root/<Class>/`` whose class folder names a manifest class.

    Folder names match class names exactly, then case-insensitively. Images in a folder
    that is not a manifest class, and images lying directly in ``root``, are skipped with
    the reason.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    root = root.resolve()
    images: list[TestImage] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        skipped.append(Skipped(printable(path.name), "not inside a class folder (expected ROOT/<Class>/<image>)"))
    scan = scan_images(root)
    skipped.extend(Skipped(path, reason) for path, reason in scan.skipped)
    for item in scan.images:
        try:
            true_idx = manifest.class_index(item.label)
        except KeyError:
            skipped.append(Skipped(item.relpath, f"class folder {item.label!r} is not one of the manifest's classes"))
            continue
        images.append(TestImage(item.path, item.relpath, true_idx))
    return TestSet(root, tuple(images), tuple(skipped))
