"""The review report carries the patterns section (issue 19): what `python -m mushcam patterns`
stored is summarised in both formats, its figures written once beside the report's own."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from errors_setup import write_errors_setup

from mushcam import cli
from mushcam.patterns.focus import FocusSummary, Interval
from mushcam.patterns.shortcuts import Flag
from mushcam.patterns.store import PatternsKey, save_clusters, save_focus
from mushcam.patterns.strategies import ClassStrategies, StrategyCluster

KEY = PatternsKey("efficientnet_b0", "cd" * 32, "gradcam", "/data/test")
REASON = "81% of this cluster's map mass lies in the bottom 12% of the frame; 2 of 2 photos are called Amanita"


def _with_patterns(store: Path) -> None:
    flagged = StrategyCluster(0, ("Amanita/img_0.png", "Amanita/img_1.png"), 0.5, 0.7, np.full((16, 16), 1 / 256),
                              ("Amanita/img_0.png",), (Flag("border", 0.81, REASON),), ("Amanita", "Amanita"))
    save_clusters(store, KEY, [ClassStrategies("efficientnet_b0", "Amanita", "predicted", 1, (0.0,), (flagged,), ())])
    save_focus(store, KEY, "features.8", FocusSummary(12, Interval(0.31, 0.25, 0.37), Interval(0.5, 0.3, 0.7), 0.28))


def _report(tmp_path: Path, patterns: bool) -> tuple[str, str, list[str]]:
    setup = write_errors_setup(tmp_path / "setup")
    if patterns:
        _with_patterns(setup["out"])
    out = tmp_path / "report"
    assert cli.main(["review-report", str(setup["out"]), "--out", str(out), "--no-figures",
                     "--data", str(setup["data"])]) == 0
    figures = sorted(p.name for p in (out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    return (out / "review_report.md").read_text(), (out / "review_report.html").read_text(), figures


def test_the_review_report_holds_the_stored_patterns_with_their_numbers_and_figures(tmp_path: Path) -> None:
    md, page, figures = _report(tmp_path, patterns=True)
    assert "## Patterns across the test set" in md and "<h2>Patterns across the test set</h2>" in page
    assert "| efficientnet_b0 (cdcdcdcd) | gradcam | 12 | 31% (25%–37%) | 50% (30%–70%) | 28% |" in md
    assert REASON in md and html.escape(REASON) in page
    # the section comes before the cause codebook, and its figures are files beside the report's own
    assert md.index("## Patterns across the test set") < md.index("## Cause codebook")
    assert figures == ["patterns_flagged_1.png", "patterns_focus.png"]  # --no-figures: only the section's own
    assert "](figures/patterns_focus.png)" in md and "](figures/patterns_flagged_1.png)" in md
    assert page.count("data:image/") == 2


def test_without_patterns_the_report_says_how_to_compute_them(tmp_path: Path) -> None:
    md, page, figures = _report(tmp_path, patterns=False)
    assert "No patterns have been computed for this store" in md and "python -m mushcam patterns" in md
    assert not any(name.startswith("patterns_") for name in figures)
