"""The blocks of the review report's patterns section, read from the store, rendered as Markdown and HTML.

The section (:func:`mushcam.patterns.report.patterns_report_section`) is built once as a list
of :class:`Block` and rendered twice: Markdown links each figure as ``figure_dir/<name>.png``,
HTML embeds it (base64 PNG); every text from the store (class names, paths, reasons) is
escaped in the HTML and has its ``|`` escaped in Markdown tables. Figures: the focus chart
(energy inside the object and pointing game with their 95 % intervals, against a uniform
map) and, when the test folder is given, a strip of each flagged cluster's photos.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mushcam.data import decode_image, read_bytes, resolve_inside
from mushcam.exceptions import MushcamError
from mushcam.patterns.focus import Interval
from mushcam.patterns.regions import SOURCES, Region
from mushcam.patterns.store import PatternsKey, StoredCluster, StoredFocus
from mushcam.render import fit_within, to_png

STRIP_SIDE = 160


@dataclass(frozen=True)
class PatternsSection:
    """The patterns part of the review report: Markdown (linking ``figure_dir/<name>.png``), HTML
    (every figure embedded, every text escaped) and the figures as PNG bytes by name."""

    markdown: str
    html: str
    figures: dict[str, bytes]
    computed: bool  # False when the store holds no patterns yet


@dataclass(frozen=True)
class Block:
    """A heading ("h", with its level), a paragraph ("p"), a list ("list": ``rows`` of one text),
    a table ("table": ``header`` and ``rows``) or a figure ("figure": ``text`` = its name, ``caption``)."""

    kind: str
    text: str = ""
    level: int = 2
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    caption: str = ""


def _pct(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.0%}"


def _interval(i: Interval) -> str:
    return f"{_pct(i.mean)} ({_pct(i.low)}–{_pct(i.high)})"


def _model(key: PatternsKey) -> str:
    return f"{key.model} ({key.checkpoint_sha256[:8]})"


def focus_chart(focus: Sequence[StoredFocus]) -> bytes:
    """Horizontal bars: energy inside the object and the pointing game per model x method, each with
    its 95 % interval, and a black tick at the uniform map's share (PNG)."""
    from matplotlib.figure import Figure  # imported lazily: a section without focus rows never pays for it

    figure = Figure(figsize=(8.0, 1.4 + 0.6 * len(focus)), dpi=100)
    axes = figure.add_subplot()
    y = np.arange(len(focus))
    for offset, name, colour, pick in ((-0.18, "energy inside", "#1f77b4", lambda s: s.energy),
                                       (0.18, "pointing game", "#ff7f0e", lambda s: s.pointing)):
        values = [pick(f.summary) for f in focus]
        means = np.array([v.mean for v in values])
        errors = np.array([[v.mean - v.low for v in values], [v.high - v.mean for v in values]])
        axes.barh(y + offset, means, 0.34, xerr=np.nan_to_num(errors), color=colour, label=name, capsize=3)
    axes.scatter([f.summary.uniform for f in focus], y, marker="|", s=400, color="black", label="uniform map",
                 zorder=3)
    axes.set_yticks(y, [f"{f.key.model} · {f.key.method}" for f in focus])
    axes.set_xlim(0, 1)
    axes.set_xlabel("share (95 % interval)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def focus_blocks(focus: Sequence[StoredFocus], figures: dict[str, bytes], level: int) -> list[Block]:
    """The focus table and chart (or a line saying that no photo has an object region yet)."""
    blocks = [Block("h", "Focus on the mushroom (pointing game)", level=level)]
    if not focus:
        return [*blocks, Block("p", "No object regions yet: run python -m mushcam patterns with --regions FILE "
                                    "or --propose-regions, or draw boxes on the Patterns page.")]
    rows = tuple((_model(f.key), f.key.method, str(f.summary.n_photos), _interval(f.summary.energy),
                  _interval(f.summary.pointing), _pct(f.summary.uniform)) for f in focus)
    figures["patterns_focus"] = focus_chart(focus)
    return [*blocks,
            Block("p", "Energy inside: the share of the map's positive mass inside the object's box; pointing "
                       "game: the share of photos whose map peaks inside it; a uniform map gets the box's share "
                       "of the frame. Means with bootstrap 95 % intervals."),
            Block("table", header=("model", "method", "photos with a region", "energy inside (95 % CI)",
                                   "pointing game (95 % CI)", "uniform map"), rows=rows),
            Block("figure", "patterns_focus", caption="Focus on the mushroom per model (bars) against a uniform "
                                                      "map (black tick).")]


def cluster_blocks(clusters: Sequence[StoredCluster], level: int) -> list[Block]:
    """One row per model x method x class: clusters, photos and how many clusters are flagged."""
    groups: dict[tuple[PatternsKey, str, str], list[StoredCluster]] = {}
    for c in clusters:
        groups.setdefault((c.key, c.group_by, c.class_name), []).append(c)
    rows = tuple((_model(key), key.method, name, "predicted class" if by == "predicted" else "true class",
                  str(len(members)), str(sum(m.size for m in members)), str(sum(bool(m.reasons) for m in members)))
                 for (key, by, name), members in groups.items())
    flagged = sum(bool(c.reasons) for c in clusters)
    roots = sorted({c.key.data_root for c in clusters})
    return [Block("h", "Strategy clusters and shortcut flags", level=level),
            Block("p", f"{len(clusters)} cluster(s) over {len(groups)} model x class group(s), on "
                       f"{', '.join(roots)}; **{flagged} flagged as a possible shortcut**."),
            Block("table", header=("model", "method", "class", "grouped by", "clusters", "photos", "flagged"),
                  rows=rows)]


def _strip(data_root: str | os.PathLike[str], paths: Sequence[str]) -> bytes | None:
    """The photos side by side (each at most STRIP_SIDE px), on white; None when none can be read."""
    pictures = []
    for path in paths:
        try:
            pictures.append(np.asarray(fit_within(decode_image(read_bytes(resolve_inside(data_root, path))),
                                                  STRIP_SIDE).convert("RGB")))
        except (MushcamError, OSError):
            continue
    if not pictures:
        return None
    height = max(p.shape[0] for p in pictures)
    canvas = np.full((height, sum(p.shape[1] + 4 for p in pictures), 3), 255, dtype=np.uint8)
    x = 0
    for p in pictures:
        canvas[: p.shape[0], x: x + p.shape[1]] = p
        x += p.shape[1] + 4
    return to_png(canvas)


def flagged_blocks(clusters: Sequence[StoredCluster], figures: dict[str, bytes],
                   data_root: str | os.PathLike[str] | None, max_photos: int, level: int) -> list[Block]:
    """Each flagged cluster: its numbers, its reasons, its photos (and their strip, given the folder)."""
    flagged = [c for c in clusters if c.reasons]
    if not flagged:
        return []
    blocks = [Block("h", "Clusters flagged as a possible shortcut", level=level)]
    for number, c in enumerate(flagged, start=1):
        shown = c.paths[:max_photos]
        more = f" (+{c.size - len(shown)} more)" if c.size > len(shown) else ""
        blocks.append(Block("p", f"**{c.key.model} · {c.class_name} · cluster {c.cluster_idx}**: {c.size} photos, "
                                 f"accuracy {_pct(c.accuracy)}, mean confidence {_pct(c.mean_confidence)}."))
        blocks.append(Block("list", rows=tuple((r,) for r in c.reasons) + ((f"photos: {', '.join(shown)}{more}",),)))
        strip = _strip(data_root, shown) if data_root is not None else None
        if strip is not None:
            name = f"patterns_flagged_{number}"
            figures[name] = strip
            blocks.append(Block("figure", name, caption=f"{c.key.model} · {c.class_name} · cluster {c.cluster_idx}: "
                                                        f"{', '.join(shown)}"))
    return blocks


def region_blocks(regions: Mapping[str, Region], level: int) -> list[Block]:
    """How many object regions the store holds, by source."""
    counts = Counter(r.source for r in regions.values())
    parts = ", ".join(f"{counts[s]} {s}" for s in SOURCES if counts[s])
    text = (f"{len(regions)} object region(s) in the store: {parts} (proposed boxes come from GrabCut and were "
            "not checked by a person)." if regions else "No object regions in the store.")
    return [Block("h", "Object regions", level=level), Block("p", text)]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(b: Block, figure_dir: str) -> str:
    if b.kind == "h":
        return f"{'#' * b.level} {b.text}"
    if b.kind == "list":
        return "\n".join(f"- {row[0]}" for row in b.rows)
    if b.kind == "table":
        lines = ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
        return "\n".join(lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows])
    if b.kind == "figure":
        return f"![{_md_cell(b.caption)}]({figure_dir}/{b.text}.png)"
    return b.text


def _inline(text: str) -> str:
    """Escaped, with the one bit of Markdown the blocks use: **bold**."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _html(b: Block, figures: Mapping[str, bytes]) -> str:
    if b.kind == "h":
        return f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"
    if b.kind == "list":
        return "<ul>" + "".join(f"<li>{_inline(row[0])}</li>" for row in b.rows) + "</ul>"
    if b.kind == "table":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if b.kind == "figure":
        data = base64.b64encode(figures[b.text]).decode("ascii")
        return (f"<figure><img alt='{html.escape(b.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
    return f"<p>{_inline(b.text)}</p>"


def render(blocks: Sequence[Block], figures: dict[str, bytes], figure_dir: str, computed: bool) -> PatternsSection:
    """The section in both formats."""
    markdown = "\n\n".join(_markdown(b, figure_dir) for b in blocks) + "\n"
    return PatternsSection(markdown, "\n".join(_html(b, figures) for b in blocks), dict(figures), computed)
