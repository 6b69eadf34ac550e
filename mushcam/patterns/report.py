"""The patterns report: ``patterns.json`` (for other tools), Markdown and self-contained HTML.

patterns.json::

    {"data_root": ..., "settings": {...}, "classes": [...],
     "models": [{"model", "method", "layer", "checkpoint_sha256", "n_photos",
                 "focus": {"n_photos", "energy": {"mean", "low", "high"}, "pointing": {...}, "uniform"} | null,
                 "clusters": [{"model", "class", "group_by", "k", "eigenvalues",
                               "clusters": [{"model", "class", "cluster", "size", "accuracy", "mean_confidence",
                                             "paths", "typical", "flags": ["shortcut"] | [], "reasons": [...]}]}],
                 "concepts": [{"class", "n_photos", "mean_logit",
                               "concepts": [{"concept", "share", "contribution", "top_photos"}]}]}],
     "regions": [{"path", "box": [x0, y0, x1, y1], "source"}]}

The HTML embeds every picture (the clusters' mean maps, their typical photos with the map
over them, each concept's regions in the photos where it is strongest; every map with its
colour bar, flat maps marked) as base64 PNG: one file that opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from mushcam.cam import method_label
from mushcam.files import dumps_json, write_text_atomic
from mushcam.manifest import InputSpec
from mushcam.map_scale import colormap_caption
from mushcam.patterns import section
from mushcam.patterns import store as patterns_store
from mushcam.patterns.figures import concept_pictures, flat_note, map_picture, mean_map_picture
from mushcam.patterns.run import ModelPatterns, PatternsResult
from mushcam.patterns.section import PatternsSection
from mushcam.patterns.strategies import StrategyCluster
from mushcam.render import DEFAULT_COLORMAP, to_png

THUMB = 112


def patterns_json(result: PatternsResult) -> dict[str, object]:
    """Every cluster, concept, focus number and region, as plain JSON values."""
    return {
        "data_root": str(result.data_root),
        "settings": result.settings.to_dict(),
        "classes": list(result.class_names),
        "models": [_model_json(m) for m in result.models],
        "regions": [{"path": r.path, "box": list(r.box), "source": r.source} for r in result.regions.values()],
    }


def _model_json(found: ModelPatterns) -> dict[str, object]:
    maps = found.maps
    return {
        "model": maps.model, "method": maps.method, "layer": maps.layer, "checkpoint_sha256": maps.checkpoint_sha256,
        "n_photos": len(maps.maps), "skipped": list(maps.skipped),
        "focus": found.focus.to_dict() if found.focus is not None else None,
        "clusters": [s.to_dict() for s in found.strategies],
        "concepts": [c.to_dict() for c in found.concepts],
    }


def _pct(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.0%}"


def focus_lines(result: PatternsResult) -> list[str]:
    """The focus table in Markdown."""
    lines = ["| model | method | photos with a region | energy inside (95 % CI) | pointing game (95 % CI) "
             "| uniform map |", "|---|---|---|---|---|---|"]
    for m in result.models:
        f = m.focus
        if f is None:
            lines.append(f"| {m.model} | {m.maps.method} | 0 | – | – | – |")
            continue
        lines.append(f"| {m.model} | {m.maps.method} | {f.n_photos} | {_pct(f.energy.mean)} ({_pct(f.energy.low)}–"
                     f"{_pct(f.energy.high)}) | {_pct(f.pointing.mean)} ({_pct(f.pointing.low)}–"
                     f"{_pct(f.pointing.high)}) | {_pct(f.uniform)} |")
    return lines


def markdown_report(result: PatternsResult) -> str:
    """The report as Markdown (no pictures; the HTML has them)."""
    lines = [f"# Patterns: {result.data_root}", "",
             f"Maps: {result.settings.method}; photos grouped by {result.settings.group_by} class. "
             "Formulas: docs/patterns.md.", "", "## Focus on the object", ""]
    lines += focus_lines(result) if result.regions else ["No object regions: give --regions FILE or --propose-regions."]
    for m in result.models:
        lines += ["", f"## {m.model}: strategy clusters", ""]
        for s in m.strategies:
            lines.append(f"### {s.class_name} ({sum(c.size for c in s.clusters)} photos, {s.k} cluster(s))")
            lines.append("")
            for c in s.clusters:
                flag = " **shortcut**" if c.flags else ""
                lines.append(f"- cluster {c.index}: {c.size} photos, accuracy {_pct(c.accuracy)}, mean confidence "
                             f"{_pct(c.mean_confidence)}{flag}")
                lines += [f"  - {f.reason}" for f in c.flags]
            lines.append("")
        if m.concepts:
            lines += [f"## {m.model}: concepts", ""]
            for cc in m.concepts:
                parts = ", ".join(f"#{c.index} share {_pct(c.share)} → logit {c.contribution:+.2f}"
                                  for c in cc.concepts)
                lines.append(f"- {cc.class_name} ({cc.n_photos} photos, mean logit {cc.mean_logit:+.2f}): {parts}")
    return "\n".join(lines) + "\n"


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _figure(picture: np.ndarray, caption: str) -> str:
    """One picture with its caption (escaped), embedded as PNG."""
    return f"<figure>{_img(to_png(picture), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def photo_overlay(path: Path, cam: np.ndarray, spec: InputSpec, side: int = THUMB) -> bytes:
    """A thumbnail of the photo with its map over it and the map's colour bar, as PNG."""
    return to_png(map_picture(path, cam, spec, "Grad-CAM", side)[0])


def mean_map_png(cluster: StrategyCluster, side: int = THUMB) -> bytes:
    """The cluster's mean map, coloured to its own maximum, with its colour bar, as PNG."""
    return to_png(mean_map_picture(cluster, side)[0])


def _cluster_html(result: PatternsResult, found: ModelPatterns, cluster: StrategyCluster, spec: InputSpec) -> str:
    cams = {m.relpath: m.cam for m in found.maps.maps}
    label = method_label(found.maps.method)
    picture, scale = mean_map_picture(cluster, THUMB)
    pictures = [_figure(picture, "mean map" + flat_note(scale))]
    for path in cluster.typical:
        picture, scale = map_picture(result.data_root / path, cams[path], spec, label, THUMB)
        pictures.append(_figure(picture, path + flat_note(scale)))
    flag = ' <span class="flag">shortcut</span>' if cluster.flags else ""
    reasons = "".join(f"<li>{html.escape(f.reason)}</li>" for f in cluster.flags)
    return (f"<div class='cluster'><h4>cluster {cluster.index}: {cluster.size} photos, accuracy "
            f"{_pct(cluster.accuracy)}, mean confidence {_pct(cluster.mean_confidence)}{flag}</h4>"
            f"<ul>{reasons}</ul><div class='row'>{''.join(pictures)}</div></div>")


def _concepts_html(result: PatternsResult, found: ModelPatterns, spec: InputSpec) -> str:
    parts = []
    for cc in found.concepts:
        parts.append(f"<h3>{html.escape(cc.class_name)}: concepts ({cc.n_photos} photos, mean logit "
                     f"{cc.mean_logit:+.2f})</h3>")
        for c in cc.concepts:
            pictures = [_figure(picture, path + flat_note(scale))
                        for path, picture, scale in concept_pictures(result.data_root, c, spec, THUMB)]
            parts.append(f"<div class='cluster'><h4>concept {c.index}: {_pct(c.share)} of the activation, "
                         f"contributes {c.contribution:+.2f} to the logit</h4><div class='row'>{''.join(pictures)}"
                         "</div></div>")
    return "".join(parts)


_STYLE = ("body{font-family:sans-serif;margin:2em} .row{display:flex;flex-wrap:wrap;gap:6px} "
          ".row img{height:180px} figure{margin:0} figcaption{font-size:0.8em;color:#555;max-width:260px;"
          "overflow-wrap:anywhere} .flag{background:#c0392b;color:#fff;padding:1px 6px;border-radius:3px} "
          ".cluster{border-top:1px solid #ddd;padding:4px 0}")


def html_report(result: PatternsResult, spec: InputSpec) -> str:
    """The report as one self-contained HTML page (every map with its colour bar)."""
    body = [f"<h1>Patterns: {html.escape(str(result.data_root))}</h1>",
            "<p>The first picture of each cluster is its mean map; then its typical photos with their maps. "
            f"{html.escape(colormap_caption(DEFAULT_COLORMAP))}</p>",
            f"<h2>Focus on the object</h2><pre>{html.escape(chr(10).join(focus_lines(result)))}</pre>"]
    for found in result.models:
        body.append(f"<h2>{html.escape(found.model)}</h2>")
        for strategies in found.strategies:
            body.append(f"<h3>{html.escape(strategies.class_name)} ({strategies.k} cluster(s))</h3>")
            body += [_cluster_html(result, found, c, spec) for c in strategies.clusters]
        body.append(_concepts_html(result, found, spec))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>MushCAM patterns</title><style>{_STYLE}"
            f"</style></head><body>{''.join(body)}</body></html>\n")


def write_report(result: PatternsResult, spec: InputSpec, out: str | os.PathLike[str]) -> list[Path]:
    """Write patterns.json, patterns.md and patterns.html into the folder ``out``; returns the paths."""
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "patterns.json", folder / "patterns.md", folder / "patterns.html"]
    write_text_atomic(paths[0], dumps_json(patterns_json(result), "patterns.json"))
    write_text_atomic(paths[1], markdown_report(result))
    write_text_atomic(paths[2], html_report(result, spec))
    return paths


# ------------------------------------------------------------------------------ the review report's section

SECTION_TITLE = "Patterns across the test set"
NOT_COMPUTED = ("No patterns have been computed for this store; run python -m mushcam patterns --store {store} "
                "--data TEST_FOLDER --model NAME --out DIR (add --propose-regions or --regions boxes.csv for the "
                "focus on the mushroom).")
SECTION_PHOTOS = 4  # photos shown per flagged cluster


def patterns_report_section(store_path: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None,
                            figure_dir: str = "figures", level: int = 2,
                            max_photos: int = SECTION_PHOTOS) -> PatternsSection:
    """Summarise the clusters, shortcut flags, focus numbers and object regions found in the store.

    ``data_root`` (optional) is the test folder: each flagged cluster then gets a strip of up to
    ``max_photos`` of its photos (read only under that folder). ``level`` is the heading level of
    the section's title (its subsections are one deeper). A store without patterns gives a
    section that says how to compute them (``computed=False``).
    """
    clusters, focus = patterns_store.load_clusters(store_path), patterns_store.load_focus(store_path)
    regions = patterns_store.load_regions(store_path)
    blocks: list[section.Block] = [section.Block("h", SECTION_TITLE, level=level)]
    if not clusters and not focus:
        blocks.append(section.Block("p", NOT_COMPUTED.format(store=store_path)))
        return section.render(blocks, {}, figure_dir, computed=False)
    figures: dict[str, bytes] = {}
    blocks += section.focus_blocks(focus, figures, level + 1)
    blocks += section.cluster_blocks(clusters, level + 1)
    blocks += section.flagged_blocks(clusters, figures, data_root, max_photos, level + 1)
    blocks += section.region_blocks(regions, level + 1)
    return section.render(blocks, figures, figure_dir, computed=True)
