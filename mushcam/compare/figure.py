"""The comparison drawn: one cell's picture, the whole grid as one PNG, and the export files.

:func:`render_comparison` draws the grid as one figure (column headers, marks, a colour bar
per row, "flat" under a flat map; the pairwise numbers go to the CSV files); :func:`write_export`
writes ``gradcam_detailed_comparison_{timestamp}.png`` / ``.csv`` / ``_summary.csv``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mushcam.cam import DEFAULT_METHOD, METHOD_LABELS, Column
from mushcam.compare.comparison import Cell, Comparison, Row
from mushcam.compare.tables import backbone_summary, image_table, pair_summary, summary_long, to_csv
from mushcam.data import crop_box
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation
from mushcam.files import write_bytes_atomic, write_text_atomic
from mushcam.manifest import InputSpec, Manifest
from mushcam.map_scale import colorbar, map_range
from mushcam.render import (
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    colorize,
    colormap_lut,
    fit_within,
    overlay,
    to_png,
    upsample_cam,
)
from mushcam.text import font_ascii

PANEL_SIDE = 224  # one picture in the exported grid
GRID_VIEWS: tuple[str, ...] = ("overlay", "heatmap")
EXPORT_STEM = "gradcam_detailed_comparison"
SHORT_NAMES: dict[str, str] = {"resnet50": "R50", "efficientnet_b0": "EffB0", "mobilenet_v3_large": "MNv3"}


def cell_picture(image: Image.Image, explanation: Explanation, spec: InputSpec, scale: float | None,
                 view: str = "overlay", alpha: float = DEFAULT_ALPHA, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The overlay (or the heatmap alone) of one map on ``image`` (any display size), RGB uint8."""
    if view not in GRID_VIEWS:
        raise MushcamError(f"view must be one of {', '.join(GRID_VIEWS)}; got {view!r}")
    heat = upsample_cam(explanation.cam, image.size, crop_box(image.size, spec), scale)
    return colorize(heat, colormap) if view == "heatmap" else overlay(image, heat, alpha, colormap)


# --- the exported picture -------------------------------------------------------------

_GREEN = (46, 125, 50)
_RED = (198, 40, 40)
_DARK_RED = (120, 0, 0)
_GREY = (150, 150, 150)
_TEXT = (30, 30, 30)
_MUTED = (95, 95, 95)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font: object) -> str:
    text = font_ascii(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def fmt(value: object, digits: int = 2, percent: bool = False) -> str:
    """A number for display; 'n/a' for an undefined (NaN) or missing value."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "n/a"
    return f"{value:.{max(0, digits - 2)}%}" if percent else f"{value:.{digits}f}"


def short_name(backbone: str) -> str:
    """A column's short name: the model's, with the method's after it when not Grad-CAM."""
    column = Column.parse(backbone)
    short = SHORT_NAMES.get(column.model, column.model)
    return short if column.method == DEFAULT_METHOD else f"{short}/{METHOD_LABELS[column.method]}"


def verdict(cell: Cell) -> tuple[str, tuple[int, int, int]]:
    """The mark of a cell: text and colour (dangerous errors first)."""
    if cell.dangerous:
        return "WRONG: poisonous called edible", _DARK_RED
    if cell.correct is True:
        return "correct", _GREEN
    if cell.correct is False:
        return "WRONG", _RED
    return "true class unknown", _GREY


def summary_lines(comparison: Comparison) -> list[str]:
    """The summaries as plain text lines (for the picture and the command line)."""
    lines = [f"Per model, over {len(comparison.rows)} images (focus means: all / correct / wrong):"]
    for record in backbone_summary(comparison):
        known = int(str(record["correct"])) + int(str(record["wrong"]))
        accuracy = f"{record['correct']}/{known} correct" if known else "true classes unknown"
        lines.append(
            f"  {comparison.label(str(record['backbone']))}: {accuracy}; "
            f"poisonous called edible {record['poisonous_called_edible']}; "
            f"half-mass area {fmt(record['half_mass_area_mean'], 3, True)} / "
            f"{fmt(record['half_mass_area_mean_correct'], 3, True)} / "
            f"{fmt(record['half_mass_area_mean_wrong'], 3, True)}; "
            f"entropy {fmt(record['entropy_mean'], 3)} / {fmt(record['entropy_mean_correct'], 3)} / "
            f"{fmt(record['entropy_mean_wrong'], 3)}"
        )
    pairs = pair_summary(comparison)
    if pairs:
        top = round(comparison.fraction * 100)
        lines.append("Agreement between models, mean [median] over the images where defined:")
        for record in pairs:
            first, second = str(record["pair"]).split(" vs ")
            lines.append(
                f"  {comparison.label(first)} vs {comparison.label(second)}: "
                f"top-{top}% IoU {fmt(record[f'iou_top{top}_mean'], 3)} [{fmt(record[f'iou_top{top}_median'], 3)}], "
                f"Spearman {fmt(record['spearman_mean'], 3)} [{fmt(record['spearman_median'], 3)}], "
                f"n={record['images_defined']}"
            )
    return lines


@dataclass(frozen=True)
class _GridLayout:
    """Sizes of the comparison grid in pixels, and the fonts (see :func:`render_comparison`)."""

    panel: int
    pad: int
    big: int
    line: int
    font: ImageFont.ImageFont
    bold: ImageFont.ImageFont
    bar_w: int
    width: int
    header_h: int
    row_h: int
    height: int


MAX_PAIR_LINES = 3  # more pairs than this: the picture leaves their numbers to the CSV files
CAPTION_LINES = 4  # under a map: prediction, mark, focus, and "flat" where the map is flat


def render_comparison(
    comparison: Comparison,
    manifest: Manifest,
    normalisation: str = "per_image",
    view: str = "overlay",
    alpha: float = DEFAULT_ALPHA,
    colormap: str = DEFAULT_COLORMAP,
    panel: int = PANEL_SIDE,
    created: str = "",
) -> np.ndarray:
    """The whole grid as one RGB picture: a header over each column (model, method), the
    original first, each map marked (correct / wrong / poisonous called edible) with its
    prediction and focus ("flat" under a flat map), a colour bar at the end of each row, and
    the per-model summary at the bottom. Pairwise agreement is in the CSV files (and, for
    at most :data:`MAX_PAIR_LINES` pairs, in the footer)."""
    header = _grid_header(comparison, normalisation, view, created)
    footer = _footer_lines(comparison)
    bars = [_row_bar(row, normalisation, colormap, panel) for row in comparison.rows]
    layout = _grid_layout(comparison, header, footer, panel, max((b.shape[1] for b in bars), default=0))
    canvas = Image.new("RGB", (layout.width, layout.height), "white")
    draw = ImageDraw.Draw(canvas)
    _draw_header(draw, comparison, header, layout)
    y = layout.header_h
    for row, bar in zip(comparison.rows, bars, strict=True):
        x = _draw_row(canvas, draw, comparison, row, manifest, y, layout, (normalisation, view, alpha, colormap))
        canvas.paste(Image.fromarray(bar), (x, y))
        y += layout.row_h
    y += layout.pad
    for text in footer:
        draw.text((layout.pad, y), font_ascii(text), fill=_TEXT, font=layout.font)
        y += layout.line
    return np.asarray(canvas)


def _footer_lines(comparison: Comparison) -> list[str]:
    """The summary lines, without the pairs' when there are too many to read in a picture."""
    lines = summary_lines(comparison)
    n_pairs = len(comparison.rows[0].agreement) if comparison.rows else 0
    if n_pairs <= MAX_PAIR_LINES:
        return lines
    per_model = lines[: 1 + len(comparison.backbones)]
    return [*per_model, f"Agreement of the {n_pairs} pairs of columns: in the CSV files exported with this picture."]


def _row_bar(row: Row, normalisation: str, colormap: str, panel: int) -> np.ndarray:
    """The colour bar of one row: raw values on a shared scale, else the share of each map's maximum."""
    scale = row.scale(normalisation)
    label = "raw value (row scale)" if scale is not None else "share of own max"
    return colorbar(colormap_lut(colormap), panel, 1.0 if scale is None else scale, label)


def _grid_header(comparison: Comparison, normalisation: str, view: str, created: str) -> list[str]:
    """The title line, then what the maps and the focus numbers are, then where agreement is."""
    normalised = ("per image (each to its own maximum)" if normalisation == "per_image"
                  else "shared across each row (the row largest raw maximum)")
    return [
        (f"Grad-CAM comparison: {len(comparison.rows)} images x {len(comparison.backbones)} models"
         if all(Column.parse(b).method == DEFAULT_METHOD for b in comparison.backbones)
         else f"CAM comparison: {len(comparison.rows)} images x {len(comparison.backbones)} columns "
         "(models x methods)")
        + (f"  ({created})" if created else ""),
        f"{'Overlay' if view == 'overlay' else 'Heatmap'}; maps normalised {normalised}; "
        "the bar at the end of each row gives the scale.",
        "Focus: half-mass area (share of the image holding half the map, smaller = focused), "
        "entropy H/log n (0 = one point, 1 = uniform). Agreement (IoU, Spearman): the CSV files.",
    ]


def _grid_layout(comparison: Comparison, header: Sequence[str], footer: Sequence[str], panel: int,
                 bar_w: int) -> _GridLayout:
    """Width from the widest of grid and text; row height from the picture and its captions."""
    pad, small, big = 12, 14, 20
    line = small + 6
    font, bold = _font(small), _font(big)
    columns = 1 + len(comparison.backbones)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    grid_w = pad + columns * (panel + pad) + bar_w + pad
    text_w = max(scratch.textlength(font_ascii(t), font=font) for t in [*header[1:], *footer]) + 2 * pad
    width = int(max(grid_w, text_w, scratch.textlength(font_ascii(header[0]), font=bold) + 2 * pad))
    row_h = panel + 4 + CAPTION_LINES * line + pad
    header_h = pad + big + 8 + 2 * line + pad + 2 * line + 4
    footer_h = pad + len(footer) * line + pad
    height = header_h + len(comparison.rows) * row_h + footer_h
    return _GridLayout(panel, pad, big, line, font, bold, bar_w, width, header_h, row_h, height)


def _column_title(comparison: Comparison, key: str) -> tuple[str, str]:
    """A column's header in two lines: the model's label, then the CAM method's."""
    column = Column.parse(key)
    label = comparison.label(key)
    method = METHOD_LABELS.get(column.method, column.method)
    model = label.removesuffix(f" · {method}") if column.method != DEFAULT_METHOD else label
    return model, method


def _draw_header(draw: ImageDraw.ImageDraw, comparison: Comparison, header: Sequence[str], layout: _GridLayout) -> None:
    pad, panel, font = layout.pad, layout.panel, layout.font
    y = pad
    draw.text((pad, y), font_ascii(header[0]), fill=_TEXT, font=layout.bold)
    y += layout.big + 8
    for text in header[1:]:
        draw.text((pad, y), font_ascii(text), fill=_MUTED, font=font)
        y += layout.line
    y += pad
    titles = [("Image", "")] + [_column_title(comparison, b) for b in comparison.backbones]
    for i, (first, second) in enumerate(titles):
        x = pad + i * (panel + pad)
        draw.text((x, y), _fit_text(draw, first, panel, font), fill=_TEXT, font=font)
        draw.text((x, y + layout.line), _fit_text(draw, second, panel, font), fill=_MUTED, font=font)


def _draw_row(canvas: Image.Image, draw: ImageDraw.ImageDraw, comparison: Comparison, row: Row, manifest: Manifest,
              y: int, layout: _GridLayout, style: tuple[str, str, float, str]) -> int:
    """One image's row at height ``y``: its pictures with marks and captions; returns the x after them."""
    normalisation, view, alpha, colormap = style
    pad, panel, font, line = layout.pad, layout.panel, layout.font, layout.line
    thumb = fit_to(row.image.preview, panel - 12)
    scale = row.scale(normalisation)
    x = pad
    pictures = [np.asarray(thumb.convert("RGB"), dtype=np.uint8)] + [
        cell_picture(thumb, row.cells[b].explanation, manifest.input, scale, view, alpha, colormap)
        for b in comparison.backbones
    ]
    for i, picture in enumerate(pictures):
        ox = x + (panel - picture.shape[1]) // 2
        oy = y + (panel - picture.shape[0]) // 2
        if i > 0:
            cell = row.cells[comparison.backbones[i - 1]]
            mark, colour = verdict(cell)
            thick = 6 if cell.dangerous else 3
            draw.rectangle(
                (ox - thick, oy - thick, ox + picture.shape[1] + thick - 1, oy + picture.shape[0] + thick - 1),
                fill=colour,
            )
        canvas.paste(Image.fromarray(picture), (ox, oy))
        ty = y + panel + 4
        for text, colour in _captions(comparison, row, i):
            draw.text((x, ty), _fit_text(draw, text, panel, font), fill=colour, font=font)
            ty += line
        x += panel + pad
    return x


def _captions(comparison: Comparison, row: Row, i: int) -> list[tuple[str, tuple[int, int, int]]]:
    """Under picture ``i`` of a row (0: the image itself): the lines of text and their colours."""
    if i == 0:
        truth = (
            f"true: {row.image.label} ({row.true_toxicity or 'not in manifest'})"
            if row.image.label is not None else "true class unknown"
        )
        return [(row.image.name, _TEXT), (truth, _MUTED)]
    cell = row.cells[comparison.backbones[i - 1]]
    mark, colour = verdict(cell)
    lines = [
        (f"{cell.predicted} {cell.confidence:.1%}", _TEXT),
        (mark, colour),
        (f"half-mass {fmt(cell.focus.half_mass_area, 3, True)} | H {fmt(cell.focus.entropy, 3)}", _MUTED),
    ]
    if map_range(cell.explanation.cam).flat:
        lines.append(("flat: no region singled out", _RED))
    return lines


def fit_to(image: Image.Image, side: int) -> Image.Image:
    """The image scaled (down or up) so that its longer side is ``side`` pixels, aspect kept."""
    if max(image.size) == side:
        return image
    if max(image.size) > side:
        return fit_within(image, side)
    ratio = side / max(image.size)
    size = (max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio)))
    return image.resize(size, Image.Resampling.BICUBIC)


def export_name(when: dt.datetime | None = None, suffix: str = ".png") -> str:
    """``gradcam_detailed_comparison_{YYYYmmdd_HHMMSS}{suffix}``."""
    when = when or dt.datetime.now()
    return f"{EXPORT_STEM}_{when:%Y%m%d_%H%M%S}{suffix}"


@dataclass(frozen=True)
class ExportPaths:
    png: Path
    csv: Path
    summary_csv: Path


def write_export(
    comparison: Comparison,
    manifest: Manifest,
    out_dir: str | Path,
    normalisation: str = "per_image",
    view: str = "overlay",
    alpha: float = DEFAULT_ALPHA,
    colormap: str = DEFAULT_COLORMAP,
    when: dt.datetime | None = None,
) -> ExportPaths:
    """Write the grid PNG (numbers included), the per-image CSV and the summary CSV."""
    when = when or dt.datetime.now()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ExportPaths(out / export_name(when), out / export_name(when, ".csv"),
                        out / export_name(when, "_summary.csv"))
    picture = render_comparison(comparison, manifest, normalisation, view, alpha, colormap,
                                created=f"{when:%Y-%m-%d %H:%M:%S}")
    # Every text is made before any file is written, and each file is written atomically:
    # a failure leaves no empty or partial export behind.
    png, table, summary = to_png(picture), to_csv(image_table(comparison)), to_csv(summary_long(comparison))
    write_bytes_atomic(paths.png, png)
    write_text_atomic(paths.csv, table)
    write_text_atomic(paths.summary_csv, summary)
    return paths
