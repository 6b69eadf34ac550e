"""Compare the backbones image by image: which images, the grid of maps, its numbers, its export.

- :func:`select_sample` draws a deterministic sample from a test folder (``root/<Class>/*``),
  balanced between poisonous and other classes and, when an ``outcome`` function can tell
  whether the models got an image right, mixing correct and wrong predictions.
- :func:`compute_comparison` asks an ``explain(backbone, image)`` function (the page passes
  a cached one, the command line a memo) for every (backbone, image) once, and measures each
  map's focus and each pair's agreement (:mod:`mushcam.agreement`) on a common grid: the
  region the network saw, fitted within ``MEASURE_SIDE`` pixels, aspect kept. The measures
  are scale-free, so they do not depend on the display normalisation.
- :func:`render_comparison` draws the grid with its numbers as one picture; the tables give
  the same numbers as CSV; :func:`write_export` writes
  ``gradcam_detailed_comparison_{timestamp}.png`` / ``.csv`` / ``_summary.csv``.
- ``python -m mushcam compare IMAGES_OR_FOLDER [--backbones ...] [--n 12] [--seed 0] --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import io
import math
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.agreement import TOP_FRACTION, Focus, PairAgreement, focus, pairwise_agreement, summarise
from mushcam.cache import CamCache
from mushcam.data import IMAGE_EXTENSIONS, LabelledImage, crop_box, decode_image, image_sha256, printable, read_bytes
from mushcam.files import write_bytes_atomic, write_text_atomic
from mushcam.finite import naming_model
from mushcam.explain import Explanation
from mushcam.manifest import InputSpec, Manifest
from mushcam.methods import DEFAULT_METHOD, METHOD_LABELS, METHODS
from mushcam.models import DISPLAY_NAMES
from mushcam.render import DEFAULT_ALPHA, DEFAULT_COLORMAP, cam_scale, colorize, fit_within, overlay, to_png, upsample_cam

DEFAULT_SAMPLE_SIZE = 12
MAX_GRID_IMAGES = 100  # rows of one exported grid: the figure is for people (100 rows ~ 30,000 px tall)
DISPLAY_MAX_SIDE = 1024  # the display copy of an image (the model sees the full resolution)
MEASURE_SIDE = 224  # the common grid on which maps of different backbones are compared
PANEL_SIDE = 224  # one picture in the exported grid
NORMALISATIONS: tuple[str, ...] = ("per_image", "shared")
GRID_VIEWS: tuple[str, ...] = ("overlay", "heatmap")
EXPORT_STEM = "gradcam_detailed_comparison"
SHORT_NAMES: dict[str, str] = {"resnet50": "R50", "efficientnet_b0": "EffB0", "mobilenet_v3_large": "MNv3"}

ExplainFn = Callable[[str, "CompareImage"], Explanation]
ProgressFn = Callable[[int, int, str], None]
OutcomeFn = Callable[[LabelledImage], "bool | None"]


# --- images ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareImage:
    """One image of the comparison: full-resolution RGB (what the model sees, as on the Explain
    page and in the batch pipeline), its file hash, its label if known, and optionally a
    smaller copy to draw from (``display``; pictures are drawn from it when given)."""

    name: str
    image: Image.Image
    sha256: str  # of the file's bytes: the image's identity in every cache
    label: str | None = None  # the true class as given (a folder name); None = unknown
    display: Image.Image | None = None

    @property
    def preview(self) -> Image.Image:
        """The image to draw pictures from: the display copy when there is one."""
        return self.display if self.display is not None else self.image


def load_compare_image(source: str | Path | bytes, name: str, label: str | None = None) -> CompareImage:
    """Read and decode an image safely (see :func:`mushcam.data.load_image`), with a display copy."""
    data = read_bytes(source)
    image = decode_image(data)
    return CompareImage(name, image, image_sha256(data), label, fit_within(image, DISPLAY_MAX_SIDE))


def manifest_class(manifest: Manifest, label: str | None) -> str | None:
    """The manifest's class name for a folder label (exact, then case-insensitive); None if absent."""
    if label is None:
        return None
    try:
        return manifest.class_names[manifest.class_index(label)]
    except KeyError:
        return None


def label_toxicity(manifest: Manifest, label: str | None) -> str:
    """Toxicity of a folder label per the manifest ('unknown' when the class is not listed)."""
    name = manifest_class(manifest, label)
    return manifest.toxicity(name) if name is not None else "unknown"


# --- sampling -------------------------------------------------------------------------

def _class_slots(pools: Mapping[str, list[LabelledImage]], poisonous: set[str], m: int,
                 rng: np.random.Generator) -> list[str]:
    """The class of each of ``m`` picks: turns alternate poisonous / other classes (when both
    have images left), and inside a group go round-robin over its classes in a seeded order."""
    groups = [sorted(c for c in pools if c in poisonous), sorted(c for c in pools if c not in poisonous)]
    groups = [[g[i] for i in rng.permutation(len(g))] for g in groups]
    left = {c: len(pools[c]) for c in pools}
    cursor = [0, 0]
    slots: list[str] = []
    turn = 0
    while len(slots) < m:
        order = (turn, 1 - turn)
        for g in order:
            classes = groups[g]
            live = [c for c in classes if left[c] > 0]
            if not live:
                continue
            while left[classes[cursor[g] % len(classes)]] == 0:
                cursor[g] += 1
            chosen = classes[cursor[g] % len(classes)]
            cursor[g] += 1
            left[chosen] -= 1
            slots.append(chosen)
            break
        turn = 1 - turn
    return slots


def select_sample(
    items: Sequence[LabelledImage],
    manifest: Manifest,
    n: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    outcome: OutcomeFn | None = None,
    max_checks: int | None = None,
) -> list[LabelledImage]:
    """A deterministic sample of ``n`` images from a scanned test folder.

    Balanced between poisonous classes (toxicity from the manifest) and the others: the
    picks alternate between the two groups, round-robin over the classes of each. With
    ``outcome(item)`` (True = every model right, False = some model wrong, None = cannot
    tell), candidates are checked in seeded order until half the picks (rounded down) are
    wrong predictions and the rest correct, or ``max_checks`` (default 3 n) checks are spent;
    the page and the command line compute the outcome with the same cached maps they show.
    The result is sorted: poisonous classes first, then by class and path.
    """
    if n < 1:
        raise MushcamError(f"the sample size must be at least 1, got {n}")
    if not items:
        raise MushcamError("the folder holds no images (expected <folder>/<Class>/<image>)")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[LabelledImage]] = {}
    for item in sorted(items, key=lambda i: i.relpath):
        by_class.setdefault(item.label, []).append(item)
    pools = {c: [group[i] for i in rng.permutation(len(group))] for c, group in sorted(by_class.items())}
    poisonous = {c for c in pools if label_toxicity(manifest, c) == "poisonous"}
    slots = _class_slots(pools, poisonous, min(n, len(items)), rng)

    chosen: list[LabelledImage] = []
    if outcome is None:
        taken = {c: 0 for c in pools}
        for c in slots:
            chosen.append(pools[c][taken[c]])
            taken[c] += 1
    else:
        budget = 3 * len(slots) if max_checks is None else max_checks
        known: dict[str, bool | None] = {}
        want = {False: len(slots) // 2, True: len(slots) - len(slots) // 2}
        used: set[str] = set()
        for c in slots:
            need = False if want[False] >= want[True] else True
            candidates = [item for item in pools[c] if item.relpath not in used]
            pick = None
            for item in candidates:
                if item.relpath not in known:
                    if len(known) >= budget:
                        break
                    known[item.relpath] = outcome(item)
                if known[item.relpath] is need:
                    pick = item
                    break
            if pick is None:  # none of the wanted kind within budget: take the class's next one
                pick = candidates[0]
            used.add(pick.relpath)
            chosen.append(pick)
            result = known.get(pick.relpath)
            if result is not None:
                want[result] = max(0, want[result] - 1)
    return sorted(chosen, key=lambda i: (i.label not in poisonous, i.label, i.relpath))


def flat_folder_images(folder: Path) -> list[Path]:
    """Images directly inside ``folder`` (no class sub-folders), sorted by name."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


# --- the grid and its numbers ---------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One backbone on one image: its map and prediction, judged against the true class."""

    backbone: str
    explanation: Explanation
    predicted: str
    predicted_toxicity: str
    confidence: float
    correct: bool | None  # None: true class unknown
    dangerous: bool  # a poisonous class predicted as an edible one
    focus: Focus

    @property
    def cam_max(self) -> float:
        return cam_scale(self.explanation.cam)


@dataclass(frozen=True)
class Row:
    """One image with every backbone's cell and every pair's agreement."""

    image: CompareImage
    true_class: str | None  # the manifest's class name; None when unknown or not listed
    true_toxicity: str | None
    cells: dict[str, Cell]
    agreement: tuple[PairAgreement, ...]

    def scale(self, normalisation: str) -> float | None:
        """Display scale: None = each map by its own maximum; 'shared' = the row's largest maximum."""
        if normalisation not in NORMALISATIONS:
            raise MushcamError(f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}")
        if normalisation == "per_image":
            return None
        return max((cell.cam_max for cell in self.cells.values()), default=0.0)


def column_key(backbone: str, method: str = DEFAULT_METHOD) -> str:
    """One column of the grid: a model, or a model and a CAM method (models x methods).

    Grad-CAM columns are keyed by the model's name alone, as before methods existed.
    """
    return backbone if method == DEFAULT_METHOD else f"{backbone}/{method}"


def split_column(key: str) -> tuple[str, str]:
    """``(model, method)`` of a :func:`column_key`."""
    model, _, method = key.rpartition("/")
    if model and method in METHODS:
        return model, method
    return key, DEFAULT_METHOD


def column_label(key: str, model_label: str | None = None) -> str:
    """A column's display name: "ResNet-50", or "ResNet-50 · Score-CAM" (``model_label``:
    the model's own display name, e.g. the manifest's label)."""
    model, method = split_column(key)
    name = model_label or DISPLAY_NAMES.get(model, model)
    return name if method == DEFAULT_METHOD else f"{name} · {METHOD_LABELS[method]}"


@dataclass(frozen=True)
class Comparison:
    backbones: tuple[str, ...]  # the models' manifest names, in column order
    rows: tuple[Row, ...]
    fraction: float = TOP_FRACTION
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # name -> display name

    def label(self, name: str) -> str:
        """A model's display name (its manifest label, a preset's name, or the name itself)."""
        return self.labels.get(name) or DISPLAY_NAMES.get(name, name)


def measure_map(cam: torch.Tensor, image_size: tuple[int, int], spec: InputSpec, side: int = MEASURE_SIDE) -> np.ndarray:
    """A raw map upsampled onto the common comparison grid: the seen region, fitted within ``side``."""
    left, top, right, bottom = crop_box(image_size, spec)
    width, height = right - left, bottom - top
    ratio = min(1.0, side / max(width, height))
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return upsample_cam(cam, size)


def make_cell(backbone: str, explanation: Explanation, manifest: Manifest, true_class: str | None,
              heat: np.ndarray) -> Cell:
    predicted = manifest.class_names[explanation.predicted_idx]
    predicted_toxicity = manifest.toxicity(explanation.predicted_idx)
    correct = None if true_class is None else predicted == true_class
    dangerous = (
        true_class is not None
        and manifest.toxicity(true_class) == "poisonous"
        and predicted_toxicity == "edible"
    )
    return Cell(backbone, explanation, predicted, predicted_toxicity, explanation.confidence, correct,
                bool(dangerous), focus(heat))


def compute_comparison(
    images: Sequence[CompareImage],
    backbones: Sequence[str],
    manifest: Manifest,
    explain: ExplainFn,
    fraction: float = TOP_FRACTION,
    measure_side: int = MEASURE_SIDE,
    progress: ProgressFn | None = None,
    methods: Sequence[str] = (DEFAULT_METHOD,),
) -> Comparison:
    """Every backbone's map of every image (one ``explain`` call each), with focus and agreement.

    With several ``methods`` the columns are models x methods (:func:`column_key`), and
    ``explain`` is called as ``explain(backbone, image, method)`` for methods other than
    Grad-CAM (Grad-CAM keeps the two-argument call).
    """
    if not backbones:
        raise MushcamError("choose at least one backbone")
    if not methods:
        raise MushcamError("choose at least one CAM method")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise MushcamError(f"unknown CAM method {bad[0]!r}; choose from {', '.join(METHODS)}")
    columns = [column_key(b, m) for b in backbones for m in dict.fromkeys(methods)]
    if not images:
        raise MushcamError("no images to compare")
    total = len(images) * len(columns)
    done = 0
    rows = []
    for image in images:
        true_class = manifest_class(manifest, image.label)
        cells: dict[str, Cell] = {}
        maps: dict[str, np.ndarray] = {}
        for column in columns:
            if progress is not None:
                progress(done, total, f"{column_label(column, manifest.display_name(split_column(column)[0]))} on "
                         f"{image.name}")
            backbone, method = split_column(column)
            explanation = explain(backbone, image) if method == DEFAULT_METHOD else explain(backbone, image, method)
            maps[column] = measure_map(explanation.cam, image.image.size, manifest.input, measure_side)
            cells[column] = make_cell(column, explanation, manifest, true_class, maps[column])
            done += 1
        rows.append(Row(
            image=image,
            true_class=true_class,
            true_toxicity=manifest.toxicity(true_class) if true_class is not None else None,
            cells=cells,
            agreement=tuple(pairwise_agreement(maps, fraction)),
        ))
    if progress is not None:
        progress(total, total, "done")
    labels = {c: column_label(c, manifest.display_name(split_column(c)[0])) for c in columns}
    return Comparison(tuple(columns), tuple(rows), fraction, labels)


def cell_picture(image: Image.Image, explanation: Explanation, spec: InputSpec, scale: float | None,
                 view: str = "overlay", alpha: float = DEFAULT_ALPHA, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The overlay (or the heatmap alone) of one map on ``image`` (any display size), RGB uint8."""
    if view not in GRID_VIEWS:
        raise MushcamError(f"view must be one of {', '.join(GRID_VIEWS)}; got {view!r}")
    heat = upsample_cam(explanation.cam, image.size, crop_box(image.size, spec), scale)
    return colorize(heat, colormap) if view == "heatmap" else overlay(image, heat, alpha, colormap)


# --- tables ---------------------------------------------------------------------------

def _mean_where(values: Iterable[tuple[float, bool | None]], wanted: bool) -> float:
    return summarise(v for v, ok in values if ok is wanted).mean


def backbone_summary(comparison: Comparison) -> list[dict[str, object]]:
    """One row per backbone: accuracy where the true class is known, dangerous errors, focus.

    Focus is also split by correct / wrong predictions, so that a claim such as "maps are
    more diffuse on errors" can be checked in numbers.
    """
    table = []
    for backbone in comparison.backbones:
        cells = [row.cells[backbone] for row in comparison.rows]
        correct = sum(c.correct is True for c in cells)
        wrong = sum(c.correct is False for c in cells)
        area = summarise(c.focus.half_mass_area for c in cells)
        entropy = summarise(c.focus.entropy for c in cells)
        table.append({
            "backbone": backbone,
            "images": len(cells),
            "correct": correct,
            "wrong": wrong,
            "accuracy": correct / (correct + wrong) if correct + wrong else math.nan,
            "poisonous_called_edible": sum(c.dangerous for c in cells),
            "mean_confidence": summarise(c.confidence for c in cells).mean,
            "half_mass_area_mean": area.mean,
            "half_mass_area_median": area.median,
            "half_mass_area_mean_correct": _mean_where(((c.focus.half_mass_area, c.correct) for c in cells), True),
            "half_mass_area_mean_wrong": _mean_where(((c.focus.half_mass_area, c.correct) for c in cells), False),
            "entropy_mean": entropy.mean,
            "entropy_median": entropy.median,
            "entropy_mean_correct": _mean_where(((c.focus.entropy, c.correct) for c in cells), True),
            "entropy_mean_wrong": _mean_where(((c.focus.entropy, c.correct) for c in cells), False),
            "undefined_maps": area.undefined,
        })
    return table


def pair_summary(comparison: Comparison) -> list[dict[str, object]]:
    """One row per pair of backbones: top-region IoU and Spearman over the sample."""
    table = []
    for index, pair in enumerate(comparison.rows[0].agreement if comparison.rows else ()):
        iou = summarise(row.agreement[index].iou for row in comparison.rows)
        rho = summarise(row.agreement[index].spearman for row in comparison.rows)
        table.append({
            "pair": pair.label,
            f"iou_top{round(comparison.fraction * 100)}_mean": iou.mean,
            f"iou_top{round(comparison.fraction * 100)}_median": iou.median,
            "spearman_mean": rho.mean,
            "spearman_median": rho.median,
            "images_defined": min(iou.n, rho.n),
            "images_undefined": max(iou.undefined, rho.undefined),
        })
    return table


def image_table(comparison: Comparison) -> list[dict[str, object]]:
    """One row per image: each backbone's prediction and focus, each pair's agreement.

    None marks what is unknown (true class, correctness); NaN a measure that is undefined.
    """
    top = f"iou_top{round(comparison.fraction * 100)}"
    table = []
    for row in comparison.rows:
        record: dict[str, object] = {
            "image": row.image.name,
            "image_sha256": row.image.sha256,
            "true_class": row.image.label,
            "true_toxicity": row.true_toxicity,
        }
        for backbone, cell in row.cells.items():
            record[f"{backbone}_predicted"] = cell.predicted
            record[f"{backbone}_confidence"] = cell.confidence
            record[f"{backbone}_correct"] = cell.correct
            record[f"{backbone}_poisonous_called_edible"] = cell.dangerous
            record[f"{backbone}_half_mass_area"] = cell.focus.half_mass_area
            record[f"{backbone}_entropy"] = cell.focus.entropy
            record[f"{backbone}_cam_max"] = cell.cam_max
        for pair in row.agreement:
            record[f"{top}_{pair.first}_vs_{pair.second}"] = pair.iou
            record[f"spearman_{pair.first}_vs_{pair.second}"] = pair.spearman
        table.append(record)
    return table


def summary_long(comparison: Comparison) -> list[dict[str, object]]:
    """Both summaries in one long table: scope, name, measure, value."""
    rows: list[dict[str, object]] = []
    for record in backbone_summary(comparison):
        for measure, value in record.items():
            if measure != "backbone":
                rows.append({"scope": "backbone", "name": record["backbone"], "measure": measure, "value": value})
    for record in pair_summary(comparison):
        for measure, value in record.items():
            if measure != "pair":
                rows.append({"scope": "pair", "name": record["pair"], "measure": measure, "value": value})
    return rows


def to_csv(table: Sequence[Mapping[str, object]]) -> str:
    """CSV text of a list of records (NaN and None written as empty fields)."""
    buffer = io.StringIO()
    if not table:
        return ""
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for record in table:
        writer.writerow({k: _csv_value(v) for k, v in record.items()})
    return buffer.getvalue()


def _csv_value(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


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


_ASCII_SUBSTITUTES = str.maketrans({"×": "x", "→": "->", "–": "-", "—": "-", "…": "...", "·": "|"})


def _ascii(text: str) -> str:
    """The bundled font lacks most non-ASCII glyphs: user labels such as 'ResNet-50 (×4)' or
    'Rüde' are drawn as 'ResNet-50 (x4)' and 'Rude', and '?' stands for anything else rather
    than an empty box."""
    text = unicodedata.normalize("NFKD", text.translate(_ASCII_SUBSTITUTES))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.encode("ascii", "replace").decode("ascii")


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font: object) -> str:
    text = _ascii(text)
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
    model, method = split_column(backbone)
    short = SHORT_NAMES.get(model, model)
    return short if method == DEFAULT_METHOD else f"{short}/{METHOD_LABELS[method]}"


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
    """The whole grid as one RGB picture: original first, one column per backbone, each cell
    marked (correct / wrong / poisonous called edible) with its prediction and focus, each
    row's pairwise agreement on the right, and the summaries at the bottom."""
    pad, small, big = 12, 14, 20
    line = small + 6
    font, bold = _font(small), _font(big)
    n_pairs = len(comparison.rows[0].agreement) if comparison.rows else 0
    agree_w = 290 if n_pairs else 0
    columns = 1 + len(comparison.backbones)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    top = round(comparison.fraction * 100)
    header = [
        (f"Grad-CAM comparison: {len(comparison.rows)} images x {len(comparison.backbones)} models"
         if all(split_column(b)[1] == DEFAULT_METHOD for b in comparison.backbones)
         else f"CAM comparison: {len(comparison.rows)} images x {len(comparison.backbones)} columns (models x methods)")
        + (f"  ({created})" if created else ""),
        f"{'Overlay' if view == 'overlay' else 'Heatmap'}; maps normalised "
        f"{'per image (each to its own maximum)' if normalisation == 'per_image' else 'shared across each row (the row largest raw maximum)'}. "
        f"Focus: half-mass area (share of the image holding half the map, smaller = focused), "
        f"entropy H/log n (0 = one point, 1 = uniform).",
        f"Agreement: IoU of the top-{top}% regions and Spearman rank correlation of the maps. "
        + ", ".join(f"{short_name(b)} = {comparison.label(b)}" for b in comparison.backbones),
    ]
    footer = summary_lines(comparison)
    grid_w = pad + columns * (panel + pad) + (agree_w + pad if agree_w else 0)
    text_w = max(scratch.textlength(_ascii(t), font=font) for t in header[1:] + footer) + 2 * pad
    width = int(max(grid_w, text_w, scratch.textlength(_ascii(header[0]), font=bold) + 2 * pad))
    caption_h = 3 * line + 6
    agreement_h = 4 + n_pairs * (2 * line + 4)  # with many models, the agreement column sets the row height
    row_h = max(panel + caption_h, agreement_h) + pad
    header_h = pad + big + 8 + 2 * line + pad + line
    footer_h = pad + len(footer) * line + pad
    height = header_h + len(comparison.rows) * row_h + footer_h
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)

    y = pad
    draw.text((pad, y), _ascii(header[0]), fill=_TEXT, font=bold)
    y += big + 8
    for text in header[1:]:
        draw.text((pad, y), _ascii(text), fill=_MUTED, font=font)
        y += line
    y += pad
    titles = ["Image"] + [comparison.label(b) for b in comparison.backbones] + (["Agreement"] if agree_w else [])
    for i, title in enumerate(titles):
        draw.text((pad + i * (panel + pad), y), _fit_text(draw, title, panel, font), fill=_TEXT, font=font)
    y = header_h

    for row in comparison.rows:
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
            if i == 0:
                truth = (
                    f"true: {row.image.label} ({row.true_toxicity or 'not in manifest'})"
                    if row.image.label is not None else "true class unknown"
                )
                lines = [(row.image.name, _TEXT), (truth, _MUTED)]
            else:
                cell = row.cells[comparison.backbones[i - 1]]
                mark, colour = verdict(cell)
                lines = [
                    (f"{cell.predicted} {cell.confidence:.1%}", _TEXT),
                    (mark, colour),
                    (f"half-mass {fmt(cell.focus.half_mass_area, 3, True)} | H {fmt(cell.focus.entropy, 3)}", _MUTED),
                ]
            for text, colour in lines:
                draw.text((x, ty), _fit_text(draw, text, panel, font), fill=colour, font=font)
                ty += line
            x += panel + pad
        if agree_w:
            ty = y + 4
            for pair in row.agreement:
                draw.text((x, ty), _fit_text(draw, f"{short_name(pair.first)} - {short_name(pair.second)}:", agree_w, font),
                          fill=_TEXT, font=font)
                ty += line
                draw.text((x + 10, ty), f"IoU {fmt(pair.iou)}  Spearman {fmt(pair.spearman)}", fill=_MUTED, font=font)
                ty += line + 4
        y += row_h

    y += pad
    for text in footer:
        draw.text((pad, y), _ascii(text), fill=_TEXT, font=font)
        y += line
    return np.asarray(canvas)


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
    paths = ExportPaths(out / export_name(when), out / export_name(when, ".csv"), out / export_name(when, "_summary.csv"))
    picture = render_comparison(comparison, manifest, normalisation, view, alpha, colormap,
                                created=f"{when:%Y-%m-%d %H:%M:%S}")
    # Every text is made before any file is written, and each file is written atomically:
    # a failure leaves no empty or partial export behind.
    png, table, summary = to_png(picture), to_csv(image_table(comparison)), to_csv(summary_long(comparison))
    write_bytes_atomic(paths.png, png)
    write_text_atomic(paths.csv, table)
    write_text_atomic(paths.summary_csv, summary)
    return paths


# --- command line ---------------------------------------------------------------------

def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="the models side by side on several images: grid PNG with agreement and focus numbers, CSV",
        description="Grad-CAM of every chosen backbone on several images, with how much the maps agree "
        "(top-20% IoU, Spearman) and how focused each is (half-mass area, entropy). Writes "
        "gradcam_detailed_comparison_{timestamp}.png, .csv and _summary.csv.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGES_OR_FOLDER",
        help="image files (all used; a file's true class is its folder's name when the manifest lists it), "
        "or one test folder <folder>/<Class>/* to sample from (or a folder of images)",
    )
    parser.add_argument("--model", "--models", "--backbone", "--backbones", dest="models", nargs="+", metavar="NAME",
                        help="models to compare by their manifest name, any number (default: every one with a "
                        "checkpoint); --backbones is the old spelling")
    parser.add_argument("--method", nargs="+", choices=METHODS, default=[DEFAULT_METHOD], metavar="METHOD",
                        help="CAM method(s): several make the columns models x methods; "
                        f"{', '.join(METHODS)} (default {DEFAULT_METHOD})")
    parser.add_argument("--n", type=int, default=DEFAULT_SAMPLE_SIZE, help="images sampled from a folder (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or checkpoints/)")
    parser.add_argument("--normalise", choices=NORMALISATIONS, default="per_image",
                        help="per_image: each map to its own maximum (default); shared: each row to its largest map")
    parser.add_argument("--view", choices=GRID_VIEWS, default="overlay", help="overlay (default) or heatmap alone")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="overlay opacity 0..1 (default 0.45)")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, help="jet (default), viridis, hot, inferno, ...")
    parser.add_argument("--no-outcome-mix", action="store_true",
                        help="sample by class only, without predicting candidates to mix correct and wrong ones")
    parser.add_argument("--no-cache", action="store_true",
                        help="keep maps in memory only (default: the on-disk map cache shared with the app, "
                        "$MUSHCAM_CACHE or ~/.cache/mushcam/cams)")
    parser.set_defaults(handler=run_compare)


def usable_backbones(manifest: Manifest, requested: Sequence[str] | None) -> list[str]:
    """The requested models by manifest name (comma or space separated), or every one whose
    checkpoint exists, in the manifest's order."""
    from mushcam.catalog import checkpoint_statuses

    statuses = {s.name: s for s in checkpoint_statuses(manifest)}
    if not requested:
        found = [name for name, status in statuses.items() if status.status == "found"]
        if not found:
            raise MushcamError(
                f"no checkpoint files found for the manifest in {manifest.root}: "
                + ("; ".join(f"{n}: {s.reason}" for n, s in statuses.items()) or "it lists no models")
            )
        return found
    names = [name.strip() for item in requested for name in item.split(",") if name.strip()]
    chosen = []
    for name in names:
        if name not in statuses:
            raise MushcamError(f"--model: no model named {name!r} in the manifest; choose from {', '.join(statuses)}")
        if statuses[name].status != "found":
            raise MushcamError(f"--model: {name} cannot be used ({statuses[name].reason})")
        if name not in chosen:
            chosen.append(name)
    return chosen


class Memo:
    """The command line's cache: each model loaded once, on first need, and each explanation
    computed once per (model, image). ``load(name)`` returns the module, or the
    :class:`mushcam.catalog.LoadedModel` (whose layer is used where the manifest names none). With a :class:`mushcam.cache.CamCache` the maps go
    through the on-disk cache that the app and ``python -m mushcam gradcam`` share (so a map
    made there costs no model call here, and the numbers match the page's exactly); without
    one they are kept in memory only."""

    def __init__(self, manifest: Manifest, load: Callable[[str], Any], cache: CamCache | None = None) -> None:
        self.manifest = manifest
        self.load = load
        self.cache = cache
        self.models: dict[str, nn.Module] = {}
        self.layers: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.store: dict[tuple[str, str], Explanation] = {}

    def model(self, backbone: str) -> nn.Module:
        if backbone not in self.models:
            loaded = self.load(backbone)
            if isinstance(loaded, nn.Module):
                self.models[backbone] = loaded
            else:  # a LoadedModel
                self.models[backbone] = loaded.model
                self.layers[backbone] = loaded.layer
        return self.models[backbone]

    def layer(self, backbone: str) -> str:
        """The manifest's layer, else the one chosen when the model was loaded (loading it now)."""
        from mushcam.catalog import cam_layer

        named = cam_layer(self.manifest, backbone)
        if named:
            return named
        self.model(backbone)
        if backbone not in self.layers:
            raise ValueError(f"{backbone}: the manifest names no Grad-CAM layer; add \"layer\" to its entry")
        return self.layers[backbone]

    def __call__(self, backbone: str, image: CompareImage, method: str = DEFAULT_METHOD) -> Explanation:
        key = (backbone, image.sha256, method)
        if key not in self.store:
            self.store[key] = self._explain(backbone, image, method)
        return self.store[key]

    def _explain(self, backbone: str, image: CompareImage, method: str = DEFAULT_METHOD) -> Explanation:
        with naming_model(backbone):
            return self._explain_named(backbone, image, method)

    def _explain_named(self, backbone: str, image: CompareImage, method: str = DEFAULT_METHOD) -> Explanation:
        from mushcam import cache as cam_cache
        from mushcam.explain import explain_image

        spec, layer = self.manifest.input, self.layer(backbone)
        if self.cache is None:
            return explain_image(self.model(backbone), image.image, spec, layer, None, method)
        if backbone not in self.digests:
            from mushcam.catalog import cache_digest, entry_fingerprint

            self.digests[backbone] = cache_digest(self.cache.checkpoint_sha256(self.manifest.checkpoint_path(backbone)),
                                                  entry_fingerprint(self.manifest, backbone))
        digest = self.digests[backbone]
        entry = self.cache.get_entry(cam_cache.cam_key(digest, image.sha256, layer, None, spec, method))
        if cam_cache.entry_fits(entry, spec, self.manifest.num_classes):
            return Explanation(entry.cam, entry.probabilities, entry.class_idx, layer, method)  # no model needed
        return cam_cache.cached_explanation(self.cache, self.model(backbone), image.image, spec, layer, None,
                                            digest, image.sha256, method)


def outcome_with(explain: ExplainFn, backbones: Sequence[str], manifest: Manifest,
                 load: Callable[[LabelledImage], CompareImage]) -> OutcomeFn:
    """outcome(item): True if every backbone predicts the item's class, False if one does not,
    None if its class is not in the manifest. Uses (and fills) the same cache as the grid."""

    def outcome(item: LabelledImage) -> bool | None:
        true_class = manifest_class(manifest, item.label)
        if true_class is None:
            return None
        image = load(item)
        index = manifest.class_names.index(true_class)
        return all(explain(b, image).predicted_idx == index for b in backbones)

    return outcome


def gather_images(inputs: Sequence[str], manifest: Manifest, n: int, seed: int,
                  outcome_for: Callable[[Callable[[LabelledImage], CompareImage]], OutcomeFn] | None = None,
                  ) -> list[CompareImage]:
    """The images named on the command line, or a sample of one folder."""
    paths = [Path(p).expanduser() for p in inputs]
    folders = [p for p in paths if p.is_dir()]
    if folders:
        if len(paths) > 1:
            raise MushcamError("give either one folder to sample from, or image files (not both, not several folders)")
        from mushcam.data import scan_images

        folder = folders[0]
        scan = scan_images(folder)
        for relpath, reason in scan.skipped:
            print(f"skipped {relpath}: {reason}", file=sys.stderr)
        items = scan.images
        if items:
            cache: dict[str, CompareImage] = {}

            def load(item: LabelledImage) -> CompareImage:
                if item.relpath not in cache:
                    cache[item.relpath] = _load_named(item.path, item.relpath, item.label)
                return cache[item.relpath]

            outcome = outcome_for(load) if outcome_for is not None else None
            return [load(item) for item in select_sample(items, manifest, n, seed, outcome)]
        flat = flat_folder_images(folder)
        if not flat:
            raise MushcamError(f"no images in {folder} (expected {folder}/<Class>/<image> or images in the folder)")
        if len(flat) > n:
            flat = [flat[i] for i in sorted(np.random.default_rng(seed).choice(len(flat), n, replace=False))]
        return [_load_named(p, printable(p.name), None) for p in flat]
    images = []
    for path in paths:
        if not path.exists():
            raise MushcamError(f"no such file or folder: {printable(path)}")
        label = path.parent.name if manifest_class(manifest, path.parent.name) is not None else None
        images.append(_load_named(path, printable(path.name), label))
    return images


def _load_named(path: Path, name: str, label: str | None) -> CompareImage:
    try:
        return load_compare_image(path, name, label)
    except ValueError as exc:
        raise MushcamError(f"{printable(path)}: {exc}") from None


def run_compare(args: argparse.Namespace) -> int:
    from mushcam.catalog import load_catalog_entry
    from mushcam.cli import UsageError, resolve_manifest
    from mushcam.render import COLORMAPS

    if not 1 <= args.n <= MAX_GRID_IMAGES:
        raise UsageError(f"--n must be between 1 and {MAX_GRID_IMAGES} (one grid is for people to read); got {args.n}; "
                         "for more images use python -m mushcam gradcam")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more; got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder (it is created)")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {args.colormap!r}")
    manifest = resolve_manifest(args.manifest)
    backbones = usable_backbones(manifest, args.models)
    from mushcam.cache import default_cache_dir

    cache = None if args.no_cache else CamCache(default_cache_dir())
    memo = Memo(manifest, lambda name: load_catalog_entry(manifest, name), cache)
    outcome_for = None if args.no_outcome_mix else (lambda load: outcome_with(memo, backbones, manifest, load))
    if len(args.inputs) > MAX_GRID_IMAGES:
        raise UsageError(f"{len(args.inputs)} images given; one grid holds at most {MAX_GRID_IMAGES} "
                         "(for more images use python -m mushcam gradcam)")
    images = gather_images(args.inputs, manifest, args.n, args.seed, outcome_for)

    def progress(done: int, total: int, what: str) -> None:
        if done < total:
            print(f"[{done + 1}/{total}] {what}", file=sys.stderr)

    comparison = compute_comparison(images, backbones, manifest, memo, progress=progress, methods=args.method)
    paths = write_export(comparison, manifest, args.out, args.normalise, args.view, args.alpha, args.colormap)
    unlisted = sorted({img.label for img in images if img.label is not None and manifest_class(manifest, img.label) is None})
    if unlisted:
        print(f"note: classes not in the manifest (correctness unknown): {', '.join(unlisted)}", file=sys.stderr)
    print("\n".join(summary_lines(comparison)))
    print(f"wrote {paths.png}\nwrote {paths.csv}\nwrote {paths.summary_csv}")
    return 0
