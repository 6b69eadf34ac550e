"""A pairwise agreement matrix drawn as a small picture: cells coloured by value, the value
written in each, short names on both axes, a colour bar with its range, the measure as title.

The Compare page shows one per photo. As a picture (not an interactive chart) it costs the
browser nothing to draw: twelve plotly charts, one per photo, were most of the page's time.

Colours: ColorBrewer's 9-class "Blues", light (the range's low end: 0 for IoU, -1 for
Spearman) to dark (1). An undefined value (a flat or all-zero map) is a grey cell marked "n/a".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mushcam.exceptions import MushcamError
from mushcam.text import font_ascii

BLUES: tuple[tuple[int, int, int], ...] = (
    (247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
    (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107),
)
UNDEFINED = (215, 215, 215)  # a cell whose value is NaN
RANGES: dict[str, tuple[float, float]] = {"iou": (0.0, 1.0), "spearman": (-1.0, 1.0)}
TITLES: dict[str, str] = {"iou": "IoU", "spearman": "Spearman"}
CELL = 44  # px, one cell's side at scale 1
SCALE = 2  # the picture is drawn at twice its display size, so its text stays sharp on the page


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def blues(fraction: float) -> tuple[int, int, int]:
    """The colour of ``fraction`` in [0, 1] along :data:`BLUES` (linear between its nine stops)."""
    position = min(max(fraction, 0.0), 1.0) * (len(BLUES) - 1)
    low = min(int(position), len(BLUES) - 2)
    t = position - low
    return tuple(round(a + (b - a) * t) for a, b in zip(BLUES[low], BLUES[low + 1], strict=True))  # type: ignore[return-value]


def cell_colour(value: float, measure: str) -> tuple[int, int, int]:
    """The fill of a cell holding ``value`` of ``measure`` (grey when undefined)."""
    if math.isnan(value):
        return UNDEFINED
    low, high = RANGES[measure]
    return blues((value - low) / (high - low))


def _ink(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light cells, white on dark ones (by luma)."""
    return (0, 0, 0) if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 140 else (255, 255, 255)


def _value_text(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def render_agreement_matrix(labels: Sequence[str], matrix: Sequence[Sequence[float]], measure: str,
                            scale: int = SCALE) -> np.ndarray:
    """The k x k ``matrix`` (rows and columns named by ``labels``) as an H x W x 3 uint8 picture."""
    if measure not in RANGES:
        raise MushcamError(f"unknown agreement measure {measure!r}; choose from {', '.join(RANGES)}")
    labels = [font_ascii(label) for label in labels]
    k = len(labels)
    if k == 0 or len(matrix) != k or any(len(line) != k for line in matrix):
        raise MushcamError(f"an agreement matrix needs {k} x {k} values, one row and column per label")
    cell, small, large = CELL * scale, 11 * scale, 13 * scale
    pad = 4 * scale
    label_font, value_font = _font(small), _font(large)
    label_w = max(int(label_font.getlength(label)) for label in labels) + 2 * pad
    title_h = large + 2 * pad
    bar_w, bar_text = 8 * scale, int(label_font.getlength("-1.0")) + pad
    grid_x, grid_y = label_w, title_h
    width = grid_x + k * cell + 3 * pad + bar_w + bar_text
    height = grid_y + k * cell + label_w  # the column labels are written upwards below the grid
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((grid_x + k * cell // 2, pad), TITLES[measure], fill=(40, 40, 40), font=value_font, anchor="mt")
    for i, line in enumerate(matrix):
        for j, value in enumerate(line):
            value = float(value)
            fill = cell_colour(value, measure)
            box = (grid_x + j * cell, grid_y + i * cell, grid_x + (j + 1) * cell - 1, grid_y + (i + 1) * cell - 1)
            draw.rectangle(box, fill=fill, outline="white")
            draw.text((box[0] + cell // 2, box[1] + cell // 2), _value_text(value),
                      fill=(60, 60, 60) if math.isnan(value) else _ink(fill), font=value_font, anchor="mm")
    for i, label in enumerate(labels):
        draw.text((grid_x - pad, grid_y + i * cell + cell // 2), label, fill=(40, 40, 40), font=label_font,
                  anchor="rm")
    below = Image.new("RGB", (label_w, k * cell), "white")  # column labels: drawn across, turned upwards
    turned = ImageDraw.Draw(below)
    for j, label in enumerate(labels):
        turned.text((label_w - pad, j * cell + cell // 2), label, fill=(40, 40, 40), font=label_font, anchor="rm")
    canvas.paste(below.rotate(90, expand=True), (grid_x, grid_y + k * cell))
    low, high = RANGES[measure]
    bar_x, bar_top, bar_h = grid_x + k * cell + 2 * pad, grid_y, k * cell
    for y in range(bar_h):
        draw.line([(bar_x, bar_top + y), (bar_x + bar_w - 1, bar_top + y)],
                  fill=blues(1.0 - y / max(bar_h - 1, 1)))
    draw.rectangle([bar_x - 1, bar_top - 1, bar_x + bar_w, bar_top + bar_h], outline=(90, 90, 90))
    for value, y in ((high, bar_top), (low, bar_top + bar_h)):
        draw.text((bar_x + bar_w + pad // 2, y), f"{value:g}", fill=(40, 40, 40), font=label_font,
                  anchor="lt" if value == high else "lb")
    return np.asarray(canvas)
