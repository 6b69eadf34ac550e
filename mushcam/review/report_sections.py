"""The report's sections, in order: :data:`SECTIONS`, one function per section.

Each section is ``section(context) -> list[Block]`` over one :class:`ReportContext` (the
findings, the figure maker and the figures made so far), so adding a section is one function
and one line in :data:`SECTIONS`. Figures are made on first use and numbered in order of
appearance; a later section that needs one refers to its number.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mushcam import __version__
from mushcam.evaluate import run_label
from mushcam.manifest import file_safe_name
from mushcam.review.agreement import FEW_SHARED, PairAgreement, consensus_wording, pairwise_kappa
from mushcam.review.causes import Cause, definition_of
from mushcam.review.figures import model_name
from mushcam.review.labels import label_fixes
from mushcam.review.report_blocks import Block, bold, k_of_n, kappa_text, pct
from mushcam.review.report_findings import ErrorCase, Findings
from mushcam.review.store import NearDuplicate, Review, ReviewIndex
from mushcam.store import Predictions, RunRecord, StoreContents

EXAMPLES_PER_CAUSE = 3
FIGURE_METHOD = "Grad-CAM"  # the method of the report's figures
FigureMaker = Callable[[RunRecord, Predictions, int], tuple[bytes | None, str]]


class RenderedSection(Protocol):
    """A part of the report rendered elsewhere for both formats (the patterns section)."""

    markdown: str
    html: str
    figures: dict[str, bytes]


class ReportContext(Findings):
    """The findings plus what the sections share while they are written: figures made and their numbers."""

    def __init__(self, contents: StoreContents, reviews: ReviewIndex, causes: Sequence[Cause],
                 figures: FigureMaker | None = None, duplicates: dict[str, tuple[NearDuplicate, ...]] | None = None,
                 rule: str = "any", title: str = "Error analysis",
                 data_root: str | os.PathLike[str] | None = None, patterns: RenderedSection | None = None) -> None:
        super().__init__(contents, reviews, causes, rule)
        self.patterns = patterns
        self.maker, self.duplicates = figures, duplicates or {}
        self.title, self.data_root = title, data_root
        self.figures: dict[str, bytes] = {}  # figure name -> PNG, in order of first appearance
        self.numbers: dict[str, int] = {}

    def figure(self, error: ErrorCase) -> list[Block]:
        """The error's figure (made on first use, then referred to), or why there is none."""
        if self.maker is None:
            return []
        name = figure_name(error)
        if name in self.numbers:
            return [Block("p", f"(see Figure {self.numbers[name]} above)")]
        png, why = self.maker(error.run, error.rows, error.index)
        if png is None:
            return [Block("p", f"(no figure: {why})")]
        self.figures[name] = png
        self.numbers[name] = len(self.numbers) + 1
        return [Block("figure", f"Figure {self.numbers[name]}. {self.label_of(error.run)}, {error.path}: original, "
                                f"{FIGURE_METHOD} for the predicted and the true class; one colour bar (right) for "
                                "both maps, which share one scale", figure=name)]

    def notes(self, error: ErrorCase) -> Block:
        found = self.reviews.of(error.key)
        if not found:
            return Block("p", "Not reviewed yet.")
        return Block("notes", rows=tuple((review_line(r, self.labels),) for r in found))

    def near_duplicates(self, error: ErrorCase) -> list[Block]:
        twins = [m for m in self.duplicates.get(error.key.image_sha256, ()) if m.other_split != m.split]
        if not twins:
            return []
        return [Block("p", "Near-duplicate of " + ", ".join(f"{m.other_path} ({m.distance} bits)" for m in twins[:3]))]


def figure_name(error: ErrorCase) -> str:
    """The figure's file stem, safe as a file name whatever the model name or stored hash holds."""
    return file_safe_name(f"{model_name(error.run)}_{error.key.image_sha256[:16]}")


def review_line(review: Review, labels: dict[str, str]) -> str:
    """'**Ana**: look-alike genus (suggested label: Boletus) — the note' (the note as typed; escaped on output)."""
    causes = ", ".join(labels.get(c, c) for c in review.causes) or "no cause"
    text = f"{bold(review.reviewer)}: {causes}"
    if review.suggested_label:
        text += f" (suggested label: {review.suggested_label})"
    if review.note:
        text += f" — {review.note}"
    return text


# ------------------------------------------------------------------------------ the sections


def introduction(ctx: ReportContext) -> list[Block]:
    n_runs, n_reviews = len(ctx.runs), len(ctx.reviews.reviews)
    reviewers = sorted({r.reviewer for r in ctx.reviews.reviews})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [Block("h1", ctx.title),
            Block("p", f"Written {now} from {n_runs} evaluated model run{'s' if n_runs != 1 else ''} "
                       f"and {n_reviews} review{'s' if n_reviews != 1 else ''} by "
                       f"{', '.join(reviewers) if reviewers else 'nobody yet'}. Consensus rule "
                       f"'{ctx.rule}': {consensus_wording(ctx.rule)}. Shares are over the model's "
                       "reviewed errors and can add up to more than 100 % (an error may have several "
                       "causes). Counts read \"k of n (p)\": n is the population the column names, "
                       "the same n wherever the same population is counted.")]


def provenance(ctx: ReportContext) -> list[Block]:
    return provenance_blocks(ctx.runs, ctx.data_root, ctx.rule)


def models(ctx: ReportContext) -> list[Block]:
    return [Block("h2", "Models"),
            Block("table", header=("model", "images", "accuracy", "errors", "poisonous → edible",
                                   "edible → poisonous", "reviewed errors"),
                  rows=tuple((s.label, str(s.n_images), pct(s.accuracy), str(s.errors),
                              f"{s.dangerous} of {s.poisonous_images}", str(s.benign),
                              f"{s.reviewed} of {s.errors}") for s in ctx.summaries))]


def confusion(ctx: ReportContext) -> list[Block]:
    return confusion_blocks(ctx.runs, ctx.contents, ctx.label_of)


def reviewers(ctx: ReportContext) -> list[Block]:
    return reviewer_blocks(ctx)


def causes_per_model(ctx: ReportContext) -> list[Block]:
    blocks = [Block("h2", "Causes per model")]
    if not ctx.used:
        return [*blocks, Block("p", "No error has been tagged with a cause yet.")]
    rows = []
    for k in ctx.used:
        cells = [ctx.labels[k]]
        for s in ctx.summaries:
            share = s.cause_counts[k] / s.reviewed if s.reviewed else math.nan
            cells.append(f"{s.cause_counts[k]} ({pct(share)})")
        rows.append(tuple(cells))
    header = ("cause", *(f"{s.label} (of {s.reviewed} reviewed)" for s in ctx.summaries))
    return [*blocks, Block("table", header=header, rows=tuple(rows))]


def causes_per_pair(ctx: ReportContext) -> list[Block]:
    if not ctx.used:
        return []
    rows = []
    for run in ctx.runs:
        groups = ctx.reviewed_pairs(run)
        for (t, p), errs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            counts = [ctx.count(errs, k) for k in ctx.used]
            rows.append((ctx.label_of(run), f"{t} → {p}", str(len(errs)),
                         *(k_of_n(n, len(errs)) if n else "" for n in counts)))
    return [Block("h2", "Causes per class pair"),
            Block("table", header=("model", "true → predicted", "reviewed", *(ctx.labels[k] for k in ctx.used)),
                  rows=tuple(rows))]


def agreement(ctx: ReportContext) -> list[Block]:
    blocks = [Block("h2", "Agreement between reviewers")]
    pairs = pairwise_kappa(ctx.reviews.reviews, ctx.keys)
    if not pairs:
        return [*blocks, Block("p", "No error was reviewed by two reviewers yet.")]
    shown = [k for k in ctx.keys if any(k in r.causes for r in ctx.reviews.reviews)] or ctx.keys
    return [*blocks, *agreement_blocks(pairs, shown, ctx.labels)]


def dangerous(ctx: ReportContext) -> list[Block]:
    blocks = [Block("h2", "Poisonous predicted as edible")]
    found = ctx.dangerous()
    for error in found:
        blocks.append(Block("h3", f"{ctx.label_of(error.run)} · {error.path} · {error.describe()}"))
        blocks += [*ctx.figure(error), *ctx.near_duplicates(error), ctx.notes(error)]
    if not found:
        blocks.append(Block("p", "None: no model called a poisonous genus edible."))
    return blocks


def examples(ctx: ReportContext) -> list[Block]:
    """Up to :data:`EXAMPLES_PER_CAUSE` errors per cause, each photo once."""
    blocks = [Block("h2", "Examples per cause")]
    for k in ctx.used:
        found = ctx.examples_of(k)
        total = len(found)
        blocks.append(Block("h3", f"{ctx.labels[k]} ({total} error{'s' if total != 1 else ''}; "
                                  f"{min(total, EXAMPLES_PER_CAUSE)} shown)"))
        for error in found[:EXAMPLES_PER_CAUSE]:
            blocks.append(Block("p", f"{bold(ctx.label_of(error.run))} · {error.path} · {error.describe()}"))
            blocks += [*ctx.figure(error), ctx.notes(error)]
    return blocks


def labels_to_check(ctx: ReportContext) -> list[Block]:
    fixes = label_fixes(ctx.reviews.reviews)
    if not fixes:
        return [Block("h2", "Labels to check"), Block("p", "No error is tagged label doubtful.")]
    return [Block("h2", "Labels to check"),
            Block("table", header=("path", "current label", "suggested label", "note", "reviewer"),
                  rows=tuple((f.path, f.current_label, f.suggested_label, f.note, f.reviewer) for f in fixes))]


def near_duplicates_of_training(ctx: ReportContext) -> list[Block]:
    if not ctx.duplicates:
        return []
    rows = []
    for run in ctx.runs:
        errs = ctx.errors[run.run_id]
        n = sum(1 for e in errs if any(m.other_split == "train" and m.split != "train"
                                       for m in ctx.duplicates.get(e.key.image_sha256, ())))
        rows.append((ctx.label_of(run), str(len(errs)), str(n)))
    header = ("model", "errors", "errors on a photo with a near-duplicate in train")
    return [Block("h2", "Near-duplicates of training photos"), Block("table", header=header, rows=tuple(rows))]


def patterns(ctx: ReportContext) -> list[Block]:
    """What the models rely on across the test set (``python -m mushcam patterns``), when the
    command gave it: the part is rendered by :mod:`mushcam.patterns.report`, its figures join the report's."""
    if ctx.patterns is None:
        return []
    for name, png in ctx.patterns.figures.items():
        ctx.figures.setdefault(name, png)
    return [Block("raw", ctx.patterns.markdown, html=ctx.patterns.html)]


def codebook(ctx: ReportContext) -> list[Block]:
    return codebook_blocks(ctx.causes)


Section = Callable[[ReportContext], list[Block]]
# The report, in order. A new section: a function above and one line here.
SECTIONS: tuple[Section, ...] = (
    introduction,
    provenance,
    models,
    confusion,
    reviewers,
    causes_per_model,
    causes_per_pair,
    agreement,
    dangerous,
    examples,
    labels_to_check,
    near_duplicates_of_training,
    patterns,
    codebook,
)


# ------------------------------------------------------------------------------ blocks used above


def provenance_blocks(runs: Sequence[RunRecord], data_root: str | os.PathLike[str] | None, rule: str) -> list[Block]:
    """Where every number and figure comes from: one row per evaluated run."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    folder = str(Path(data_root).expanduser().resolve()) if data_root is not None else "none given (no figures)"
    rows = []
    for run in runs:
        spec = run.manifest.get("input", {}) if isinstance(run.manifest, dict) else {}
        size = spec.get("size", "?") if isinstance(spec, dict) else "?"
        resize = spec.get("resize", "") if isinstance(spec, dict) else ""
        rows.append((run_label(run, runs), run.checkpoint_sha256, run.layer, f"{size} px {resize}".strip(),
                     FIGURE_METHOD, run.data_root, run.finished_at, str(run.versions.get("mushcam", "?"))))
    return [Block("h2", "Provenance"),
            Block("p", f"Report written {now} by MushCAM {__version__}; consensus rule '{rule}'; figures' images "
                       f"read from {folder}."),
            Block("table", header=("model", "checkpoint SHA-256", "layer", "input size", "method",
                                   "data folder (evaluated)", "evaluated", "MushCAM at evaluation"),
                  rows=tuple(rows))]


def confusion_blocks(runs: Sequence[RunRecord], contents: StoreContents,
                     label_of: Callable[[RunRecord], str]) -> list[Block]:
    """Each run's confusion matrix as a table: rows the true class, columns the predicted one."""
    blocks = [Block("h2", "Confusion matrices"),
              Block("p", "Rows: true class; columns: predicted class; each cell counts images; n = the run's images.")]
    for run in runs:
        rows = contents.predictions[run.run_id]
        names = run.class_names
        matrix = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(matrix, (rows.true_idx, rows.pred_idx), 1)
        blocks.append(Block("h3", f"{label_of(run)} (n = {len(rows)})"))
        blocks.append(Block("table", header=("true \\ predicted", *names, "images"),
                            rows=tuple((names[t], *(str(int(c)) for c in matrix[t]), str(int(matrix[t].sum())))
                                       for t in range(len(names)))))
    return blocks


def reviewer_blocks(findings: Findings) -> list[Block]:
    """Per reviewer: errors reviewed (of all errors of all runs) and how often each cause was tagged."""
    names = sorted({r.reviewer for r in findings.reviews.reviews})
    if not names:
        return []
    all_keys = {e.key for errs in findings.errors.values() for e in errs}
    tagged = [k for k in findings.keys if any(k in r.causes for r in findings.reviews.reviews)]
    rows = []
    for name in names:
        mine = [r for r in findings.reviews.reviews if r.reviewer == name and r.key in all_keys]
        rows.append((name, k_of_n(len(mine), len(all_keys)),
                     *(k_of_n(sum(1 for r in mine if k in r.causes), len(mine)) for k in tagged)))
    return [Block("h2", "Reviewers"),
            Block("p", f"Errors reviewed are of the {len(all_keys)} errors of all runs; each cause's count is of the "
                       "errors that reviewer reviewed (their own tags, before any consensus)."),
            Block("table", header=("reviewer", "errors reviewed", *(findings.labels[k] for k in tagged)),
                  rows=tuple(rows))]


def agreement_cell(pair: PairAgreement, key: str) -> str:
    """'κ 0.12 [−0.30, 0.60]; agree 6 of 10 (60.0%)'."""
    low, high = pair.interval.get(key, (math.nan, math.nan))
    interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    agree = round(pair.agreement[key] * pair.n_items)
    return f"κ {kappa_text(pair.kappa[key])}{interval}; agree {k_of_n(agree, pair.n_items)}"


def agreement_blocks(pairs: Sequence[PairAgreement], shown: Sequence[str], labels: dict[str, str]) -> list[Block]:
    """Kappa per cause with n, its bootstrap interval and the raw agreement; a warning under FEW_SHARED."""
    blocks = [Block("p", "Cohen's kappa per cause on the n errors both reviewed: 1 = full agreement, 0 = chance "
                         "level; n/a = both gave the same answer for every error. In brackets: its 95 % interval "
                         "(percentile bootstrap over the shared errors, 2,000 resamples, seed 0); then the raw "
                         "agreement (errors where both said the same).")]
    blocks.append(Block("table", header=("reviewers", "errors in common (n)", *(labels[k] for k in shown)),
                        rows=tuple((f"{p.reviewer_a} / {p.reviewer_b}", str(p.n_items),
                                    *(agreement_cell(p, k) for k in shown)) for p in pairs)))
    few = [p for p in pairs if p.few]
    if few:
        blocks.append(Block("p", f"{bold('Warning')}: fewer than {FEW_SHARED} shared errors for "
                                 + ", ".join(f"{p.reviewer_a} / {p.reviewer_b} (n = {p.n_items})" for p in few)
                                 + ": kappa moves a lot with one error; read it with its interval, not alone."))
    return blocks


def codebook_blocks(causes: Sequence[Cause]) -> list[Block]:
    """What each cause means (the reviewers' shared definitions)."""
    return [Block("h2", "Cause codebook"),
            Block("table", header=("cause", "key", "definition"),
                  rows=tuple((c.label, c.key, definition_of(c)) for c in causes))]
