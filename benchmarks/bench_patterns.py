"""Patterns from a warm CAM cache: time and peak memory at 235 and ~1,000 photos, 3 models.

    .venv/bin/python benchmarks/bench_patterns.py [--photos 235 1000] [--threads 2] [--size 112]

Setup (not timed): random-weight ResNet-50, EfficientNet-B0 and MobileNetV3-Large checkpoints
(timing does not need trained weights), a test folder of N photos (the shared photos when
``../shared/data/mushrooms`` exists, copied into a temporary folder; else generated ones),
and one cold run that fills the CAM cache. Measured: a warm run of
:func:`mushcam.patterns.run.run_patterns` (maps from the cache, clusters, flags; no concepts,
no regions) in a fresh process per size, repeated and interleaved (235, 1000, 235, 1000 ...),
wall time median and peak resident memory (VmHWM from /proc/self/status, read in the
measured process). The calibration probe is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "mushrooms"
MODELS = ("resnet50", "efficientnet_b0", "mobilenet_v3_large")
sys.path.insert(0, str(ROOT))


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_folder(target: Path, n: int) -> list[str]:
    """N photos under target/<Class>/ (shared photos if present, else generated); the class names."""
    import numpy as np
    from PIL import Image

    if SHARED.is_dir():
        photos = sorted(p for split in ("test", "val", "train") for p in (SHARED / split).glob("*/*.jpg"))[:n]
        for p in photos:
            (target / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target / p.parent.name / f"{p.parent.parent.name}_{p.name}")
        return sorted({p.parent.name for p in photos})
    classes = [f"Class{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    for i in range(n):
        (target / classes[i % 8]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(target / classes[i % 8] / f"{i}.jpg")
    return classes


def write_models(folder: Path, classes: list[str], size: int) -> None:
    import torch
    import torchvision

    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for seed, name in enumerate(MODELS):
        torch.manual_seed(seed)
        torch.save(torchvision.models.get_model(name, weights=None, num_classes=len(classes)).state_dict(),
                   folder / f"{name}.pt")
        models[name] = {"checkpoint": f"{name}.pt"}
    manifest = {"classes": [{"name": c, "toxicity": "unknown"} for c in classes],
                "input": {"size": size, "resize": "squash", "mean": [0.485, 0.456, 0.406],
                          "std": [0.229, 0.224, 0.225]},
                "models": models}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def run_once(data: Path, ckpt: Path, cache: Path) -> dict[str, float]:
    from mushcam.cache import CamCache
    from mushcam.manifest import load_manifest
    from mushcam.patterns.run import PatternsSettings, run_patterns

    start = time.perf_counter()
    result = run_patterns(data, load_manifest(ckpt / "manifest.json"), list(MODELS), CamCache(cache),
                          settings=PatternsSettings(concepts=0), log=lambda _line: None)
    seconds = time.perf_counter() - start
    computed = sum(m.maps.computed for m in result.models)
    clusters = sum(len(s.clusters) for m in result.models for s in m.strategies)
    return {"seconds": seconds, "vm_hwm_mb": vm_hwm_mb(), "computed": computed, "clusters": clusters}


def measure(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(run_once(Path(args.data), Path(args.ckpt), Path(args.cache))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[235, 1000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", help="keep the photos, checkpoints and cache in this folder (a rerun is warm)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return
    from common import probe_ms

    with tempfile.TemporaryDirectory(prefix="bench-patterns-") as tmp:
        work = Path(args.work).expanduser() if args.work else Path(tmp)
        folders = {n: work / f"data{n}" for n in args.photos}
        if not (work / "ckpt" / "manifest.json").is_file():
            classes = sorted({c for n in args.photos for c in make_folder(folders[n], n)})
            write_models(work / "ckpt", classes, args.size)
        print(f"probe before: {probe_ms():.1f} ms; photos {args.photos}; {args.threads} threads; {args.size} px")
        for n in args.photos:
            cold = _child(folders[n], work, args)
            print(f"cold {n}: {cold['seconds']:.1f} s, {cold['computed']:.0f} maps computed, "
                  f"VmHWM {cold['vm_hwm_mb']:.0f} MB")
        runs: dict[int, list[dict[str, float]]] = {n: [] for n in args.photos}
        for _ in range(args.repeats):
            for n in args.photos:
                runs[n].append(_child(folders[n], work, args))
        for n, found in runs.items():
            seconds = [r["seconds"] for r in found]
            print(f"warm {n} photos x {len(MODELS)} models: median {statistics.median(seconds):.1f} s (runs "
                  f"{', '.join(f'{v:.1f}' for v in seconds)}), VmHWM median "
                  f"{statistics.median(r['vm_hwm_mb'] for r in found):.0f} MB, {found[0]['computed']:.0f} computed, "
                  f"{found[0]['clusters']:.0f} clusters")
        print(f"probe after: {probe_ms():.1f} ms")


def _child(data: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", "--data", str(data), "--ckpt", str(work / "ckpt"),
               "--cache", str(work / "cams"), "--threads", str(args.threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
