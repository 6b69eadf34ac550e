"""Faithfulness over a test folder: wall time and peak memory, and whether memory is flat in N.

Each run is its own process (``python -m mushcam faithfulness``), so its peak is its own:
the command prints VmHWM per model (reset before each model). Runs: N = 20 and N = 100
images of one model (memory must not grow with N), then every image x every model.

    python benchmarks/bench_trust.py --data ../shared/data/mushrooms/test --manifest runs/mushrooms \
        --out runs/bench-trust --steps 10 --road-percentages 20,50,80
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import probe_ms  # noqa: E402

LINE = re.compile(r"^(\S+) · (\S+): (\d+) images in ([\d.]+) s; peak resident memory (\d+) MB", re.MULTILINE)


def run(args: argparse.Namespace, models: list[str], limit: int | None, store: Path) -> tuple[float, list[tuple]]:
    command = [sys.executable, "-m", "mushcam", "faithfulness", "--data", args.data, "--manifest", args.manifest,
               "--models", *models, "--steps", str(args.steps), "--road-percentages", args.road_percentages,
               "--baseline", args.baseline, "--threads", str(args.threads), "--out", str(store)]
    if limit:
        command += ["--limit", str(limit)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return wall, LINE.findall(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True, help="folder for the stores")
    parser.add_argument("--flat-model", default="mobilenet_v3_large")
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_large", "efficientnet_b0", "resnet50"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--road-percentages", default="10,20,30,40,50,60,70,80,90")
    parser.add_argument("--baseline", default="blur")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"probe before: {probe_ms():.1f} ms", flush=True)
    rows = []
    for n in (20, 100):
        store = out / f"flat-{n}.sqlite"
        store.unlink(missing_ok=True)
        wall, lines = run(args, [args.flat_model], n, store)
        rows += [(f"N={n}", *line, wall) for line in lines]
        print(rows[-1], flush=True)
    if not args.skip_full:
        store = out / "full.sqlite"
        store.unlink(missing_ok=True)
        wall, lines = run(args, args.models, None, store)
        rows += [("all", *line, wall) for line in lines]
    print(f"probe after: {probe_ms():.1f} ms")
    print("\n| run | model | method | images | seconds (in process) | s / image | peak RSS MB | process wall s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for label, model, method, n, seconds, peak, wall in rows:
        print(f"| {label} | {model} | {method} | {n} | {float(seconds):.1f} | {float(seconds) / int(n):.2f} | {peak} "
              f"| {wall:.1f} |")


if __name__ == "__main__":
    main()
