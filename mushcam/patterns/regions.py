"""Object regions: where the mushroom is in a photo, as a box (x0, y0, x1, y1) in its pixels.

Three sources: a CSV with the header ``path,x0,y0,x1,y1`` (``path`` relative to the test
folder, as the results store writes it), a COCO JSON file (``images[].file_name``,
``annotations[].image_id`` and ``bbox = [x, y, width, height]``; several annotations of one
image become the box around all of them; masks are read as their boxes), and a GrabCut
proposal (OpenCV, initialised with the central 80 % of the photo, 3 iterations on a copy at
most 200 px on its long side; the box around the foreground). A proposal is marked
``"proposed"`` until a reviewer accepts or corrects it (``"accepted"``); imported boxes are
``"imported"``; a box a reviewer drags on the Patterns page is ``"drawn"``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mushcam.exceptions import MushcamError
from mushcam.manifest import parse_json

SOURCES = ("imported", "proposed", "accepted", "drawn")
PROPOSAL_SIDE = 200
PROPOSAL_MARGIN = 0.1
MAX_REGION_FILE_BYTES = 64 * 1024 * 1024


class RegionError(MushcamError):
    """A regions file (CSV or COCO JSON) or a region that cannot be used."""


@dataclass(frozen=True)
class Region:
    """The object box of the photo at ``path`` (relative to the test folder)."""

    path: str
    x0: float
    y0: float
    x1: float
    y1: float
    source: str = "imported"

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise RegionError(f"region of {self.path!r}: coordinates must be finite numbers; got {values}")
        if self.x0 < 0 or self.y0 < 0 or self.x1 <= self.x0 or self.y1 <= self.y0:
            raise RegionError(f"region of {self.path!r}: need 0 <= x0 < x1 and 0 <= y0 < y1; got {values}")
        if self.source not in SOURCES:
            raise RegionError(f"region of {self.path!r}: source must be one of {', '.join(SOURCES)}; "
                              f"got {self.source!r}")
        if not isinstance(self.path, str) or not self.path:
            raise RegionError("a region needs the photo's path")

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


def _read_text(path: str | os.PathLike[str]) -> str:
    source = Path(path).expanduser()
    try:
        if source.stat().st_size > MAX_REGION_FILE_BYTES:
            raise RegionError(f"{source} is larger than {MAX_REGION_FILE_BYTES // 2**20} MB; not a regions file")
        return source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegionError(f"cannot read regions file {source}: {exc}") from None


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise RegionError(f"{where}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise RegionError(f"{where}: not a finite number: {text!r}")
    return value


def read_regions_csv(path: str | os.PathLike[str]) -> list[Region]:
    """Boxes from a CSV with the header ``path,x0,y0,x1,y1`` (one row per photo; the last wins)."""
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    needed = ["path", "x0", "y0", "x1", "y1"]
    if reader.fieldnames is None or any(name not in reader.fieldnames for name in needed):
        raise RegionError(f"{path}: expected the header path,x0,y0,x1,y1; got {reader.fieldnames}")
    found: dict[str, Region] = {}
    for line, row in enumerate(reader, start=2):
        where = f"{path} line {line}"
        coords = [_number(row[name], f"{where} column {name}") for name in needed[1:]]
        found[row["path"]] = Region(row["path"] or "", *coords)
    return list(found.values())


def read_regions_coco(path: str | os.PathLike[str]) -> list[Region]:
    """Boxes from a COCO JSON file: per image, the box around all its annotations' ``bbox``."""
    data = parse_json(_read_text(path), f"regions file {path}")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise RegionError(f"{path}: not a COCO file (needs the lists 'images' and 'annotations')")
    names = {}
    for image in data["images"]:
        if isinstance(image, dict) and isinstance(image.get("file_name"), str) and "id" in image:
            names[image["id"]] = image["file_name"]
    boxes: dict[str, list[float]] = {}
    for number, annotation in enumerate(data["annotations"]):
        where = f"{path} annotation {number}"
        if not isinstance(annotation, dict) or annotation.get("image_id") not in names:
            raise RegionError(f"{where}: needs an image_id of one of the images")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise RegionError(f"{where}: bbox must be [x, y, width, height]")
        x, y, w, h = (_number(v, where) for v in bbox)
        name = names[annotation["image_id"]]
        box = boxes.setdefault(name, [x, y, x + w, y + h])
        box[:] = [min(box[0], x), min(box[1], y), max(box[2], x + w), max(box[3], y + h)]
    return [Region(name, *box) for name, box in boxes.items()]


def read_regions(path: str | os.PathLike[str]) -> list[Region]:
    """A ``.csv`` or a COCO ``.json`` regions file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_regions_csv(path)
    if suffix == ".json":
        return read_regions_coco(path)
    raise RegionError(f"{path}: regions come from a .csv (path,x0,y0,x1,y1) or a COCO .json file")


def propose_region(image: Image.Image, path: str, iterations: int = 3) -> Region:
    """GrabCut's box around the foreground, seeded with the central 80 % of the photo ("proposed")."""
    width, height = image.size
    factor = min(1.0, PROPOSAL_SIDE / max(width, height))
    small = image.convert("RGB").resize((max(8, round(width * factor)), max(8, round(height * factor))))
    pixels = cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2BGR)
    sw, sh = small.size
    rect = (int(sw * PROPOSAL_MARGIN), int(sh * PROPOSAL_MARGIN), int(sw * (1 - 2 * PROPOSAL_MARGIN)),
            int(sh * (1 - 2 * PROPOSAL_MARGIN)))
    mask = np.zeros((sh, sw), dtype=np.uint8)
    try:
        cv2.grabCut(pixels, mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)
        foreground = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    except cv2.error:
        foreground = np.zeros_like(mask, dtype=bool)
    if foreground.sum() == 0:
        x, y, w, h = rect
        box = (x, y, x + w, y + h)
    else:
        ys, xs = np.nonzero(foreground)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    sx, sy = width / sw, height / sh
    return Region(path, box[0] * sx, box[1] * sy, min(width, box[2] * sx), min(height, box[3] * sy), "proposed")
