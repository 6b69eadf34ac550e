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

The HTML embeds every picture (the clusters' mean maps and their typical photos with the
map over them) as base64 PNG: one file that opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from mushcam.data import crop_box, decode_image, read_bytes
from mushcam.files import dumps_json, write_text_atomic
from mushcam.manifest import InputSpec
from mushcam.patterns.run import ModelPatterns, PatternsResult
from mushcam.patterns.strategies import ClassStrategies, StrategyCluster
from mushcam.render import colorize, fit_within, overlay, to_png, upsample_cam

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


def photo_overlay(path: Path, cam: np.ndarray, spec: InputSpec, side: int = THUMB) -> bytes:
    """A thumbnail of the photo with its map over it, as PNG."""
    image = fit_within(decode_image(read_bytes(path)), side)
    heat = upsample_cam(cam, image.size, crop_box(image.size, spec))
    return to_png(overlay(image.convert("RGB"), heat))


def mean_map_png(cluster: StrategyCluster, side: int = THUMB) -> bytes:
    """The cluster's mean map, coloured (its own maximum = top of the colour scale)."""
    mean = cluster.mean_map / max(float(cluster.mean_map.max()), 1e-12)
    return to_png(colorize(upsample_cam(mean, (side, side))))


def _cluster_html(result: PatternsResult, found: ModelPatterns, strategies: ClassStrategies,
                  cluster: StrategyCluster, spec: InputSpec) -> str:
    cams = {m.relpath: m.cam for m in found.maps.maps}
    pictures = [_img(mean_map_png(cluster), "mean map")]
    for path in cluster.typical:
        pictures.append(_img(photo_overlay(result.data_root / path, cams[path], spec), path))
    flag = ' <span class="flag">shortcut</span>' if cluster.flags else ""
    reasons = "".join(f"<li>{html.escape(f.reason)}</li>" for f in cluster.flags)
    return (f"<div class='cluster'><h4>cluster {cluster.index}: {cluster.size} photos, accuracy "
            f"{_pct(cluster.accuracy)}, mean confidence {_pct(cluster.mean_confidence)}{flag}</h4>"
            f"<ul>{reasons}</ul><div class='row'>{''.join(pictures)}</div></div>")


def html_report(result: PatternsResult, spec: InputSpec) -> str:
    """The report as one self-contained HTML page."""
    body = [f"<h1>Patterns: {html.escape(str(result.data_root))}</h1>",
            "<p>The first picture of each cluster is its mean map; then its typical photos with their maps.</p>",
            f"<h2>Focus on the object</h2><pre>{html.escape(chr(10).join(focus_lines(result)))}</pre>"]
    for found in result.models:
        body.append(f"<h2>{html.escape(found.model)}</h2>")
        for strategies in found.strategies:
            body.append(f"<h3>{html.escape(strategies.class_name)} ({strategies.k} cluster(s))</h3>")
            body += [_cluster_html(result, found, strategies, c, spec) for c in strategies.clusters]
    style = ("body{font-family:sans-serif;margin:2em} .row img{margin:2px} .flag{background:#c0392b;color:#fff;"
             "padding:1px 6px;border-radius:3px} .cluster{border-top:1px solid #ddd;padding:4px 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>MushCAM patterns</title><style>{style}"
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
