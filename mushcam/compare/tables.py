"""The comparison's numbers as tables: per model, per pair of models, per image, as a matrix, and as CSV.

None marks what is unknown (true class, correctness); NaN a measure that is undefined; both
are written as empty CSV fields.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from mushcam.compare.comparison import Comparison
from mushcam.csvfile import csv_text
from mushcam.metrics.agreement import summarise


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
    """CSV text of a list of records (NaN and None as empty fields), by :func:`mushcam.csvfile.csv_text`."""
    if not table:
        return ""
    names = list(table[0])
    return csv_text([names, *([_csv_value(record.get(k, "")) for k in names] for record in table)])


def _csv_value(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


AGREEMENT_MEASURES: dict[str, str] = {"iou": "IoU of the top regions", "spearman": "Spearman rank correlation"}


def agreement_matrix(comparison: Comparison, columns: Sequence[str], measure: str = "iou",
                     row: int | None = None) -> list[list[float]]:
    """The pairwise agreement of ``columns`` as a symmetric k x k matrix (1 on the diagonal).

    ``row``: one photo's values; None: the mean over the photos where the value is defined
    (NaN when it is defined on none). ``measure``: "iou" or "spearman".
    """
    if measure not in AGREEMENT_MEASURES:
        raise ValueError(f"measure must be one of {', '.join(AGREEMENT_MEASURES)}; got {measure!r}")
    rows = comparison.rows if row is None else comparison.rows[row:row + 1]
    values: dict[tuple[str, str], float] = {}
    for index, pair in enumerate(rows[0].agreement if rows else ()):
        value = summarise(getattr(r.agreement[index], measure) for r in rows).mean
        values[(pair.first, pair.second)] = values[(pair.second, pair.first)] = value
    return [[1.0 if a == b else values.get((a, b), math.nan) for b in columns] for a in columns]
