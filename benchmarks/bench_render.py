"""Re-rendering cost when the alpha slider or the colormap changes (no model call).

    .venv/bin/python benchmarks/bench_render.py [--repeats 50]

What the Explain page does on such a change, on a 1024 x 768 photo with a 7 x 7 raw map:
upsample + normalise the map onto the image, colour it through a 256-entry table, blend,
and compose the Combined view. Steps are timed interleaved; medians are reported, with a
calibration probe (ten 512x512 matmuls) before and after.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from common import probe_ms  # noqa: E402  (benchmarks/common.py)

from mushcam.render import blend, colorize, combine_panels, render_views, upsample_cam  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8))
    pixels = np.asarray(image)
    cam = torch.rand(7, 7, generator=torch.Generator().manual_seed(0))
    heat = upsample_cam(cam, image.size)
    heat_rgb = colorize(heat, "jet")
    blended = blend(pixels, heat_rgb, 0.45)
    steps = {
        "upsample + normalise": lambda: upsample_cam(cam, image.size),
        "colour (LUT)": lambda: colorize(heat, "viridis"),
        "alpha blend": lambda: blend(pixels, heat_rgb, 0.6, heat),
        "combined view": lambda: combine_panels([pixels, heat_rgb, blended],
                                                ["Original", "Grad-CAM heatmap", "Overlay"], "title"),
        "all four views (what a slider move costs)": lambda: render_views(image, upsample_cam(cam, image.size), 0.6,
                                                                          "jet", "title"),
    }
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    print(f"machine: {platform.machine()}, torch threads {torch.get_num_threads()}")
    print(f"calibration probe before: {probe_ms():.1f} ms")
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            steps[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    print(f"calibration probe after:  {probe_ms():.1f} ms")
    print(f"\n{args.width}x{args.height} image, 7x7 map, median of {args.repeats} interleaved runs")
    print("| step | median ms |")
    print("|---|---:|")
    for name in names:
        print(f"| {name} | {statistics.median(times[name]):.1f} |")


if __name__ == "__main__":
    main()
