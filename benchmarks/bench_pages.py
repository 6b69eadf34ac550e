"""Page timings in a real browser: first render and each interaction, per page.

Starts ``streamlit run app.py`` on a checkpoint folder of random-weight presets at 224 px with the
shared test photos as the sample folder, drives Debian's Chromium through Playwright, and times
each step from the action to the moment what it changes is on the page (a new overlay image, a
new element, the run finished): no fixed sleeps in what is measured. Each step is repeated
``--repeat`` times (median reported) and the host probe is recorded before and after.

    python benchmarks/bench_pages.py --repeat 3 --out artifacts/bench_pages.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from browser_support import browser_page, running_app  # noqa: E402
from common import probe_ms  # noqa: E402
from factories import write_manifest  # noqa: E402

SHARED_TEST = ROOT.parent / "shared" / "data" / "mushrooms" / "test"
CLASSES = [("Amanita", "poisonous"), ("Boletus", "edible"), ("Coprinellus", "edible"), ("Coprinopsis", "edible"),
           ("Ganoderma", "inedible"), ("Gyromitra", "poisonous"), ("Omphalotus", "poisonous"),
           ("Volvopluteus", "edible")]
OVERLAY = '[data-testid="stTabPanel"]:not([hidden]) [data-testid="stImage"] img'
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-testid="stSpinner"]'


def run_finished(page, start: float, timeout: float = 300.0) -> float:
    """Seconds from ``start`` until the script run that the action started has finished."""
    deadline = time.monotonic() + timeout
    seen_busy = False
    while time.monotonic() < deadline:
        busy = page.locator(BUSY).count() > 0
        seen_busy = seen_busy or busy
        if not busy and (seen_busy or time.monotonic() - start > 1.5):
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError("the page did not finish")


def image_changed(page, before: str | None, start: float, timeout: float = 300.0) -> float:
    """Seconds from ``start`` until the visible overlay's source differs from ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        images = page.locator(OVERLAY)
        if images.count() and images.first.get_attribute("src") not in (None, before):
            return time.monotonic() - start
        time.sleep(0.01)
    raise TimeoutError("the overlay did not change")


def overlay_src(page) -> str | None:
    images = page.locator(OVERLAY)
    return images.first.get_attribute("src") if images.count() else None


def explain_steps(page, url: str) -> dict[str, float]:
    times: dict[str, float] = {}
    start = time.monotonic()
    page.goto(f"{url}/Explain")
    page.get_by_text("Sample folder").click()
    times["explain first render (sample photo, map shown)"] = image_changed(page, None, start)
    run_finished(page, time.monotonic())
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
    before = overlay_src(page)
    slider.focus()
    start = time.monotonic()
    page.keyboard.press("ArrowRight")
    times["explain alpha +0.05"] = image_changed(page, before, start)
    run_finished(page, time.monotonic())
    before = overlay_src(page)
    start = time.monotonic()
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Colormap").locator("input").click()
    page.get_by_role("option", name="viridis").click()
    times["explain colormap -> viridis"] = image_changed(page, before, start)
    run_finished(page, time.monotonic())
    return times


def page_first_render(page, url: str, path: str, ready: str) -> float:
    start = time.monotonic()
    page.goto(f"{url}/{path}" if path else url)
    page.wait_for_selector(ready, timeout=300_000)
    return run_finished(page, start)


def measure(url: str) -> dict[str, float]:
    with browser_page(width=1440, height=1400) as page:
        times = {"home first render": page_first_render(page, url, "", '[data-testid="stTable"]')}
        times.update(explain_steps(page, url))
        times["compare first render (3 models, 12 photos)"] = page_first_render(
            page, url, "Compare", 'text=Per model')
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench_pages.json")
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. before / after)")
    args = parser.parse_args()
    if not SHARED_TEST.is_dir():
        raise SystemExit(f"needs the shared photos at {SHARED_TEST}")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt"
        write_manifest(ckpt, classes=CLASSES, size=224)
        env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": str(SHARED_TEST), "MUSHCAM_CACHE": f"{tmp}/cache"}
        probe_before = probe_ms()
        runs = []
        with running_app(env) as url:
            for _ in range(args.repeat):
                runs.append(measure(url))
        probe_after = probe_ms()
    medians = {step: statistics.median(run[step] for run in runs) for step in runs[0]}
    result = {"label": args.label, "probe_ms_before": probe_before, "probe_ms_after": probe_after,
              "median_seconds": medians, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for step, seconds in medians.items():
        print(f"{step:55s} {seconds:6.2f} s")
    print(f"probe {probe_before:.0f} -> {probe_after:.0f} ms")


if __name__ == "__main__":
    main()
