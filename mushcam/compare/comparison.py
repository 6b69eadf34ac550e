"""The comparison itself: every (model x method) column's map of every image, and its measures.

:func:`compute_comparison` asks an ``explain(backbone, image)`` function (the page passes a
cached one, the command line a :class:`Memo`) for every (backbone, image) once, and measures
each map's focus and each pair's agreement (:mod:`mushcam.metrics.agreement`) on a common grid: the
region the network saw, fitted within ``MEASURE_SIDE`` pixels, aspect kept. The measures are
scale-free, so they do not depend on the display normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mushcam.cache import CamCache, cam_key, entry_fits
from mushcam.cam import DEFAULT_METHOD, METHOD_LABELS, METHODS, Column
from mushcam.compare.sample import CompareImage, OutcomeFn, manifest_class
from mushcam.data import LabelledImage, crop_box
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation, cached_explanation, explain_image
from mushcam.finite import naming_model
from mushcam.manifest import InputSpec, Manifest
from mushcam.metrics.agreement import (
    TOP_FRACTION,
    Focus,
    PairAgreement,
    PreparedMap,
    focus,
    pairwise_agreement,
    pairwise_prepared,
    prepare_map,
)
from mushcam.models import DISPLAY_NAMES
from mushcam.render import cam_scale, upsample_cam
from mushcam.toxicity import Toxicity

MEASURE_SIDE = 224  # the common grid on which maps of different backbones are compared
NORMALISATIONS: tuple[str, ...] = ("per_image", "shared")

# explain(model, image) for Grad-CAM, explain(model, image, method) otherwise (see explain_column)
ExplainFn = Callable[..., Explanation]
ProgressFn = Callable[[int, int, str], None]


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


@dataclass(frozen=True)
class MeasuredCell:
    """One cell and its map prepared for the pairwise measures: what a memo keeps between calls."""

    cell: Cell
    prepared: PreparedMap


CellKeyFn = Callable[[Column, CompareImage], Hashable]


class CellMemo(Protocol):
    """Where :func:`compute_comparison` keeps measured cells between calls (a dict will do)."""

    def get(self, key: Hashable) -> MeasuredCell | None: ...

    def __setitem__(self, key: Hashable, cell: MeasuredCell) -> None: ...


def split_column(key: str) -> tuple[str, str]:
    """``(model, method)`` of a column key: :meth:`mushcam.cam.Column.parse`, as a pair."""
    column = Column.parse(key)
    return column.model, column.method


def column_label(key: str, model_label: str | None = None) -> str:
    """A column's display name: "ResNet-50", or "ResNet-50 · Score-CAM" (``model_label``:
    the model's own display name, e.g. the manifest's label)."""
    column = Column.parse(key)
    name = model_label or DISPLAY_NAMES.get(column.model, column.model)
    return name if column.method == DEFAULT_METHOD else f"{name} · {METHOD_LABELS[column.method]}"


def explain_column(explain: ExplainFn, column: Column, image: CompareImage) -> Explanation:
    """``column``'s map of ``image``: ``explain(model, image, method)``, or ``explain(model, image)``
    for Grad-CAM.

    Grad-CAM keeps the two-argument call of the time before there were other methods, so an
    ``explain`` written then (the tests' fakes, callers' own) still works; this is the one
    place that says so.
    """
    if column.method == DEFAULT_METHOD:
        return explain(column.model, image)
    return explain(column.model, image, column.method)


@dataclass(frozen=True)
class Comparison:
    backbones: tuple[str, ...]  # the models' manifest names, in column order
    rows: tuple[Row, ...]
    fraction: float = TOP_FRACTION
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # name -> display name

    def label(self, name: str) -> str:
        """A model's display name (its manifest label, a preset's name, or the name itself)."""
        return self.labels.get(name) or DISPLAY_NAMES.get(name, name)


def measure_map(cam: torch.Tensor, image_size: tuple[int, int], spec: InputSpec,
                side: int = MEASURE_SIDE) -> np.ndarray:
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
        and manifest.toxicity(true_class) == Toxicity.POISONOUS
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
    memo: CellMemo | None = None,
    cell_key: CellKeyFn | None = None,
) -> Comparison:
    """Every backbone's map of every image (one ``explain`` call each), with focus and agreement.

    With several ``methods`` the columns are models x methods (:class:`mushcam.cam.Column`),
    and ``explain`` is called as :func:`explain_column` says. With a ``memo`` and a
    ``cell_key(column, image)`` that names everything the map depends on (the page: the
    checkpoint's identity, the layer, the method, the photo's SHA-256), each measured cell is
    kept there and reused by the next call: adding a method measures only its own maps.
    """
    if not backbones:
        raise MushcamError("choose at least one backbone")
    if not methods:
        raise MushcamError("choose at least one CAM method")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise MushcamError(f"unknown CAM method {bad[0]!r}; choose from {', '.join(METHODS)}")
    columns = [Column(b, m) for b in backbones for m in dict.fromkeys(methods)]
    if not images:
        raise MushcamError("no images to compare")
    labels = {c.key: column_label(c.key, manifest.display_name(c.model)) for c in columns}
    total = len(images) * len(columns)
    done = 0
    rows = []
    for image in images:
        true_class = manifest_class(manifest, image.label)
        cells: dict[str, Cell] = {}
        prepared: dict[str, PreparedMap] = {}
        for column in columns:
            if progress is not None:
                progress(done, total, f"{labels[column.key]} on {image.name}")
            key = None if memo is None or cell_key is None else (cell_key(column, image), true_class, fraction,
                                                                  measure_side)
            measured = memo.get(key) if memo is not None and key is not None else None
            if measured is None:
                cell, heat = column_cell(column, image, manifest, explain, true_class, measure_side)
                measured = MeasuredCell(cell, prepare_map(heat, fraction))
                if memo is not None and key is not None:
                    memo[key] = measured
            cells[column.key], prepared[column.key] = measured.cell, measured.prepared
            done += 1
        pairs = pairwise_prepared(prepared)
        if pairs is None:  # maps that do not see the same pixels: each pair on the pixels both see
            pairs = pairwise_agreement({key: measure_map(cell.explanation.cam, image.image.size, manifest.input,
                                                         measure_side) for key, cell in cells.items()}, fraction)
        rows.append(Row(
            image=image,
            true_class=true_class,
            true_toxicity=manifest.toxicity(true_class) if true_class is not None else None,
            cells=cells,
            agreement=tuple(pairs),
        ))
    if progress is not None:
        progress(total, total, "done")
    return Comparison(tuple(c.key for c in columns), tuple(rows), fraction, labels)


def column_cell(column: Column, image: CompareImage, manifest: Manifest, explain: ExplainFn,
                true_class: str | None, measure_side: int = MEASURE_SIDE) -> tuple[Cell, np.ndarray]:
    """One column's cell on ``image`` and its map on the common grid (:func:`measure_map`)."""
    explanation = explain_column(explain, column, image)
    heat = measure_map(explanation.cam, image.image.size, manifest.input, measure_side)
    return make_cell(column.key, explanation, manifest, true_class, heat), heat


class Memo:
    """The command line's cache: each model loaded once, on first need, and each explanation
    computed once per (model, image). ``load(name)`` returns the module, or the
    :class:`mushcam.catalog.LoadedModel` (whose layer is used where the manifest names none).
    With a :class:`mushcam.cache.CamCache` the maps go through the on-disk cache that the app
    and ``python -m mushcam gradcam`` share (so a map made there costs no model call here, and
    the numbers match the page's exactly); without one they are kept in memory only."""

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
        spec, layer = self.manifest.input, self.layer(backbone)
        if self.cache is None:
            return explain_image(self.model(backbone), image.image, spec, layer, None, method)
        if backbone not in self.digests:
            from mushcam.catalog import cache_digest, entry_fingerprint

            self.digests[backbone] = cache_digest(self.cache.checkpoint_sha256(self.manifest.checkpoint_path(backbone)),
                                                  entry_fingerprint(self.manifest, backbone))
        digest = self.digests[backbone]
        entry = self.cache.get_entry(cam_key(digest, image.sha256, layer, None, spec, method))
        if entry_fits(entry, spec, self.manifest.num_classes):
            return Explanation(entry.cam, entry.probabilities, entry.class_idx, layer, method)  # no model needed
        return cached_explanation(self.cache, self.model(backbone), image.image, spec, layer, None,
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
