"""``bench_gradcam.py --pipeline``: the gradcam command's photos/s for two checkouts, interleaved.

Each command runs as ``python -m mushcam ...`` in a fresh process with the checkout first on
``PYTHONPATH`` (so the start-up, imports included, is counted as a user sees it); a fresh cache and
output folder per run, so every map is computed and every file drawn.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "helpers")]

from common import probe_ms  # noqa: E402

SHARED_TEST = ROOT.parent / "shared" / "data" / "mushrooms" / "test"


def write_setup(base: Path, photos: int) -> tuple[Path, Path]:
    """A one-model checkpoint folder (random MobileNetV3-Large, 224 px) and ``photos`` shared photos."""
    from factories import write_manifest

    classes = sorted(d.name for d in SHARED_TEST.iterdir() if d.is_dir())
    write_manifest(base / "ckpt", backbones=("mobilenet_v3_large",), classes=[(c, "edible") for c in classes],
                   size=224)
    per_class = -(-photos // len(classes))
    files = [(c, f) for c in classes for f in sorted((SHARED_TEST / c).iterdir())[:per_class]][:photos]
    for name, photo in files:
        (base / "data" / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, base / "data" / name / photo.name)
    return base / "ckpt", base / "data"


def timed_command(tree: Path, args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of ``python -m mushcam ARGS`` run from ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mushcam", *args], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def digests(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def run_pipeline_benchmark(trees: list[Path], photos: int, repeats: int) -> None:
    """Print the table: per tree and command, median wall and CPU seconds and photos/s."""
    print(f"calibration probe before: {probe_ms():.1f} ms; load average {os.getloadavg()}")
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    identical = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ckpt, data = write_setup(base, photos)
        common = ["--data", str(data), "--manifest", str(ckpt)]
        for r in range(repeats):
            outs = []
            for k, tree in enumerate(trees[r % 2:] + trees[: r % 2]):
                label = "before" if tree == trees[0] else "after"
                run = base / f"r{r}-{k}"
                gradcam = ["gradcam", *common, "--cache", str(run / "cache"), "--out", str(run / "out")]
                for command, args in (("--help", ["--help"]), ("gradcam", gradcam),
                                      ("evaluate", ["evaluate", *common, "--out", str(run / "store.sqlite")])):
                    times.setdefault((label, command), []).append(timed_command(tree, args))
                outs.append((digests(run / "out"), digests(run / "cache")))
            identical.append(outs[0] == outs[1])
    print(f"calibration probe after: {probe_ms():.1f} ms; load average {os.getloadavg()}")
    print(f"\n{photos} photos, random MobileNetV3-Large at 224 px, median of {repeats} interleaved runs; "
          f"files and cache entries byte-identical between the trees in {sum(identical)} of {len(identical)} runs")
    print("| tree | command | wall s | CPU s | photos/s (wall) | photos/s (CPU) |")
    print("|---|---|---:|---:|---:|---:|")
    for (label, command), values in times.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        rate = "" if command == "--help" else f"{photos / wall:.1f} | {photos / cpu:.1f}"
        print(f"| {label} | {command} | {wall:.2f} | {cpu:.2f} | {rate or ' | '} |")
