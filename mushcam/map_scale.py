"""A map's scale, shown and judged: the colour bar beside every map, and the flat-map rule.

Every map is drawn divided by a scale (its own maximum, or one shared across a row), so the
colours alone never say how strong or how focused a map is. Two things make them honest:

- a colour bar that follows the chosen colormap, labelled with the method and with the raw
  values its ends stand for (``0`` and the scale);
- the flat-map rule: a map whose dynamic range is small does not single out a region, however
  red it is painted. With ``lo = min(cam)`` and ``hi = max(cam)``::

      relative_range = (hi - lo) / hi        (1 when the map reaches 0 somewhere; 0 when constant)
      flat           = hi <= 0  or  relative_range < FLAT_RANGE

  ``FLAT_RANGE = 0.5``: a map whose weakest point still holds more than half of its strongest
  is called flat. A map that is 0 everywhere is "empty" (nothing raised the score).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

FLAT_RANGE = 0.5
FLAT_WARNING = "flat: this map does not single out a region"
EMPTY_WARNING = "empty: no region raised the score of this class (the map is 0 everywhere)"


@dataclass(frozen=True)
class MapRange:
    """The raw values of one map (or of several, for a shared scale) and what they say."""

    low: float
    high: float

    @property
    def relative_range(self) -> float:
        """``(high - low) / high``; 0 for an empty map."""
        return (self.high - self.low) / self.high if self.high > 0 else 0.0

    @property
    def empty(self) -> bool:
        return self.high <= 0

    @property
    def flat(self) -> bool:
        """True when the map does not single out a region (see the module's rule)."""
        return self.empty or self.relative_range < FLAT_RANGE

    @property
    def warning(self) -> str | None:
        """The words to put beside a degenerate map, or None for a map that singles out a region."""
        if self.empty:
            return EMPTY_WARNING
        if self.flat:
            return (f"{FLAT_WARNING} (its values span {self.low:.3g}–{self.high:.3g}: the weakest point holds "
                    f"{1 - self.relative_range:.0%} of the strongest)")
        return None


def map_range(cam: torch.Tensor | np.ndarray) -> MapRange:
    """Minimum and maximum of a raw map (NaN, meaning "not seen", ignored)."""
    values = torch.as_tensor(cam).detach().float().cpu()
    values = values[~torch.isnan(values)]
    if values.numel() == 0:
        return MapRange(0.0, 0.0)
    return MapRange(float(values.min()), float(values.max()))


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _tick(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def colorbar(lut: np.ndarray, height: int, scale: float, label: str, flat: bool = False) -> np.ndarray:
    """A vertical colour bar, H x W x 3 uint8 on white, for a map drawn with ``lut`` and divided by ``scale``.

    The strip runs from the LUT's last colour (top, the value ``scale``) to its first (bottom, 0);
    the ticks give the raw values, and the rotated label names the method ("Grad-CAM", ...).
    A flat map's bar says "flat" under its ticks. The bar depends on nothing else, so the last
    few are kept (read-only): moving the opacity slider redraws the views, not their bars.
    """
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    return _colorbar(lut.tobytes(), lut.shape, max(int(height), 64), float(scale), label, bool(flat))


@functools.lru_cache(maxsize=32)
def _colorbar(lut_bytes: bytes, lut_shape: tuple[int, ...], height: int, scale: float, label: str,
              flat: bool) -> np.ndarray:
    lut = np.frombuffer(lut_bytes, dtype=np.uint8).reshape(lut_shape)
    font_size = max(11, min(28, height // 22))
    strip_w = max(10, font_size)
    pad = max(4, font_size // 3)
    ticks = [_tick(scale), "flat" if flat else _tick(scale / 2), "0"]
    text_w = max(int(_font(font_size).getlength(t)) for t in [*ticks, "flat"]) + pad
    label_w = font_size + 2 * pad
    width = label_w + strip_w + pad + text_w + pad
    canvas = Image.new("RGB", (width, height), "white")
    top, bottom = font_size, height - font_size
    rows = np.linspace(255, 0, max(bottom - top, 2)).round().astype(np.uint8)
    strip = np.repeat(lut[rows][:, None, :], strip_w, axis=1)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([label_w - 1, top - 1, label_w + strip_w, top + strip.shape[0]], outline=(90, 90, 90))
    canvas.paste(Image.fromarray(strip), (label_w, top))  # after the frame: the strip's own colours stay exact
    x_text = label_w + strip_w + pad
    for text, y in zip(ticks, (top, (top + bottom) // 2, bottom), strict=True):
        flat_mark = flat and text == "flat"
        if not flat_mark:
            draw.line([label_w + strip_w, y, x_text - 2, y], fill=(90, 90, 90))
        draw.text((x_text, y), text, fill=(200, 0, 0) if flat_mark else "black", font=_font(font_size), anchor="lm")
    if label:
        side = Image.new("RGB", (height, label_w), "white")
        ImageDraw.Draw(side).text((height // 2, label_w // 2), label, fill=(60, 60, 60), font=_font(font_size),
                                  anchor="mm")
        canvas.paste(side.rotate(90, expand=True), (0, 0))
    bar = np.array(canvas)
    bar.flags.writeable = False  # shared by every caller of the cache
    return bar


MIN_BAR_HEIGHT = 240  # a smaller view is enlarged (nearest neighbour) first, so the bar's text stays readable


def readable(view: np.ndarray, min_height: int = MIN_BAR_HEIGHT) -> np.ndarray:
    """``view`` enlarged by a whole factor (nearest neighbour, no new detail) until it is ``min_height`` tall."""
    factor = -(-min_height // max(1, view.shape[0]))
    if factor <= 1:
        return view
    return np.repeat(np.repeat(view, factor, axis=0), factor, axis=1)


def with_colorbar(view: np.ndarray, lut: np.ndarray, scale: float, label: str, flat: bool = False) -> np.ndarray:
    """``view`` (enlarged if tiny, see :func:`readable`) with its colour bar to the right, same height, on white."""
    view = readable(np.asarray(view, dtype=np.uint8))
    bar = colorbar(lut, view.shape[0], scale, label, flat)
    gap = np.full((view.shape[0], max(4, view.shape[0] // 80), 3), 255, dtype=np.uint8)
    return np.concatenate([np.asarray(view, dtype=np.uint8), gap, bar[: view.shape[0]]], axis=1)


def colormap_caption(colormap: str, scale_note: str = "scaled to its own maximum") -> str:
    """How to read a map in words that match ``colormap`` (its low and high colours named)."""
    ends = {
        "jet": ("dark red", "dark blue"), "turbo": ("dark red", "dark blue"),
        "viridis": ("yellow", "dark purple"), "plasma": ("yellow", "dark blue"),
        "inferno": ("pale yellow", "black"), "magma": ("pale yellow", "black"),
        "hot": ("white", "black"), "gray": ("white", "black"),
    }
    high, low = ends.get(colormap, ("the top of the colour bar", "its bottom"))
    return (f"{high.capitalize()}: regions that raised the score of the explained class most; {low}: little or "
            f"none. The map is {scale_note}; the colour bar gives the raw values.")
