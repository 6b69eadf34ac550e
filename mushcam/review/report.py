"""The error-analysis report, written from the store's runs and reviews: Markdown and self-contained HTML.

Sections (:data:`mushcam.review.report_sections.SECTIONS`, in order): provenance (per run:
checkpoint SHA-256, layer, input size, method, data folder, date, MushCAM version); per model,
accuracy and the dangerous counts; each run's confusion matrix; per-reviewer counts; the causes
with counts and shares per model and per class pair; reviewer agreement (Cohen's kappa per
cause with n, raw agreement and a seeded bootstrap 95 % interval); every poisonous->edible
error with its figure and notes; two or three examples per cause; labels to fix;
near-duplicates of training photos among the errors; the cause codebook.

Counting: an error *has* a cause under the consensus rule the user chose
(:func:`mushcam.review.agreement.has_cause`: ``any`` reviewer, default, a ``majority``, or
``all``); the report states the rule. Counts are written "k of n (p)", n being the
population named in the column. A cause's share is over the model's reviewed errors; an
error can have several causes, so shares add up to more than 100 %.

The report is built once as a list of blocks (:mod:`report_blocks`) and rendered twice
(:mod:`report_markdown`, :mod:`report_html`), each escaping what users typed for its format.
Each figure is made once (:class:`mushcam.review.figures.FigureSource`, through the CAM
cache), numbered ("Figure 1.") and shown once. The Markdown links ``figures/<name>.png``
(lossless files, named by :func:`mushcam.manifest.file_safe_name` and checked to lie inside
the output folder); the HTML embeds each figure once as WebP (JPEG without WebP support).

This module keeps the public names of the report (``build_report``, ``write_report``,
``Report``, ``Block``, ``k_of_n``, the ``*_blocks`` functions, ``html_jpeg``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mushcam.exceptions import MushcamError
from mushcam.files import write_bytes_atomic, write_text_atomic
from mushcam.review.agreement import DEFAULT_CONSENSUS, check_consensus
from mushcam.review.causes import Cause
from mushcam.review.report_blocks import Block, k_of_n
from mushcam.review.report_findings import ErrorCase, Findings, ModelSummary
from mushcam.review.report_html import (
    HTML_JPEG_QUALITY,
    HTML_WEBP_QUALITY,
    html_figure,
    html_jpeg,
    html_webp,
    render_html,
    webp_available,
)
from mushcam.review.report_markdown import render_markdown
from mushcam.review.report_sections import (
    EXAMPLES_PER_CAUSE,
    FIGURE_METHOD,
    SECTIONS,
    FigureMaker,
    RenderedSection,
    ReportContext,
    agreement_blocks,
    codebook_blocks,
    confusion_blocks,
    provenance_blocks,
    reviewer_blocks,
)
from mushcam.review.store import NearDuplicate, ReviewIndex
from mushcam.store import StoreContents

__all__ = [
    "EXAMPLES_PER_CAUSE", "FIGURE_METHOD", "HTML_JPEG_QUALITY", "HTML_WEBP_QUALITY", "SECTIONS", "Block",
    "ErrorCase", "FigureMaker", "Findings", "ModelSummary", "Report", "ReportContext", "agreement_blocks",
    "build_report", "codebook_blocks", "confusion_blocks", "html_figure", "html_jpeg", "html_webp", "k_of_n",
    "provenance_blocks", "render_html", "render_markdown", "reviewer_blocks", "webp_available", "write_report",
]


@dataclass
class Report:
    """The report's blocks, its figures (name -> PNG, made once each) and each run's summary."""

    blocks: list[Block] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    summaries: list[ModelSummary] = field(default_factory=list)

    def markdown(self, figure_dir: str = "figures") -> str:
        return render_markdown(self.blocks, figure_dir)

    def html(self) -> str:
        return render_html(self.blocks, self.figures)


def build_report(contents: StoreContents, reviews: ReviewIndex, causes: Sequence[Cause],
                 figures: FigureMaker | None = None, title: str = "Error analysis",
                 duplicates: dict[str, tuple[NearDuplicate, ...]] | None = None,
                 consensus: str = DEFAULT_CONSENSUS, data_root: str | os.PathLike[str] | None = None,
                 patterns: RenderedSection | None = None) -> Report:
    """The whole report as blocks plus the figures it uses (made once each): every section of SECTIONS in order.

    ``consensus``: when an error has a cause (any / majority / all of its reviewers);
    ``data_root``: the image folder the figures were read from (stated in the provenance);
    ``patterns``: the patterns section (:func:`mushcam.patterns.report.patterns_report_section`), or none.
    """
    ctx = ReportContext(contents, reviews, causes, figures, duplicates, check_consensus(consensus), title, data_root,
                        patterns)
    blocks = [block for section in SECTIONS for block in section(ctx)]
    return Report(blocks, ctx.figures, ctx.summaries)


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it resolves to a file directly under ``folder`` (no ``..``, no link out)."""
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise MushcamError(f"refused to write {name!r}: it would land outside {folder}; this is a bug in the "
                           "figure name, please report it")
    return path


def write_report(report: Report, out: str | os.PathLike[str]) -> list[Path]:
    """``out/review_report.md``, ``out/review_report.html`` and ``out/figures/*.png``; returns the paths.

    Every text is made before the first file is written, each file atomically; a figure's path
    must resolve inside ``out/figures``.
    """
    folder = Path(out).expanduser()
    texts = (("review_report.md", report.markdown()), ("review_report.html", report.html()))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if report.figures:
            (folder / "figures").mkdir(exist_ok=True)
    except OSError as exc:
        raise MushcamError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None
    written = []
    for name, png in report.figures.items():
        path = _inside(folder / "figures", f"{name}.png")
        write_bytes_atomic(path, png)
        written.append(path)
    for name, text in texts:
        write_text_atomic(folder / name, text)
        written.append(folder / name)
    return written
