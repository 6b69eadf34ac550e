"""Peak memory of loading a checkpoint: the old way (random init, then load) against the new
(build on ``meta``, assign the checkpoint's tensors).

    .venv/bin/python benchmarks/bench_load_memory.py [--arch resnet50] [--repeats 3]

Each load runs in a fresh subprocess that imports torch and torchvision first, resets the
peak (/proc/self/clear_refs), loads, and reports VmHWM minus VmRSS before the load: the
memory the load needs beyond the imports. The two variants alternate (old, new, old, ...);
medians are reported beside the size of the weights themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, torch, torchvision
torch.set_num_threads(1)
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from mushcam.models import load_model
variant, arch, path = sys.argv[1:4]
reset_peak_rss()
before = current_rss_bytes()
if variant == "old":  # what load_model did before: a randomly initialised model, then load_state_dict
    model = torchvision.models.get_model(arch, weights=None, num_classes=9)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
else:
    model = load_model(arch, path, num_classes=9)
print(json.dumps({"extra_mb": (peak_rss_bytes() - before) / 2**20}))
"""


def run(variant: str, arch: str, path: Path) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, variant, arch, str(path)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["extra_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    import torchvision

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{args.arch}.pt"
        model = torchvision.models.get_model(args.arch, weights=None, num_classes=9)
        torch.save(model.state_dict(), path)
        weights_mb = path.stat().st_size / 2**20
        del model
        results: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.repeats):
            for variant in ("old", "new"):
                results[variant].append(run(variant, args.arch, path))
    print(f"{args.arch}: weights file {weights_mb:.0f} MB; peak memory of one load beyond the imports "
          f"(median of {args.repeats}, fresh process each):")
    for variant, label in (("old", "random init, then load_state_dict"), ("new", "meta device + assign=True")):
        median = statistics.median(results[variant])
        print(f"  {label:36s} {median:7.0f} MB  ({median / weights_mb:.2f}x the weights)  runs: "
              + ", ".join(f"{v:.0f}" for v in results[variant]))


if __name__ == "__main__":
    main()
