"""Size of the self-contained review report for 8 figures: PNG, JPEG and WebP data URIs (issue 22).

    .venv/bin/python benchmarks/bench_review_html.py [--folder ../shared/data/mushrooms/test] [--every 20]

Takes every 20th photo of the folder (sorted; 8 photos), draws each as a report figure the
way the report does (photo fitted to 360 px, two Grad-CAM overlays of a smooth random map,
``combine_panels`` with a title, one colour bar, ``to_png``), renders the report's HTML
with the 8 figures embedded as PNG, JPEG (q85) and WebP (q80, method 4) and prints each
file's size and the encoding time per figure.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from mushcam.map_scale import with_colorbar  # noqa: E402
from mushcam.render import colormap_lut, combine_panels, fit_within, overlay, to_png  # noqa: E402
from mushcam.review.report_blocks import Block  # noqa: E402
from mushcam.review.report_html import render_html  # noqa: E402


def smooth_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A 7x7 random map upsampled bicubically to ``shape``: as smooth as a Grad-CAM map."""
    small = Image.fromarray((rng.random((7, 7)) * 255).astype(np.uint8))
    return np.asarray(small.resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.float32) / 255


def figure(path: Path, rng: np.random.Generator) -> bytes:
    with Image.open(path) as opened:
        display = fit_within(opened.convert("RGB"), 360)
    shape = (display.size[1], display.size[0])
    panels = [np.asarray(display), overlay(display, smooth_map(shape, rng)), overlay(display, smooth_map(shape, rng))]
    combined = combine_panels(panels, ["Original", "Why A? (90.0%)", "Where is B? (5.0%)"], f"model: {path.name}")
    return to_png(with_colorbar(combined, colormap_lut("jet"), 1.0, "Grad-CAM"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(Path(__file__).resolve().parents[2] / "shared/data/mushrooms/test"))
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    photos = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    chosen = photos[:: args.every][: args.count]
    rng = np.random.default_rng(0)
    figures = {f"f{i}": figure(p, rng) for i, p in enumerate(chosen)}
    with Image.open(io.BytesIO(next(iter(figures.values())))) as first:
        size = first.size
    blocks = [Block("h1", "Error analysis"), *(Block("figure", f"Figure {i + 1}.", figure=k)
                                               for i, k in enumerate(figures))]
    print(f"{len(figures)} figures of {size[0]} x {size[1]} px from {args.folder}")
    print(f"PNG files: {sum(map(len, figures.values())) / 1e6:.2f} MB")
    print(f"HTML with PNG data URIs: {sum(len(f) * 4 / 3 for f in figures.values()) / 1e6:.2f} MB (figures only)")
    for label, webp in (("JPEG q85", False), ("WebP q80", True)) * 3:  # interleaved, three times each
        start = time.perf_counter()
        page = render_html(blocks, figures, webp=webp)
        seconds = time.perf_counter() - start
        print(f"HTML with {label} data URIs: {len(page.encode()) / 1e6:.2f} MB "
              f"({seconds / len(figures) * 1000:.0f} ms per figure)")
    print(f"load average: {open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
