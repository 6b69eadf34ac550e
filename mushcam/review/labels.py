"""Labels to fix: errors tagged "label doubtful", as a CSV a user can apply to their dataset.

Columns: ``path`` (relative to the data folder, as evaluated), ``current_label`` (the class
folder it is in), ``suggested_label`` (the reviewer's, may be empty), ``note``, ``reviewer``.
One row per image and reviewer (the same photo reviewed under several models counts once).
Cells that a spreadsheet would run as a formula (starting ``= + - @``) are written with a
leading ``'`` and read back without it, so :func:`read_csv` returns what was written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import astuple, dataclass

from mushcam.exceptions import MushcamError
from mushcam.review.causes import LABEL_DOUBTFUL
from mushcam.review.store import Review

COLUMNS: tuple[str, ...] = ("path", "current_label", "suggested_label", "note", "reviewer")
_FORMULA = ("=", "+", "-", "@")


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


def _guard(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA) or cell.startswith("'") else cell


def _unguard(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def to_csv(fixes: Iterable[LabelFix]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for fix in fixes:
        writer.writerow([_guard(str(v)) for v in astuple(fix)])
    return buffer.getvalue()


def read_csv(text: str) -> list[LabelFix]:
    """The rows of a label-fix CSV (as :func:`to_csv` writes it); refuses other headers."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != COLUMNS:
        raise MushcamError(f"not a label-fix CSV: the header must be {','.join(COLUMNS)}")
    fixes = []
    for number, row in enumerate(reader, 2):
        if len(row) != len(COLUMNS):
            raise MushcamError(f"line {number} has {len(row)} cells; expected {len(COLUMNS)}")
        fixes.append(LabelFix(*(_unguard(cell) for cell in row)))
    return fixes
