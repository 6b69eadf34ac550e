"""The review report's patterns section, read from a store the test writes by hand."""

from __future__ import annotations

import html
import re

import numpy as np
from factories import write_image_folder

from mushcam.patterns.focus import FocusSummary, Interval
from mushcam.patterns.regions import Region
from mushcam.patterns.report import patterns_report_section
from mushcam.patterns.shortcuts import Flag
from mushcam.patterns.store import PatternsKey, save_clusters, save_focus, save_regions
from mushcam.patterns.strategies import ClassStrategies, StrategyCluster
from mushcam.store import write_transaction

KEY = PatternsKey("resnet50", "ab" * 32, "gradcam", "/data/test")
REASON = "87% of this cluster's map mass lies in the bottom-right corner; <b>3 of 3</b> photos are called A|B"


def _cluster(index: int, paths: list[str], flags: tuple[Flag, ...] = ()) -> StrategyCluster:
    return StrategyCluster(index, tuple(paths), 0.5, 0.75, np.full((16, 16), 1 / 256), tuple(paths[:2]), flags,
                           tuple("A" for _ in paths))


def _store(tmp_path, with_patterns: bool = True):
    store = tmp_path / "results.sqlite"
    with write_transaction(store):
        pass  # an empty MushCAM store, as evaluate leaves it
    if with_patterns:
        clusters = (_cluster(0, ["A/img_0.png", "A/img_1.png", "A/img_2.png"], (Flag("corner", 0.87, REASON),)),
                    _cluster(1, ["A/img_3.png"]))
        save_clusters(store, KEY, [ClassStrategies("resnet50", "A", "predicted", 2, (0.0, 0.1), clusters, ())])
        save_focus(store, KEY, "layer4", FocusSummary(40, Interval(0.43, 0.40, 0.45), Interval(0.59, 0.53, 0.65),
                                                      0.40))
        save_regions(store, [("1" * 64, Region("A/img_0.png", 1, 2, 30, 40, "drawn")),
                             ("2" * 64, Region("A/img_1.png", 0, 0, 9, 9, "proposed")),
                             ("3" * 64, Region("A/img_2.png", 0, 0, 9, 9, "proposed"))])
    return store


def test_the_section_summarises_focus_clusters_flags_and_regions_with_their_numbers(tmp_path):
    data = write_image_folder(tmp_path / "test", ["A"], per_class=4, size=(72, 56))
    section = patterns_report_section(_store(tmp_path), data_root=data, figure_dir="figs", level=2)
    md = section.markdown
    assert section.computed
    assert md.startswith("## Patterns across the test set\n")
    assert "| resnet50 (abababab) | gradcam | 40 | 43% (40%–45%) | 59% (53%–65%) | 40% |" in md
    assert "| resnet50 (abababab) | gradcam | A | predicted class | 2 | 4 | 1 |" in md  # 2 clusters, 4 photos, 1 flag
    assert "**1 flagged as a possible shortcut**" in md
    assert "**resnet50 · A · cluster 0**: 3 photos, accuracy 50%, mean confidence 75%." in md
    assert "photos: A/img_0.png, A/img_1.png, A/img_2.png" in md
    assert "3 object region(s) in the store: 2 proposed, 1 drawn" in md
    assert "![Focus on the mushroom" in md and "](figs/patterns_focus.png)" in md
    assert "](figs/patterns_flagged_1.png)" in md
    assert set(section.figures) == {"patterns_focus", "patterns_flagged_1"}
    assert all(png.startswith(b"\x89PNG") for png in section.figures.values())
    # HTML: the same numbers, every figure embedded once, the store's text escaped
    assert section.html.count("data:image/png;base64,") == 2
    assert "<b>3 of 3</b>" not in section.html and html.escape(REASON) in section.html
    assert "<td>43% (40%–45%)</td>" in section.html
    assert section.html.startswith("<h2>Patterns across the test set</h2>")


def test_without_the_test_folder_no_photos_are_read_and_the_flags_are_still_listed(tmp_path):
    section = patterns_report_section(_store(tmp_path), level=3)
    assert section.markdown.startswith("### Patterns across the test set")
    assert "#### Clusters flagged as a possible shortcut" in section.markdown
    assert set(section.figures) == {"patterns_focus"}
    assert REASON in section.markdown  # a list item: its text as stored


def test_a_store_without_patterns_says_how_to_compute_them(tmp_path):
    store = _store(tmp_path, with_patterns=False)
    section = patterns_report_section(store)
    assert not section.computed and section.figures == {}
    assert "No patterns have been computed for this store; run python -m mushcam patterns --store" in section.markdown
    assert str(store) in section.markdown
    assert re.fullmatch(r"<h2>[^<]+</h2>\n<p>No patterns have been computed[^<]+</p>", section.html)
