"""The text report of a results store: a summary row per run, then per-class scores and confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mushcam.evaluate.predict import examples, group_by_reason
from mushcam.metrics import ModelMetrics, compute_metrics, format_rate
from mushcam.store import RunRecord, StoreContents


def run_metrics(contents: StoreContents, run_id: int) -> ModelMetrics:
    """The metrics of one stored run."""
    run = contents.run(run_id)
    rows = contents.predictions[run_id]
    return compute_metrics(rows.true_idx, rows.pred_idx, run.class_names, run.toxicities)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, right: Sequence[bool]) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _pct(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.1%}"


def _num(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def run_label(run: RunRecord, runs: Sequence[RunRecord] = ()) -> str:
    """The model's display name (``ResNet-50``, a label, or its manifest name), with the
    checkpoint hash (and data folder) added where needed to tell runs apart."""
    label = run.label
    same_backbone = [r for r in runs if r.backbone == run.backbone]
    if len({r.checkpoint_sha256 for r in same_backbone}) > 1:
        label += f" · {run.checkpoint_sha256[:8]}"
    if len({r.data_root for r in runs}) > 1:
        label += f" · {Path(run.data_root).name}"
    return label


def format_report(contents: StoreContents, markdown: bool = False, summary_only: bool = False) -> str:
    """The report as text: a summary row per run, then per-class scores and confusion matrices."""
    if not contents.runs:
        return "the store holds no runs"
    parts = []
    rows = []
    for run in contents.runs:
        m = run_metrics(contents, run.run_id)
        rows.append([
            run_label(run, contents.runs), run.checkpoint_sha256[:8], str(m.n_images), _pct(m.accuracy),
            _num(m.macro_f1),
            format_rate(m.dangerous_count, m.dangerous_rate, m.poisonous_images),
            format_rate(m.benign_count, m.benign_rate, m.edible_images),
            str(len(contents.skipped.get(run.run_id, ()))),
        ])
    header = ["model", "checkpoint", "images", "accuracy", "macro F1", "poisonous->edible (dangerous)",
              "edible->poisonous", "skipped"]
    parts.append(_table(header, rows, markdown, [False, False, True, True, True, True, True, True]))
    roots = sorted({r.data_root for r in contents.runs})
    parts.append("data: " + ", ".join(roots))
    if summary_only:
        return "\n".join(parts)
    for run in contents.runs:
        m = run_metrics(contents, run.run_id)
        arch = run.name if run.arch == run.name else f"{run.name}: {run.arch}"
        title = f"{run_label(run, contents.runs)} ({arch}, checkpoint {run.checkpoint_sha256[:12]}, {run.finished_at})"
        parts.append("\n" + (f"### {title}" if markdown else title))
        class_rows = [
            [c.name, c.toxicity, str(c.support), str(c.predicted), _num(c.precision), _num(c.recall), _num(c.f1)]
            for c in m.classes
        ]
        parts.append(_table(["class", "toxicity", "images", "predicted", "precision", "recall", "F1"], class_rows,
                            markdown, [False, False, True, True, True, True, True]))
        names = list(m.class_names)
        short = names if markdown else [n[:12] for n in names]
        matrix_rows = [[names[i]] + [str(int(v)) for v in m.confusion[i]] for i in range(len(names))]
        parts.append("\nconfusion matrix (rows: true class, columns: predicted class)")
        parts.append(_table(["true \\ predicted", *short], matrix_rows, markdown, [False] + [True] * len(names)))
        skipped = contents.skipped.get(run.run_id, ())
        if skipped:
            parts.append(f"\nnot evaluated: {len(skipped)} file{'s' if len(skipped) != 1 else ''}")
            for reason, paths in group_by_reason(skipped).items():
                parts.append(f"  {len(paths)} x {reason} ({examples(paths)})")
    return "\n".join(parts)
