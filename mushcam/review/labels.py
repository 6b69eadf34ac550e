"""Labels to fix: errors tagged "label doubtful", as a CSV a user can apply to their dataset.

Columns: ``path`` (relative to the data folder, as evaluated), ``current_label`` (the class
folder it is in), ``suggested_label`` (the reviewer's, may be empty), ``note``, ``reviewer``.
One row per image and reviewer (the same photo reviewed under several models counts once).
Written and read through :mod:`mushcam.csvfile` (the formula guard, quoting of CR/LF), so
:func:`read_csv` returns exactly what was written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass

from mushcam.csvfile import csv_text, read_csv_text
from mushcam.exceptions import MushcamError
from mushcam.review.causes import LABEL_DOUBTFUL
from mushcam.review.store import Review

COLUMNS: tuple[str, ...] = ("path", "current_label", "suggested_label", "note", "reviewer")


@dataclass(frozen=True)
class LabelFix:
    path: str
    current_label: str
    suggested_label: str
    note: str
    reviewer: str


def label_fixes(reviews: Iterable[Review]) -> list[LabelFix]:
    """Every review tagged label doubtful, one per (image, reviewer), ordered by path then reviewer."""
    seen: dict[tuple[str, str], LabelFix] = {}
    for review in reviews:
        if LABEL_DOUBTFUL not in review.causes:
            continue
        key = (review.key.image_sha256, review.reviewer)
        if key not in seen:
            seen[key] = LabelFix(review.image_path, review.true_class, review.suggested_label, review.note,
                                 review.reviewer)
    return sorted(seen.values(), key=lambda f: (f.path, f.reviewer))


def to_csv(fixes: Iterable[LabelFix]) -> str:
    """The label-fix CSV (header, then one row per fix) through the one CSV writer."""
    return csv_text([COLUMNS, *(astuple(fix) for fix in fixes)])


def read_csv(text: str) -> list[LabelFix]:
    """The rows of a label-fix CSV (as :func:`to_csv` writes it); refuses other headers."""
    rows = read_csv_text(text, "the label-fix CSV")
    if not rows or tuple(rows[0]) != COLUMNS:
        raise MushcamError(f"not a label-fix CSV: the header must be {','.join(COLUMNS)}")
    fixes = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(COLUMNS):
            raise MushcamError(f"line {number} has {len(row)} cells; expected {len(COLUMNS)}")
        fixes.append(LabelFix(*row))
    return fixes
