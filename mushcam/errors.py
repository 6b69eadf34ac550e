"""Choosing which stored predictions to look at: filtering, sorting and paging (pure functions).

The Errors page keeps one :class:`RunTable` per run (the stored rows plus each row's error
kind, computed once) and answers every widget change with :func:`matching_rows` and
:func:`page_of`: boolean masks and one stable sort over NumPy columns, well under a
millisecond for 10,000 rows (``benchmarks/bench_errors.py``).

Error kinds, as in :mod:`mushcam.metrics`: ``dangerous`` = a poisonous class predicted as
an edible one; ``benign`` = edible predicted as poisonous; ``other`` = any other wrong
prediction; ``low_confidence`` = confidence below 0.5, right or wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mushcam.metrics import BENIGN, CORRECT, DANGEROUS, OTHER_WRONG, error_kinds
from mushcam.store import Predictions, RunRecord, StoreContents

LOW_CONFIDENCE = 0.5

KIND_LABELS: dict[str, str] = {
    "errors": "All errors",
    "dangerous": "Poisonous → edible (dangerous)",
    "benign": "Edible → poisonous",
    "other": "Other wrong",
    "low_confidence": f"Low confidence (< {LOW_CONFIDENCE:g}), right or wrong",
    "all": "All predictions",
}
KINDS: tuple[str, ...] = tuple(KIND_LABELS)

ORDER_LABELS: dict[str, str] = {
    "confident_first": "Most confident first",
    "least_confident_first": "Least confident first",
    "path": "Image path",
}
ORDERS: tuple[str, ...] = tuple(ORDER_LABELS)

ROW_KIND_NAMES: dict[int, str] = {
    CORRECT: "correct",
    DANGEROUS: "poisonous → edible",
    BENIGN: "edible → poisonous",
    OTHER_WRONG: "wrong",
}


@dataclass(frozen=True)
class ErrorFilter:
    """What the page's widgets ask for. Confidence bounds are inclusive; None = any class."""

    confidence: tuple[float, float] = (0.0, 1.0)
    true_idx: int | None = None
    pred_idx: int | None = None
    kind: str = "errors"
    order: str = "confident_first"


@dataclass(frozen=True)
class RunTable:
    """One run's rows with each row's error kind (int8, see :mod:`mushcam.metrics`)."""

    run: RunRecord
    rows: Predictions
    kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def class_names(self) -> list[str]:
        return self.run.class_names


def run_table(run: RunRecord, rows: Predictions) -> RunTable:
    """Precompute the error kind of every row of ``run``."""
    return RunTable(run, rows, error_kinds(rows.true_idx, rows.pred_idx, run.toxicities))


def matching_rows(table: RunTable, flt: ErrorFilter) -> np.ndarray:
    """Indices of the rows that pass ``flt``, in the requested order."""
    if flt.kind not in KIND_LABELS:
        raise ValueError(f"unknown error kind {flt.kind!r}; choose one of: {', '.join(KINDS)}")
    if flt.order not in ORDER_LABELS:
        raise ValueError(f"unknown order {flt.order!r}; choose one of: {', '.join(ORDERS)}")
    low, high = flt.confidence
    confidence = table.rows.confidence
    mask = (confidence >= low) & (confidence <= high)
    if flt.true_idx is not None:
        mask &= table.rows.true_idx == flt.true_idx
    if flt.pred_idx is not None:
        mask &= table.rows.pred_idx == flt.pred_idx
    kinds = table.kinds
    if flt.kind == "errors":
        mask &= kinds != CORRECT
    elif flt.kind == "dangerous":
        mask &= kinds == DANGEROUS
    elif flt.kind == "benign":
        mask &= kinds == BENIGN
    elif flt.kind == "other":
        mask &= kinds == OTHER_WRONG
    elif flt.kind == "low_confidence":
        mask &= confidence < LOW_CONFIDENCE
    indices = np.flatnonzero(mask)
    if flt.order == "confident_first":
        indices = indices[np.argsort(-confidence[indices], kind="stable")]
    elif flt.order == "least_confident_first":
        indices = indices[np.argsort(confidence[indices], kind="stable")]
    return indices  # "path": rows are stored in path order already


@dataclass(frozen=True)
class Page:
    """One page of a list: the row indices on it, its 1-based number, the page count, the total."""

    rows: np.ndarray
    number: int
    count: int
    total: int


def page_count(total: int, page_size: int) -> int:
    """Pages needed for ``total`` rows (at least 1, so an empty list still has a page 1)."""
    if page_size < 1:
        raise ValueError(f"page size must be at least 1; got {page_size}")
    return max(1, -(-total // page_size))


def page_of(indices: np.ndarray, number: int, page_size: int) -> Page:
    """Page ``number`` (1-based, clamped into range) of ``indices``."""
    count = page_count(len(indices), page_size)
    number = min(max(1, int(number)), count)
    start = (number - 1) * page_size
    return Page(indices[start:start + page_size], number, count, len(indices))


def row_kind_name(table: RunTable, index: int) -> str:
    """``correct``, ``poisonous → edible``, ``edible → poisonous`` or ``wrong`` (plus low confidence)."""
    name = ROW_KIND_NAMES[int(table.kinds[index])]
    if table.rows.confidence[index] < LOW_CONFIDENCE:
        name += ", low confidence"
    return name


def display_rows(table: RunTable, indices: Sequence[int] | np.ndarray, first_number: int = 1) -> dict[str, list[Any]]:
    """Columns for a table widget: #, image, true, predicted, confidence, p(true), kind."""
    names = table.class_names
    rows = table.rows
    idx = [int(i) for i in indices]
    return {
        "#": list(range(first_number, first_number + len(idx))),
        "image": [rows.image_paths[i] for i in idx],
        "true class": [names[int(rows.true_idx[i])] for i in idx],
        "predicted": [names[int(rows.pred_idx[i])] for i in idx],
        "confidence": [round(float(rows.confidence[i]), 4) for i in idx],
        "p(true class)": [round(float(rows.probabilities[i, int(rows.true_idx[i])]), 4) for i in idx],
        "kind": [row_kind_name(table, i) for i in idx],
    }


@dataclass(frozen=True)
class OtherView:
    """How another run saw the same image: the run and the row index in its predictions."""

    run: RunRecord
    index: int


def same_image_elsewhere(contents: StoreContents, run: RunRecord, image_path: str) -> list[OtherView]:
    """The rows of other runs on the same data root for ``image_path`` (same relative path)."""
    found = []
    for other in contents.runs:
        if other.run_id == run.run_id or other.data_root != run.data_root:
            continue
        try:
            found.append(OtherView(other, contents.predictions[other.run_id].image_paths.index(image_path)))
        except ValueError:
            continue  # that run did not see this image
    return found


def confusion_cells(confusion: np.ndarray, class_names: Sequence[str]) -> list[tuple[int, int, int]]:
    """Non-empty cells as (true, predicted, count): errors first (largest first), then the diagonal."""
    cells = [(i, j, int(confusion[i, j])) for i in range(len(class_names)) for j in range(len(class_names))
             if confusion[i, j] > 0]
    return sorted(cells, key=lambda c: (c[0] == c[1], -c[2], c[0], c[1]))
