"""The error-analysis report, written from the store's runs and reviews: Markdown and self-contained HTML.

Sections: per model, accuracy and the dangerous counts; the causes with counts and shares
per model and per class pair; reviewer agreement (Cohen's kappa per cause); every
poisonous->edible error with its figure and notes; two or three examples per cause; labels
to fix; near-duplicates of training photos among the errors.

Counting: an error *has* a cause when at least one reviewer tagged it (disagreements are
what the agreement section measures). A cause's share is its count over the model's
reviewed errors; an error can have several causes, so shares add up to more than 100 %.

The report is built once as a list of blocks (:class:`Block`) and rendered twice; each
figure is made once (:class:`mushcam.review.figures.FigureSource`, through the CAM cache)
and used by every section that shows it: the Markdown links ``figures/<name>.png``, the
HTML embeds the same bytes as base64.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mushcam.evaluate import run_label, run_metrics
from mushcam.exceptions import MushcamError
from mushcam.metrics import DANGEROUS, error_kinds
from mushcam.review.agreement import pairwise_kappa
from mushcam.review.causes import Cause, labels_of
from mushcam.review.figures import model_name
from mushcam.review.labels import label_fixes
from mushcam.review.store import NearDuplicate, Review, ReviewIndex, ReviewKey
from mushcam.store import Predictions, RunRecord, StoreContents

EXAMPLES_PER_CAUSE = 3
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
                 duplicates: dict[str, tuple[NearDuplicate, ...]] | None = None) -> Report:
    """The whole report as blocks plus the figures it uses (made once each)."""
    report = Report()
    blocks = report.blocks
    labels = labels_of(causes)
    keys = [c.key for c in causes]
    runs = contents.runs
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    reviewers = sorted({r.reviewer for r in reviews.reviews})
    blocks.append(Block("h1", title))
    blocks.append(Block("p", f"Written {now} from {len(runs)} evaluated model run{'s' if len(runs) != 1 else ''} and "
                             f"{len(reviews.reviews)} review{'s' if len(reviews.reviews) != 1 else ''} by "
                             f"{', '.join(reviewers) if reviewers else 'nobody yet'}. An error has a cause when at "
                             "least one reviewer tagged it; shares are over the model's reviewed errors and can add "
                             "up to more than 100 % (an error may have several causes)."))

    errors_by_run: dict[int, list[_Error]] = {}
    for run in runs:
        rows = contents.predictions[run.run_id]
        kinds = error_kinds(rows.true_idx, rows.pred_idx, run.toxicities)
        errors_by_run[run.run_id] = [
            _Error(run, rows, i, ReviewKey(rows.image_sha256[i], model_name(run), run.checkpoint_sha256))
            for i in np.flatnonzero(rows.true_idx != rows.pred_idx).tolist()
        ]
        m = run_metrics(contents, run.run_id)
        errs = errors_by_run[run.run_id]
        counts = {k: sum(1 for e in errs if any(k in r.causes for r in reviews.of(e.key))) for k in keys}
        report.summaries.append(ModelSummary(
            run_label(run, runs), m.n_images, m.accuracy, len(errs), int((kinds == DANGEROUS).sum()),
            m.poisonous_images, m.benign_count, sum(1 for e in errs if reviews.of(e.key)), counts))

    blocks.append(Block("h2", "Models"))
    blocks.append(Block("table", header=("model", "images", "accuracy", "errors", "poisonous → edible",
                                         "edible → poisonous", "reviewed errors"),
                        rows=tuple((s.label, str(s.n_images), _pct(s.accuracy), str(s.errors),
                                    f"{s.dangerous} of {s.poisonous_images}", str(s.benign),
                                    f"{s.reviewed} of {s.errors}") for s in report.summaries)))

    blocks.append(Block("h2", "Causes per model"))
    used = [k for k in keys if any(s.cause_counts[k] for s in report.summaries)]
    if not used:
        blocks.append(Block("p", "No error has been tagged with a cause yet."))
    else:
        rows_ = []
        for k in used:
            cells = [labels[k]]
            for s in report.summaries:
                share = s.cause_counts[k] / s.reviewed if s.reviewed else math.nan
                cells.append(f"{s.cause_counts[k]} ({_pct(share)})")
            rows_.append(tuple(cells))
        blocks.append(Block("table", header=("cause", *(s.label for s in report.summaries)), rows=tuple(rows_)))

        blocks.append(Block("h2", "Causes per class pair"))
        pair_rows = []
        for run in runs:
            groups: dict[tuple[str, str], list[_Error]] = {}
            for e in errors_by_run[run.run_id]:
                if reviews.of(e.key):
                    names = run.class_names
                    pair = (names[int(e.rows.true_idx[e.index])], names[int(e.rows.pred_idx[e.index])])
                    groups.setdefault(pair, []).append(e)
            for (t, p), errs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                cells = [run_label(run, runs), f"{t} → {p}", str(len(errs))]
                for k in used:
                    n = sum(1 for e in errs if any(k in r.causes for r in reviews.of(e.key)))
                    cells.append(f"{n} ({n / len(errs):.0%})" if n else "")
                pair_rows.append(tuple(cells))
        blocks.append(Block("table", header=("model", "true → predicted", "reviewed", *(labels[k] for k in used)),
                            rows=tuple(pair_rows)))

    blocks.append(Block("h2", "Agreement between reviewers"))
    pairs = pairwise_kappa(reviews.reviews, keys)
    if not pairs:
        blocks.append(Block("p", "No error was reviewed by two reviewers yet."))
    else:
        blocks.append(Block("p", "Cohen's kappa per cause on the errors both reviewed: 1 = full agreement, "
                                 "0 = chance level; n/a = both gave the same answer for every error."))
        shown = [k for k in keys if any(k in r.causes for r in reviews.reviews)] or keys
        blocks.append(Block("table", header=("reviewers", "errors in common", *(labels[k] for k in shown)),
                            rows=tuple((f"{p.reviewer_a} / {p.reviewer_b}", str(p.n_items),
                                        *(_kappa(p.kappa[k]) for k in shown)) for p in pairs)))

    def figure_block(error: _Error) -> list[Block]:
        name = f"{model_name(error.run)}_{error.key.image_sha256[:16]}"
        if figures is None:
            return []
        if name not in report.figures:
            png, why = figures(error.run, error.rows, error.index)
            if png is None:
                return [Block("p", f"(no figure: {why})")]
            report.figures[name] = png
        return [Block("figure", f"{error.path}: original, predicted-class and true-class Grad-CAM", figure=name)]

    def notes_block(error: _Error) -> Block:
        found = reviews.of(error.key)
        if not found:
            return Block("p", "Not reviewed yet.")
        return Block("notes", rows=tuple((_review_line(r, labels),) for r in found))

    def near_duplicate_note(error: _Error) -> list[Block]:
        marks = (duplicates or {}).get(error.key.image_sha256, ())
        twins = [m for m in marks if m.other_split != m.split]
        if not twins:
            return []
        return [Block("p", "Near-duplicate of " + ", ".join(f"{m.other_path} ({m.distance} bits)" for m in twins[:3]))]

    blocks.append(Block("h2", "Poisonous predicted as edible"))
    any_dangerous = False
    for run in runs:
        kinds = error_kinds(contents.predictions[run.run_id].true_idx, contents.predictions[run.run_id].pred_idx,
                            run.toxicities)
        for error in errors_by_run[run.run_id]:
            if kinds[error.index] != DANGEROUS:
                continue
            any_dangerous = True
            blocks.append(Block("h3", f"{run_label(run, runs)} · {error.path} · {error.describe()}"))
            blocks.extend(figure_block(error))
            blocks.extend(near_duplicate_note(error))
            blocks.append(notes_block(error))
    if not any_dangerous:
        blocks.append(Block("p", "None: no model called a poisonous genus edible."))

    blocks.append(Block("h2", "Examples per cause"))
    for k in used:
        examples, seen_images = [], set()
        for run in runs:
            for error in errors_by_run[run.run_id]:
                if error.key.image_sha256 in seen_images:
                    continue
                if any(k in r.causes for r in reviews.of(error.key)):
                    examples.append(error)
                    seen_images.add(error.key.image_sha256)
        total = len(examples)
        blocks.append(Block("h3", f"{labels[k]} ({total} error{'s' if total != 1 else ''}; "
                                  f"{min(total, EXAMPLES_PER_CAUSE)} shown)"))
        for error in examples[:EXAMPLES_PER_CAUSE]:
            blocks.append(Block("p", f"**{run_label(error.run, runs)}** · {error.path} · {error.describe()}"))
            blocks.extend(figure_block(error))
            blocks.append(notes_block(error))

    fixes = label_fixes(reviews.reviews)
    blocks.append(Block("h2", "Labels to check"))
    if fixes:
        blocks.append(Block("table", header=("path", "current label", "suggested label", "note", "reviewer"),
                            rows=tuple((f.path, f.current_label, f.suggested_label, f.note, f.reviewer) for f in fixes)))
    else:
        blocks.append(Block("p", "No error is tagged label doubtful."))
    if duplicates:
        dup_rows = []
        for run in runs:
            errs = errors_by_run[run.run_id]
            n = sum(1 for e in errs if any(m.other_split == "train" and m.split != "train"
                                           for m in duplicates.get(e.key.image_sha256, ())))
            dup_rows.append((run_label(run, runs), str(len(errs)), str(n)))
        blocks.append(Block("h2", "Near-duplicates of training photos"))
        blocks.append(Block("table", header=("model", "errors", "errors on a photo with a near-duplicate in train"),
                            rows=tuple(dup_rows)))
    return report


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


def render_html(blocks: Sequence[Block], figures: dict[str, bytes]) -> str:
    """One HTML file with every figure embedded (data: URLs): it opens anywhere, offline."""
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
            data = base64.b64encode(figures[b.figure]).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'>"
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
