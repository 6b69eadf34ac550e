"""Compare page cost: 3 backbones x 12 images at 224 px, first run and cached run.

    .venv/bin/python benchmarks/bench_compare.py [--images 12] [--repeats 5] [--threads 1 2]
                                                 [--page-repeats 3] [--folder DIR]

Random-weight checkpoints for ResNet-50, EfficientNet-B0 and MobileNetV3-Large (4 classes,
224 px squash input) are written to a temporary folder, with ``--images`` JPEG photos of
800x600 (synthetic; ``--folder`` samples a real ``root/<Class>/*`` folder instead).

Part 1, the library path (what the page and ``python -m mushcam compare`` run), timed as
medians over ``--repeats`` rounds in which the variants run interleaved (first, cached,
first, cached, ...):

- ``first``: what a first visit costs: read and decode the images, load the three models
  from their checkpoints, compute the 36 Grad-CAM maps (one per (model, image)), measure
  focus and agreement, and render the 36 grid pictures at display size (320 px).
- ``cached``: the same with the models loaded and the 36 maps in an in-process memo
  (:class:`mushcam.compare.Memo` without a disk cache, as ``compare --no-cache``; equivalent
  to the page's ``st.cache_data`` hits minus Streamlit's copy of each cached value):
  measures + rendering only, no model call.
- ``export``: the grid PNG with its numbers (render + PNG encode) and the two CSVs.

Part 2, the page itself under Streamlit's AppTest (``--page-repeats`` rounds, interleaved),
sampling the folder with "mix right and wrong" off, so that exactly 12 x 3 maps are shown:

- ``page cold``: a run of ``pages/2_Compare.py`` with every Streamlit cache cleared and an
  empty on-disk map cache ($MUSHCAM_CACHE, a fresh folder per round): models load through
  ``st.cache_resource``, the 36 maps are computed and written to the disk cache;
- ``page rerun``: the next run after a widget change (colormap), every map in memory;
- ``page disk``: a new AppTest with the Streamlit caches cleared again but the disk cache
  kept (a restarted server): models load again, the 36 maps are read from disk.

Browser drawing is not included.

Every variant runs once per ``--threads`` setting (torch intra-op threads), interleaved in
the same rounds: on this shared 2-core host two threads that spin-wait for each other were
far slower than one whenever another process took a core.

A calibration probe (ten 512x512 matmuls) is timed before and after: the host is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere

from common import probe_ms  # noqa: E402  (benchmarks/common.py)

from mushcam import compare  # noqa: E402
from mushcam.catalog import load_catalog_model  # noqa: E402
from mushcam.data import scan_image_folder  # noqa: E402
from mushcam.manifest import load_manifest  # noqa: E402
from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model  # noqa: E402
from mushcam.render import to_png  # noqa: E402

CLASSES = [("Amanita", "poisonous"), ("Boletus", "edible"), ("Gyromitra", "poisonous"), ("Suillus", "edible")]
DISPLAY_SIDE = 320


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_setup(folder: Path, n_images: int) -> tuple[Path, Path]:
    """Checkpoints + manifest at 224 px, and ``root/<Class>/*.jpg`` synthetic photos."""
    import json

    ckpt = folder / "ckpt"
    ckpt.mkdir(parents=True)
    for seed, backbone in enumerate(BACKBONES):
        torch.manual_seed(seed)
        torch.save(build_model(backbone, len(CLASSES)).state_dict(), ckpt / f"{backbone}.pt")
    (ckpt / "manifest.json").write_text(json.dumps({
        "classes": [{"name": n, "toxicity": t} for n, t in CLASSES],
        "input": {"size": 224, "resize": "squash"},
        "models": {b: {"checkpoint": f"{b}.pt", "layer": DEFAULT_LAYERS[b]} for b in BACKBONES},
    }))
    images = folder / "images"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:600, 0:800]
    for k in range(n_images):
        label = CLASSES[k % len(CLASSES)][0]
        (images / label).mkdir(parents=True, exist_ok=True)
        cx, cy = rng.uniform(200, 600), rng.uniform(150, 450)
        base = np.stack([xx / 800, yy / 600, np.full(xx.shape, 0.4)], -1)
        base[(xx - cx) ** 2 + (yy - cy) ** 2 < 120**2] = rng.uniform(0.5, 1.0, 3)
        pixels = np.clip(base * 255 + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / label / f"photo_{k:02d}.jpg", quality=90)
    return ckpt, images


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.0f} ms"


def library_round(manifest, items, times: dict[str, list[float]]) -> int:  # noqa: ANN001
    """One first run, one cached run and one export; appends seconds; returns the PNG's size."""
    backbones = list(BACKBONES)

    def grid(images: list[compare.CompareImage], memo: compare.Memo) -> compare.Comparison:
        comparison = compare.compute_comparison(images, backbones, manifest, memo)
        for row in comparison.rows:  # what the page draws: every cell at display size
            thumb = compare.fit_to(row.image.image, DISPLAY_SIDE)
            for cell in row.cells.values():
                compare.cell_picture(thumb, cell.explanation, manifest.input, row.scale("per_image"))
        return comparison

    start = time.perf_counter()
    images = [compare.load_compare_image(i.path, i.relpath, i.label) for i in items]
    memo = compare.Memo(manifest, lambda b: load_catalog_model(manifest, b))
    comparison = grid(images, memo)
    times["first"].append(time.perf_counter() - start)
    assert len(memo.store) == len(images) * len(backbones)

    start = time.perf_counter()
    grid(images, memo)
    times["cached"].append(time.perf_counter() - start)
    assert len(memo.store) == len(images) * len(backbones)  # nothing recomputed

    start = time.perf_counter()
    png = to_png(compare.render_comparison(comparison, manifest))
    compare.to_csv(compare.image_table(comparison))
    compare.to_csv(compare.summary_long(comparison))
    times["export"].append(time.perf_counter() - start)
    return len(png)


def page_round(ckpt: Path, images: Path, n: int, cams: Path, times: dict[str, list[float]]) -> None:
    """Cold run (all caches empty), a rerun after a widget change, a run with only the disk cache."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["MUSHCAM_CHECKPOINTS"] = str(ckpt)
    os.environ["MUSHCAM_SAMPLES"] = str(images)
    os.environ["MUSHCAM_CACHE"] = str(cams)

    def fresh_app() -> AppTest:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(ROOT / "pages" / "2_Compare.py"), default_timeout=600)
        at.session_state["compare_mix"] = False
        at.session_state["compare_n"] = n
        return at

    def timed(key: str, run: Callable[[], object], at: AppTest) -> None:
        start = time.perf_counter()
        run()
        times[key].append(time.perf_counter() - start)
        assert not at.exception, [e.message for e in at.exception]
        assert len(at.get("image")) == n * 4, len(at.get("image"))

    at = fresh_app()
    timed("page cold", at.run, at)
    assert len(list(cams.rglob("*.npz"))) >= n * len(BACKBONES)  # the maps went to disk
    timed("page rerun", lambda: at.selectbox(key="compare_colormap").select("viridis").run(), at)
    at = fresh_app()
    timed("page disk", at.run, at)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5, help="library rounds")
    parser.add_argument("--page-repeats", type=int, default=3, help="AppTest rounds (0: skip)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread settings")
    parser.add_argument("--folder", help="sample a real root/<Class>/* folder instead of synthetic photos")
    args = parser.parse_args(argv)

    library = {t: {"first": [], "cached": [], "export": []} for t in args.threads}
    page = {t: {"page cold": [], "page rerun": [], "page disk": []} for t in args.threads}
    png_bytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, images = write_setup(Path(tmp), args.images)
        if args.folder:
            images = Path(args.folder)
        manifest = load_manifest(ckpt)
        items = compare.select_sample(scan_image_folder(images), manifest, args.images, seed=0)
        sizes = sorted({Image.open(i.path).size for i in items})
        print(f"python {platform.python_version()}, torch {torch.__version__}, cpus {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        print(f"{len(items)} images from {'--folder' if args.folder else 'synthetic JPEGs'} "
              f"(sizes {sizes[0]}..{sizes[-1]}), {len(BACKBONES)} backbones, 224 px input")
        before = probe_ms()
        for round_index in range(max(args.repeats, args.page_repeats)):
            for threads in args.threads:
                torch.set_num_threads(threads)
                if round_index < args.repeats:
                    png_bytes = library_round(manifest, items, library[threads])
                if round_index < args.page_repeats:
                    cams = Path(tmp) / f"cams-{round_index}-{threads}"
                    page_round(ckpt, images, len(items), cams, page[threads])
        after = probe_ms()
        load_end = os.getloadavg()[0]

    print(f"probe (ten 512x512 matmuls): before {before:.0f} ms, after {after:.0f} ms; "
          f"load average {load_end:.2f} at end")
    for threads in args.threads:
        times = library[threads]
        print(f"threads={threads}: library, median of {args.repeats} interleaved rounds")
        for key in ("first", "cached", "export"):
            print(f"  {key:10s} {median_ms(times[key])}   (all: {', '.join(f'{v:.2f}' for v in times[key])} s)")
        print(f"  first / cached: {statistics.median(times['first']) / statistics.median(times['cached']):.1f}x")
        if args.page_repeats > 0:
            times = page[threads]
            print(f"threads={threads}: page under AppTest, median of {args.page_repeats} interleaved rounds")
            for key in ("page cold", "page rerun", "page disk"):
                print(f"  {key:10s} {median_ms(times[key])}   (all: {', '.join(f'{v:.2f}' for v in times[key])} s)")
            ratio = statistics.median(times['page cold']) / statistics.median(times['page rerun'])
            print(f"  cold / rerun: {ratio:.1f}x")
    if len(args.threads) > 1:
        base = statistics.median(library[args.threads[0]]["first"])
        for threads in args.threads[1:]:
            other = statistics.median(library[threads]["first"])
            print(f"library first run, threads={threads} / threads={args.threads[0]}: {other / base:.2f}x")
    print(f"exported PNG: {png_bytes / 1e6:.2f} MB; peak memory (VmHWM) of this process: {vm_hwm_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
