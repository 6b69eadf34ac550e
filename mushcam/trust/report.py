"""The trust tables: per model x method, means with bootstrap 95% intervals.

Interval: the percentile bootstrap of the mean over images (2,000 resamples of the images
with replacement, seeded, so the same store prints the same table). Undefined values
(NaN) are left out and the count says how many images remain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mushcam.models import DISPLAY_NAMES
from mushcam.trust.sanity import FLAG_THRESHOLD
from mushcam.trust.store import FaithfulnessRun, SanityRun, TrustContents

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over images with its bootstrap interval; ``n`` defined values."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, scale: float = 1.0, digits: int = 3) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        return f"{self.mean * scale:.{digits}f} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def bootstrap_mean(values: Sequence[float] | np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                   seed: int = 0) -> Estimate:
    """Mean and percentile-bootstrap interval of the defined values (resampled in chunks: bounded memory)."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // data.size)
    for first in range(0, resamples, chunk):
        count = min(chunk, resamples - first)
        means[first:first + count] = data[rng.integers(0, data.size, size=(count, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
    return Estimate(float(data.mean()), low, high, int(data.size))


def model_label(name: str) -> str:
    return DISPLAY_NAMES.get(name, name)


@dataclass(frozen=True)
class FaithfulnessRow:
    """What the table shows for one run."""

    run: FaithfulnessRun
    deletion: Estimate
    deletion_random: Estimate
    deletion_inverted: Estimate
    insertion: Estimate
    insertion_random: Estimate
    insertion_inverted: Estimate
    average_drop: Estimate
    increase: Estimate
    road: Estimate
    deletion_gain: Estimate  # paired, per image: random map's deletion AUC - the map's (> 0: better than noise)
    insertion_gain: Estimate  # the map's insertion AUC - the random map's


def faithfulness_rows(runs: Sequence[FaithfulnessRun]) -> list[FaithfulnessRow]:
    rows = []
    for run in runs:
        v = run.values
        rows.append(FaithfulnessRow(
            run, bootstrap_mean(v["deletion_auc"]), bootstrap_mean(v["deletion_auc_random"]),
            bootstrap_mean(v["deletion_auc_inverted"]), bootstrap_mean(v["insertion_auc"]),
            bootstrap_mean(v["insertion_auc_random"]), bootstrap_mean(v["insertion_auc_inverted"]),
            bootstrap_mean(v["average_drop"]), bootstrap_mean(v["increase"]), bootstrap_mean(v["road"]),
            bootstrap_mean(v["deletion_auc_random"] - v["deletion_auc"]),
            bootstrap_mean(v["insertion_auc"] - v["insertion_auc_random"]),
        ))
    return rows


def least_faithful(run: FaithfulnessRun, n: int = 6) -> list[tuple[str, float, float]]:
    """The images whose map is least faithful: smallest insertion AUC - deletion AUC (path, deletion, insertion)."""
    gap = run.values["insertion_auc"] - run.values["deletion_auc"]
    order = np.argsort(np.where(np.isfinite(gap), gap, np.inf), kind="stable")[:n]
    return [(run.image_paths[i], float(run.values["deletion_auc"][i]), float(run.values["insertion_auc"][i]))
            for i in order]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_faithfulness(rows: Sequence[FaithfulnessRow], markdown: bool = False) -> str:
    header = ["model", "method", "baseline", "images", "deletion AUC ↓ [95% CI]", "random", "inverted",
              "gain over random ↑", "insertion AUC ↑ [95% CI]", "random", "inverted", "gain over random ↑",
              "Average Drop % ↓", "Increase % ↑", "ROAD ↑"]
    table = [[
        model_label(r.run.key.model), r.run.key.method, str(r.run.settings.get("baseline", "?")), str(r.run.n_images),
        r.deletion.format(), f"{r.deletion_random.mean:.3f}", f"{r.deletion_inverted.mean:.3f}",
        r.deletion_gain.format(),
        r.insertion.format(), f"{r.insertion_random.mean:.3f}", f"{r.insertion_inverted.mean:.3f}",
        r.insertion_gain.format(),
        r.average_drop.format(100, 1), r.increase.format(100, 1), r.road.format(),
    ] for r in rows]
    return _table(header, table, markdown)


def format_sanity(runs: Sequence[SanityRun], markdown: bool = False) -> str:
    header = ["model", "method", "images", "blocks", "Spearman, head random", "Spearman, all random",
              "SSIM, all random", "cascade mean Spearman", "verdict"]
    table = []
    for run in runs:
        result = run.result
        rho = result.mean_spearman
        table.append([
            model_label(run.key.model), run.key.method, str(len(run.image_paths)), str(len(run.blocks)),
            f"{rho[0]:.3f}", f"{rho[-1]:.3f}", f"{result.mean_ssim[-1]:.3f}", f"{result.score:.3f}",
            f"FLAGGED (>= {FLAG_THRESHOLD}): maps barely depend on the model" if result.flagged else "passes",
        ])
    return _table(header, table, markdown)


def format_trust_report(contents: TrustContents, markdown: bool = False) -> str:
    """The faithfulness and sanity tables; empty text when the store holds neither."""
    parts = []
    if contents.faithfulness:
        roots = sorted({r.key.data_root for r in contents.faithfulness})
        parts.append(("### " if markdown else "") + "Faithfulness (mean over images, bootstrap 95% interval)")
        parts.append(format_faithfulness(faithfulness_rows(contents.faithfulness), markdown))
        parts.append("data: " + ", ".join(roots) + "; ↓ lower is better, ↑ higher is better; random / inverted: "
                     "the same scores for a random map and for the map turned upside down (floor and ceiling); "
                     "gain over random: the paired per-image difference from the random map "
                     "(an interval above 0: better than noise)")
    if contents.sanity:
        heading = "Sanity check (cascading randomisation, Adebayo et al. 2018)"
        parts.append("\n" + ("### " if markdown else "") + heading)
        parts.append(format_sanity(contents.sanity, markdown))
    return "\n".join(parts)

