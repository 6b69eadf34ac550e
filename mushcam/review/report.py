"""The error-analysis report, written from the store's runs and reviews: Markdown and self-contained HTML.

Sections: provenance (per run: checkpoint SHA-256, layer, input size, method, data folder,
date, MushCAM version); per model, accuracy and the dangerous counts; each run's confusion
matrix; per-reviewer counts; the causes with counts and shares per model and per class
pair; reviewer agreement (Cohen's kappa per cause with n, raw agreement and a seeded
bootstrap 95 % interval); every poisonous->edible error with its figure and notes; two or
three examples per cause; labels to fix; near-duplicates of training photos among the
errors; the cause codebook.

Counting: an error *has* a cause under the consensus rule the user chose
(:func:`mushcam.review.agreement.has_cause`: ``any`` reviewer, default, a ``majority``, or
``all``); the report states the rule. Counts are written "k of n (p)", n being the
population named in the column. A cause's share is over the model's reviewed errors; an
error can have several causes, so shares add up to more than 100 %.

The report is built once as a list of blocks (:class:`Block`) and rendered twice; each
figure is made once (:class:`mushcam.review.figures.FigureSource`, through the CAM cache),
numbered ("Figure 1.") and shown once: a later section that needs it refers to its
number. The Markdown links ``figures/<name>.png`` (lossless files); the HTML embeds each
figure once as a JPEG data URI (quality :data:`HTML_JPEG_QUALITY`), a tenth of the PNG's size.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mushcam import __version__
from mushcam.evaluate import run_label, run_metrics
from mushcam.exceptions import MushcamError
from mushcam.metrics import DANGEROUS, error_kinds
from mushcam.review.agreement import (
    DEFAULT_CONSENSUS,
    FEW_SHARED,
    PairAgreement,
    check_consensus,
    consensus_wording,
    has_cause,
    pairwise_kappa,
)
from mushcam.review.causes import Cause, definition_of, labels_of
from mushcam.review.figures import model_name
from mushcam.review.labels import label_fixes
from mushcam.review.store import NearDuplicate, Review, ReviewIndex, ReviewKey
from mushcam.store import Predictions, RunRecord, StoreContents

EXAMPLES_PER_CAUSE = 3
HTML_JPEG_QUALITY = 85
FIGURE_METHOD = "Grad-CAM"  # the method of the report's figures
FigureMaker = Callable[[RunRecord, Predictions, int], tuple[bytes | None, str]]


@dataclass(frozen=True)
class Block:
    """One piece of the report: ``kind`` is h2/h3/p/table/figure/notes."""

    kind: str
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    figure: str = ""  # figure name (file stem) for kind 'figure'


@dataclass(frozen=True)
class ModelSummary:
    """One run's numbers as the report states them."""

    label: str
    n_images: int
    accuracy: float
    errors: int
    dangerous: int
    poisonous_images: int
    benign: int
    reviewed: int
    cause_counts: dict[str, int]


@dataclass
class Report:
    blocks: list[Block] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    summaries: list[ModelSummary] = field(default_factory=list)

    def markdown(self, figure_dir: str = "figures") -> str:
        return render_markdown(self.blocks, figure_dir)

    def html(self) -> str:
        return render_html(self.blocks, self.figures)


@dataclass(frozen=True)
class _Error:
    run: RunRecord
    rows: Predictions
    index: int
    key: ReviewKey

    @property
    def path(self) -> str:
        return self.rows.image_paths[self.index]

    def describe(self) -> str:
        names = self.run.class_names
        t, p = int(self.rows.true_idx[self.index]), int(self.rows.pred_idx[self.index])
        return f"true {names[t]} → predicted {names[p]} ({float(self.rows.confidence[self.index]):.1%})"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _kappa(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def k_of_n(k: int, n: int) -> str:
    """The report's one way of writing a count: ``'3 of 6 (50.0%)'`` (``'0 of 0'`` with no population)."""
    return f"{k} of {n} ({_pct(k / n)})" if n else f"{k} of 0"


def _review_line(review: Review, labels: dict[str, str]) -> str:
    causes = ", ".join(labels.get(c, c) for c in review.causes) or "no cause"
    text = f"**{review.reviewer}**: {causes}"
    if review.suggested_label:
        text += f" (suggested label: {review.suggested_label})"
    if review.note:
        text += f" — {review.note}"
    return text


def build_report(contents: StoreContents, reviews: ReviewIndex, causes: Sequence[Cause],
                 figures: FigureMaker | None = None, title: str = "Error analysis",
                 duplicates: dict[str, tuple[NearDuplicate, ...]] | None = None,
                 consensus: str = DEFAULT_CONSENSUS, data_root: str | os.PathLike[str] | None = None) -> Report:
    """The whole report as blocks plus the figures it uses (made once each).

    ``consensus``: when an error has a cause (any / majority / all of its reviewers);
    ``data_root``: the image folder the figures were read from (stated in the provenance).
    """
    builder = _Builder(contents, reviews, causes, figures, duplicates or {}, check_consensus(consensus))
    builder.introduction(title)
    builder.blocks.extend(provenance_blocks(builder.runs, data_root, builder.rule))
    builder.models()
    builder.blocks.extend(confusion_blocks(builder.runs, contents, builder.label_of))
    builder.blocks.extend(reviewer_blocks(builder))
    builder.causes()
    builder.agreement()
    builder.dangerous()
    builder.examples()
    builder.labels_and_duplicates()
    builder.blocks.extend(codebook_blocks(causes))
    return builder.report


class _Findings:
    """What the report states, before any of it is written: each run's errors (with their
    review keys), error kinds and summary, and the causes in use."""

    def __init__(self, contents: StoreContents, reviews: ReviewIndex, causes: Sequence[Cause],
                 rule: str = DEFAULT_CONSENSUS) -> None:
        self.contents, self.reviews, self.rule = contents, reviews, rule
        self.runs = contents.runs
        self.labels = labels_of(causes)
        self.keys = [c.key for c in causes]
        self.errors: dict[int, list[_Error]] = {}
        self.kinds: dict[int, np.ndarray] = {}
        for run in self.runs:
            rows = contents.predictions[run.run_id]
            self.kinds[run.run_id] = error_kinds(rows.true_idx, rows.pred_idx, run.toxicities)
            self.errors[run.run_id] = [
                _Error(run, rows, i, ReviewKey(rows.image_sha256[i], model_name(run), run.checkpoint_sha256))
                for i in np.flatnonzero(rows.true_idx != rows.pred_idx).tolist()
            ]
        self.summaries = [self.summary(run) for run in self.runs]
        self.used = [k for k in self.keys if any(s.cause_counts[k] for s in self.summaries)]

    def summary(self, run: RunRecord) -> ModelSummary:
        m = run_metrics(self.contents, run.run_id)
        errs = self.errors[run.run_id]
        return ModelSummary(
            run_label(run, self.runs), m.n_images, m.accuracy, len(errs),
            int((self.kinds[run.run_id] == DANGEROUS).sum()), m.poisonous_images, m.benign_count,
            sum(1 for e in errs if self.reviews.of(e.key)), {k: self.count(errs, k) for k in self.keys})

    def label_of(self, run: RunRecord) -> str:
        return run_label(run, self.runs)

    def count(self, errs: Sequence[_Error], cause: str) -> int:
        """Errors that have ``cause`` under the consensus rule."""
        return sum(1 for e in errs if has_cause(self.reviews.of(e.key), cause, self.rule))

    def reviewed_pairs(self, run: RunRecord) -> dict[tuple[str, str], list[_Error]]:
        """The run's reviewed errors grouped by (true class, predicted class)."""
        names = run.class_names
        groups: dict[tuple[str, str], list[_Error]] = {}
        for e in self.errors[run.run_id]:
            if self.reviews.of(e.key):
                pair = (names[int(e.rows.true_idx[e.index])], names[int(e.rows.pred_idx[e.index])])
                groups.setdefault(pair, []).append(e)
        return groups

    def examples_of(self, cause: str) -> list[_Error]:
        """Every error that has ``cause`` under the consensus rule, over all runs, each photo once."""
        examples, seen = [], set()
        for run in self.runs:
            for error in self.errors[run.run_id]:
                if error.key.image_sha256 not in seen and has_cause(self.reviews.of(error.key), cause, self.rule):
                    examples.append(error)
                    seen.add(error.key.image_sha256)
        return examples


class _Builder(_Findings):
    """Adds the report's sections one by one, from the :class:`_Findings`."""

    def __init__(self, contents: StoreContents, reviews: ReviewIndex, causes: Sequence[Cause],
                 figures: FigureMaker | None, duplicates: dict[str, tuple[NearDuplicate, ...]],
                 rule: str = DEFAULT_CONSENSUS) -> None:
        super().__init__(contents, reviews, causes, rule)
        self.report = Report(summaries=self.summaries)
        self.blocks = self.report.blocks
        self.figures, self.duplicates = figures, duplicates
        self.numbers: dict[str, int] = {}  # figure name -> its number, in order of first appearance

    def introduction(self, title: str) -> None:
        n_runs, n_reviews = len(self.runs), len(self.reviews.reviews)
        reviewers = sorted({r.reviewer for r in self.reviews.reviews})
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.blocks.append(Block("h1", title))
        self.blocks.append(Block("p", f"Written {now} from {n_runs} evaluated model run{'s' if n_runs != 1 else ''} "
                                      f"and {n_reviews} review{'s' if n_reviews != 1 else ''} by "
                                      f"{', '.join(reviewers) if reviewers else 'nobody yet'}. Consensus rule "
                                      f"'{self.rule}': {consensus_wording(self.rule)}. Shares are over the model's "
                                      "reviewed errors and can add up to more than 100 % (an error may have several "
                                      "causes). Counts read \"k of n (p)\": n is the population the column names, "
                                      "the same n wherever the same population is counted."))

    def models(self) -> None:
        self.blocks.append(Block("h2", "Models"))
        self.blocks.append(Block("table", header=("model", "images", "accuracy", "errors", "poisonous → edible",
                                                  "edible → poisonous", "reviewed errors"),
                                 rows=tuple((s.label, str(s.n_images), _pct(s.accuracy), str(s.errors),
                                             f"{s.dangerous} of {s.poisonous_images}", str(s.benign),
                                             f"{s.reviewed} of {s.errors}") for s in self.report.summaries)))

    def causes(self) -> None:
        self.blocks.append(Block("h2", "Causes per model"))
        if not self.used:
            self.blocks.append(Block("p", "No error has been tagged with a cause yet."))
            return
        rows = []
        for k in self.used:
            cells = [self.labels[k]]
            for s in self.report.summaries:
                share = s.cause_counts[k] / s.reviewed if s.reviewed else math.nan
                cells.append(f"{s.cause_counts[k]} ({_pct(share)})")
            rows.append(tuple(cells))
        header = ("cause", *(f"{s.label} (of {s.reviewed} reviewed)" for s in self.report.summaries))
        self.blocks.append(Block("table", header=header, rows=tuple(rows)))
        self.blocks.append(Block("h2", "Causes per class pair"))
        pair_rows = []
        for run in self.runs:
            groups = self.reviewed_pairs(run)
            for (t, p), errs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                counts = [self.count(errs, k) for k in self.used]
                pair_rows.append((run_label(run, self.runs), f"{t} → {p}", str(len(errs)),
                                  *(k_of_n(n, len(errs)) if n else "" for n in counts)))
        self.blocks.append(Block("table", header=("model", "true → predicted", "reviewed",
                                                  *(self.labels[k] for k in self.used)), rows=tuple(pair_rows)))

    def agreement(self) -> None:
        self.blocks.append(Block("h2", "Agreement between reviewers"))
        pairs = pairwise_kappa(self.reviews.reviews, self.keys)
        if not pairs:
            self.blocks.append(Block("p", "No error was reviewed by two reviewers yet."))
            return
        shown = [k for k in self.keys if any(k in r.causes for r in self.reviews.reviews)] or self.keys
        self.blocks.extend(agreement_blocks(pairs, shown, self.labels))

    def figure(self, error: _Error) -> list[Block]:
        """The error's figure (made on first use, then shared), or why there is none."""
        if self.figures is None:
            return []
        name = f"{model_name(error.run)}_{error.key.image_sha256[:16]}"
        if name in self.numbers:
            return [Block("p", f"(see Figure {self.numbers[name]} above)")]
        png, why = self.figures(error.run, error.rows, error.index)
        if png is None:
            return [Block("p", f"(no figure: {why})")]
        self.report.figures[name] = png
        self.numbers[name] = len(self.numbers) + 1
        return [Block("figure", f"Figure {self.numbers[name]}. {self.label_of(error.run)}, {error.path}: original, "
                                f"{FIGURE_METHOD} for the predicted and the true class; one colour bar (right) for "
                                "both maps, which share one scale", figure=name)]

    def notes(self, error: _Error) -> Block:
        found = self.reviews.of(error.key)
        if not found:
            return Block("p", "Not reviewed yet.")
        return Block("notes", rows=tuple((_review_line(r, self.labels),) for r in found))

    def near_duplicates(self, error: _Error) -> list[Block]:
        twins = [m for m in self.duplicates.get(error.key.image_sha256, ()) if m.other_split != m.split]
        if not twins:
            return []
        return [Block("p", "Near-duplicate of " + ", ".join(f"{m.other_path} ({m.distance} bits)" for m in twins[:3]))]

    def dangerous(self) -> None:
        self.blocks.append(Block("h2", "Poisonous predicted as edible"))
        found = False
        for run in self.runs:
            for error in self.errors[run.run_id]:
                if self.kinds[run.run_id][error.index] != DANGEROUS:
                    continue
                found = True
                self.blocks.append(Block("h3", f"{run_label(run, self.runs)} · {error.path} · {error.describe()}"))
                self.blocks.extend(self.figure(error))
                self.blocks.extend(self.near_duplicates(error))
                self.blocks.append(self.notes(error))
        if not found:
            self.blocks.append(Block("p", "None: no model called a poisonous genus edible."))

    def examples(self) -> None:
        """Up to :data:`EXAMPLES_PER_CAUSE` errors per cause, each photo once."""
        self.blocks.append(Block("h2", "Examples per cause"))
        for k in self.used:
            examples = self.examples_of(k)
            total = len(examples)
            self.blocks.append(Block("h3", f"{self.labels[k]} ({total} error{'s' if total != 1 else ''}; "
                                           f"{min(total, EXAMPLES_PER_CAUSE)} shown)"))
            for error in examples[:EXAMPLES_PER_CAUSE]:
                self.blocks.append(Block("p", f"**{run_label(error.run, self.runs)}** · {error.path} · "
                                              f"{error.describe()}"))
                self.blocks.extend(self.figure(error))
                self.blocks.append(self.notes(error))

    def labels_and_duplicates(self) -> None:
        fixes = label_fixes(self.reviews.reviews)
        self.blocks.append(Block("h2", "Labels to check"))
        if fixes:
            self.blocks.append(Block("table", header=("path", "current label", "suggested label", "note", "reviewer"),
                                     rows=tuple((f.path, f.current_label, f.suggested_label, f.note, f.reviewer)
                                                for f in fixes)))
        else:
            self.blocks.append(Block("p", "No error is tagged label doubtful."))
        if not self.duplicates:
            return
        rows = []
        for run in self.runs:
            errs = self.errors[run.run_id]
            n = sum(1 for e in errs if any(m.other_split == "train" and m.split != "train"
                                           for m in self.duplicates.get(e.key.image_sha256, ())))
            rows.append((run_label(run, self.runs), str(len(errs)), str(n)))
        self.blocks.append(Block("h2", "Near-duplicates of training photos"))
        header = ("model", "errors", "errors on a photo with a near-duplicate in train")
        self.blocks.append(Block("table", header=header, rows=tuple(rows)))


# ------------------------------------------------------------------------------ sections


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


def reviewer_blocks(findings: _Findings) -> list[Block]:
    """Per reviewer: errors reviewed (of all errors of all runs) and how often each cause was tagged."""
    reviewers = sorted({r.reviewer for r in findings.reviews.reviews})
    if not reviewers:
        return []
    all_keys = {e.key for errs in findings.errors.values() for e in errs}
    tagged = [k for k in findings.keys if any(k in r.causes for r in findings.reviews.reviews)]
    rows = []
    for name in reviewers:
        mine = [r for r in findings.reviews.reviews if r.reviewer == name and r.key in all_keys]
        rows.append((name, k_of_n(len(mine), len(all_keys)),
                     *(k_of_n(sum(1 for r in mine if k in r.causes), len(mine)) for k in tagged)))
    return [Block("h2", "Reviewers"),
            Block("p", f"Errors reviewed are of the {len(all_keys)} errors of all runs; each cause's count is of the "
                       "errors that reviewer reviewed (their own tags, before any consensus)."),
            Block("table", header=("reviewer", "errors reviewed", *(findings.labels[k] for k in tagged)),
                  rows=tuple(rows))]


def _agreement_cell(pair: PairAgreement, key: str) -> str:
    """'κ 0.12 [−0.30, 0.60]; agree 6 of 10 (60.0%)'."""
    low, high = pair.interval.get(key, (math.nan, math.nan))
    interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    agree = round(pair.agreement[key] * pair.n_items)
    return f"κ {_kappa(pair.kappa[key])}{interval}; agree {k_of_n(agree, pair.n_items)}"


def agreement_blocks(pairs: Sequence[PairAgreement], shown: Sequence[str], labels: dict[str, str]) -> list[Block]:
    """Kappa per cause with n, its bootstrap interval and the raw agreement; a warning under FEW_SHARED."""
    blocks = [Block("p", "Cohen's kappa per cause on the n errors both reviewed: 1 = full agreement, 0 = chance "
                         "level; n/a = both gave the same answer for every error. In brackets: its 95 % interval "
                         "(percentile bootstrap over the shared errors, 2,000 resamples, seed 0); then the raw "
                         "agreement (errors where both said the same).")]
    blocks.append(Block("table", header=("reviewers", "errors in common (n)", *(labels[k] for k in shown)),
                        rows=tuple((f"{p.reviewer_a} / {p.reviewer_b}", str(p.n_items),
                                    *(_agreement_cell(p, k) for k in shown)) for p in pairs)))
    few = [p for p in pairs if p.few]
    if few:
        blocks.append(Block("p", f"**Warning**: fewer than {FEW_SHARED} shared errors for "
                                 + ", ".join(f"{p.reviewer_a} / {p.reviewer_b} (n = {p.n_items})" for p in few)
                                 + ": kappa moves a lot with one error; read it with its interval, not alone."))
    return blocks


def codebook_blocks(causes: Sequence[Cause]) -> list[Block]:
    """What each cause means (the reviewers' shared definitions)."""
    return [Block("h2", "Cause codebook"),
            Block("table", header=("cause", "key", "definition"),
                  rows=tuple((c.label, c.key, definition_of(c)) for c in causes))]


# ------------------------------------------------------------------------------ rendering


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], figure_dir: str = "figures") -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "h3":
            out.append(f"### {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "notes":
            out.append("\n".join(f"- {row[0]}" for row in b.rows))
        elif b.kind == "table":
            lines = ["| " + " | ".join(_md_cell(h) for h in b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif b.kind == "figure":
            out.append(f"![{_md_cell(b.text)}]({figure_dir}/{b.figure}.png)")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}h3{margin-top:2em}figure{margin:0.5em 0}
figcaption{color:#666;font-size:0.9em}"""


def _inline(text: str) -> str:
    """Escape, then the one bit of Markdown the blocks use: **bold**."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def html_jpeg(png: bytes, quality: int = HTML_JPEG_QUALITY) -> bytes:
    """A figure re-encoded as JPEG for the HTML (about a tenth of the PNG; the PNG file stays lossless)."""
    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def render_html(blocks: Sequence[Block], figures: dict[str, bytes]) -> str:
    """One HTML file with every figure embedded once (JPEG data: URLs): it opens anywhere, offline."""
    title = next((b.text for b in blocks if b.kind == "h1"), "Error analysis")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "notes":
            out.append("<ul>" + "".join(f"<li>{_inline(row[0])}</li>" for row in b.rows) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "figure":
            data = base64.b64encode(html_jpeg(figures[b.figure])).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b.text)}' src='data:image/jpeg;base64,{data}'>"
                       f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(report: Report, out: str | os.PathLike[str]) -> list[Path]:
    """``out/review_report.md``, ``out/review_report.html`` and ``out/figures/*.png``; returns the paths."""
    folder = Path(out).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        if report.figures:
            (folder / "figures").mkdir(exist_ok=True)
        for name, png in report.figures.items():
            path = folder / "figures" / f"{name}.png"
            path.write_bytes(png)
            written.append(path)
        for name, text in (("review_report.md", report.markdown()), ("review_report.html", report.html())):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, folder / name)
            written.append(folder / name)
    except OSError as exc:
        raise MushcamError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None
    return written
