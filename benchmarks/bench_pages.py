"""Page timings in a real browser: first render and each interaction, per page.

Writes its own setup into a temporary folder -- three random-weight presets at 224 px over the
shared photos' eight classes, a sample folder of ``--per-class`` shared test photos per class, a
results store from ``python -m mushcam evaluate`` and faithfulness results -- then starts
``streamlit run app.py`` of the tree under test (``--app-root``: this checkout, or an older one
made with ``git worktree add``) on a free port and drives Debian's Chromium through Playwright.

Each step is timed from the action to the moment what it changes is on the page and the script
run has finished: the page's signature (its text and every image's source, hashed in the browser)
differs from before the action, then no "Running" widget, skeleton, spinner or stale element is
left (nor a progress bar). No fixed sleeps in what is measured. A step the tree's UI lacks is recorded as ``null``
(n/a). The first pass is the cold one (maps computed); ``--repeat`` warm passes follow over the
cached maps (medians reported). The host probe is recorded before and after.

    python benchmarks/bench_pages.py --repeat 3 --label after --out artifacts/bench_pages-after.json
    python benchmarks/bench_pages.py --app-root ../pages2-before --label before --out artifacts/bench_pages-before.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "helpers"), str(ROOT / "benchmarks")]

import browser_support  # noqa: E402
from common import probe_ms  # noqa: E402
from factories import write_manifest  # noqa: E402

SHARED_TEST = ROOT.parent / "shared" / "data" / "mushrooms" / "test"
CLASSES = [("Amanita", "poisonous"), ("Boletus", "edible"), ("Coprinellus", "edible"), ("Coprinopsis", "edible"),
           ("Ganoderma", "inedible"), ("Gyromitra", "poisonous"), ("Omphalotus", "poisonous"),
           ("Volvopluteus", "edible")]
BUSY = ('[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-testid="stSpinner"], '
        '[data-stale="true"]')
# Compare computes its grid with a progress bar between reruns; elsewhere a progress bar is a static
# measure (the Errors page's "reviewed" bar), not work in progress
BUSY_COMPARE = BUSY + ', [data-testid="stProgress"]'
# The page's signature: a hash of its visible text and of every image source (a new map is a new src).
SIGNATURE_JS = """() => {
  let h = 0;
  const s = document.body.innerText + Array.from(document.images).map(i => i.src).join('|');
  for (let i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) | 0; }
  return h;
}"""
STEP_TIMEOUT = 240.0
HEADING = '[data-testid="stHeading"]:has-text("{}")'
NUMBERS = HEADING.format("Numbers")  # Compare's numbers come after every map of the grid


def signature(page) -> int:
    return int(page.evaluate(SIGNATURE_JS))


def settled(page, start: float, before: int | None, busy: str = BUSY, timeout: float = STEP_TIMEOUT) -> float:
    """Seconds from ``start`` until the page differs from ``before`` (None: any page) and its run has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (before is None or signature(page) != before) and page.locator(busy).count() == 0:
            end = time.monotonic()
            # a run still starting (widgets update before the status widget shows): confirm for 0.5 s
            while time.monotonic() - end < 0.5:
                if page.locator(busy).count():
                    break
                time.sleep(0.03)
            else:
                return end - start
        time.sleep(0.02)
    raise TimeoutError("the page did not settle")


def quiet(page) -> None:
    """Wait, untimed, until the page has been idle for a second (between steps)."""
    browser_support.wait_idle(page, timeout=STEP_TIMEOUT, settle=1.0, ready="h1")


def timed(page, action: Callable[[], None], busy: str = BUSY) -> float:
    """Run ``action`` and time it to the settled page that differs from the page before it."""
    quiet(page)
    before = signature(page)
    start = time.monotonic()
    action()
    return settled(page, start, before, busy)


def choose(page, label: str, option: str | int) -> None:
    """Open the selectbox labelled ``label`` and click the option named ``option`` (or its index)."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.locator("input").click()
    options = page.get_by_role("option")
    (options.nth(option) if isinstance(option, int) else options.filter(has_text=option).first).click()


def first_render(page, url: str, path: str, ready: str, busy: str = BUSY) -> float:
    """Navigation to the page until ``ready`` is visible and the run has finished (a page the tree lacks: n/a)."""
    start = time.monotonic()
    page.goto(f"{url}/{path}")
    missing = page.get_by_text(re.compile("page not found", re.I))
    page.locator(ready).or_(missing).first.wait_for(timeout=STEP_TIMEOUT * 1000)
    if missing.count():
        raise LookupError(f"this version has no page /{path}")
    return settled(page, start, None, busy)


def alpha_step(page) -> None:
    page.locator('[data-testid="stSlider"]').filter(has_text="alpha").first.locator('input[type="range"]').focus()
    page.keyboard.press("ArrowRight")


def explain_steps(page, url: str) -> dict[str, Callable[[], float]]:
    def first() -> float:
        start = time.monotonic()
        page.goto(f"{url}/Explain")
        page.get_by_text("Sample folder").first.click()
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=STEP_TIMEOUT * 1000)
        return settled(page, start, None)

    return {
        "Explain: first render (sample photo, map shown)": first,
        "Explain: alpha +0.05": lambda: timed(page, lambda: alpha_step(page)),
        "Explain: colormap -> viridis": lambda: timed(page, lambda: choose(page, "Colormap", "viridis")),
        "Explain: colormap -> jet": lambda: timed(page, lambda: choose(page, "Colormap", "jet")),
        "Explain: model -> the second": lambda: timed(page, lambda: choose(page, "Model", 1)),
        "Explain: model -> the first": lambda: timed(page, lambda: choose(page, "Model", 0)),
        "Explain: photo -> the second sample": lambda: timed(page, lambda: choose(page, "Sample photo", 1)),
        "Explain: photo -> the first sample": lambda: timed(page, lambda: choose(page, "Sample photo", 0)),
    }


def multiselect_add(page, label: str, option: str) -> None:
    page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).first.locator("input").click()
    page.get_by_role("option").filter(has_text=option).first.click()
    page.keyboard.press("Escape")


def multiselect_remove(page, label: str, option: str) -> None:
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).first
    box.locator(f'button[aria-label="Remove {option}"], [role="button"][aria-label="Remove {option}"]').first.click()


def compare_steps(page, url: str) -> dict[str, Callable[[], float]]:
    def step(action: Callable[[], None]) -> Callable[[], float]:
        return lambda: timed(page, action, BUSY_COMPARE)

    return {
        "Compare: first render (3 models x 12 photos)": lambda: first_render(page, url, "Compare", NUMBERS,
                                                                             BUSY_COMPARE),
        "Compare: method + Grad-CAM++": step(lambda: multiselect_add(page, "CAM method", "Grad-CAM++")),
        "Compare: method - Grad-CAM++": step(lambda: multiselect_remove(page, "CAM method", "Grad-CAM++")),
        "Compare: model - MobileNetV3-Large": step(lambda: multiselect_remove(page, "Models", "MobileNetV3-Large")),
    }


def other_steps(page, url: str) -> dict[str, Callable[[], float]]:
    table = '[data-testid="stDataFrame"], [data-testid="stTable"]'
    return {
        "Home: first render": lambda: first_render(page, url, "", table),
        "Errors: first render": lambda: first_render(page, url, "Errors", '[data-testid="stDataFrame"]'),
        "Errors: filter true class -> Amanita": lambda: timed(page, lambda: choose(page, "True class", "Amanita")),
        "Errors: filter true class -> any": lambda: timed(page, lambda: choose(page, "True class", 0)),
        "Trust: first render": lambda: first_render(page, url, "Trust", '[data-testid="stDataFrame"]'),
        "Patterns: first render": lambda: first_render(page, url, "Patterns", HEADING.format("Strategy clusters")),
    }


PAGES = ("Home", "Errors", "Trust", "Patterns", "Explain", "Compare")


def measure(url: str, pages: tuple[str, ...] = PAGES) -> dict[str, float | None]:
    """One pass over ``pages``; a step whose element the UI lacks (or that times out) is None."""
    times: dict[str, float | None] = {}
    with browser_support.browser_page(width=1440, height=1400) as page:
        page.set_default_timeout(20_000)
        for steps in (other_steps(page, url), explain_steps(page, url), compare_steps(page, url)):
            skip = False
            for name, step in steps.items():
                if name.split(":")[0] not in pages:
                    continue
                if skip and "first render" not in name:
                    times[name] = None
                    continue
                try:
                    times[name] = round(step(), 3)
                    skip = False
                except Exception as exc:  # noqa: BLE001  (an old UI without this element: n/a)
                    print(f"  n/a {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", flush=True)
                    times[name] = None
                    skip = "first render" in name
                print(f"  {name:50s} {times[name]}", flush=True)
    return times


def write_setup(base: Path, app_root: Path, per_class: int) -> dict[str, str]:
    """Checkpoints, a sample folder of shared photos, and a results store made by the tree's own CLI."""
    ckpt = base / "ckpt"
    write_manifest(ckpt, classes=CLASSES, size=224)
    samples = base / "samples"
    for name, _ in CLASSES:
        (samples / name).mkdir(parents=True)
        for photo in sorted((SHARED_TEST / name).iterdir())[:per_class]:
            shutil.copy(photo, samples / name / photo.name)
    store = base / "results.sqlite"
    env = {**os.environ, "PYTHONPATH": str(app_root), "MUSHCAM_CACHE": str(base / "cache")}
    for command in (["evaluate", "--data", str(samples), "--manifest", str(ckpt), "--out", str(store)],
                    ["faithfulness", "--data", str(samples), "--manifest", str(ckpt), "--models",
                     "mobilenet_v3_large", "--steps", "4", "--road-percentages", "50", "--limit", "8",
                     "--out", str(store)]):
        done = subprocess.run([sys.executable, "-m", "mushcam", *command], cwd=app_root, env=env,
                              capture_output=True, text=True)
        print(f"  setup: mushcam {command[0]} -> exit {done.returncode} {done.stderr.strip()[-200:]}", flush=True)
    return {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": str(samples), "MUSHCAM_DATA": str(samples),
            "MUSHCAM_RESULTS": str(store), "MUSHCAM_CACHE": str(base / "cache"), "PYTHONPATH": str(app_root)}


def medians(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    steps = dict.fromkeys(name for run in runs for name in run)
    out = {}
    for step in steps:
        values = [run[step] for run in runs if run.get(step) is not None]
        out[step] = round(statistics.median(values), 3) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm passes after the cold one (default 3)")
    parser.add_argument("--per-class", type=int, default=2, help="shared test photos per class (default 2)")
    parser.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose app is measured")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench_pages.json")
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. before / after)")
    parser.add_argument("--pages", default=",".join(PAGES),
                        help=f"comma-separated pages to time (default: all, {','.join(PAGES)})")
    args = parser.parse_args()
    pages = tuple(p.strip() for p in args.pages.split(",") if p.strip())
    if unknown := [p for p in pages if p not in PAGES]:
        parser.error(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(PAGES)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its server
    if not SHARED_TEST.is_dir():
        raise SystemExit(f"needs the shared photos at {SHARED_TEST}")
    app_root = args.app_root.resolve()
    browser_support.PROJECT_ROOT = app_root  # the server runs the app of the tree under test
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=app_root, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        env = write_setup(Path(tmp), app_root, args.per_class)
        probe_before = probe_ms()
        with browser_support.running_app(env, timeout=120) as url:
            print("cold pass", flush=True)
            cold = measure(url, pages)
            warm = []
            for k in range(args.repeat):
                print(f"warm pass {k + 1}", flush=True)
                warm.append(measure(url, pages))
        probe_after = probe_ms()
    result = {"label": args.label, "app_root": str(app_root), "commit": commit, "load_average": os.getloadavg(),
              "probe_ms_before": probe_before, "probe_ms_after": probe_after, "cold": cold,
              "median_seconds": medians(warm), "warm_runs": warm}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for step, seconds in result["median_seconds"].items():
        cold_s = cold.get(step)
        print(f"{step:50s} cold {cold_s if cold_s is not None else 'n/a':>7} warm median "
              f"{seconds if seconds is not None else 'n/a':>7}")
    print(f"probe {probe_before:.0f} -> {probe_after:.0f} ms")


if __name__ == "__main__":
    main()
