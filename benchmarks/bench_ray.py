"""Faithfulness on Ray: one worker vs two on this machine (photos/s, peak memory per worker), and the numbers a
projection to a large run on GPUs needs (forward passes per photo, the share of a photo's time outside them).

The photos are real ones (``--data ROOT/<Class>/``, ``--photos N`` spread over the classes); the model is a
random-weight torchvision network (``--arch``, default MobileNetV3-Large at 224 px: a ResNet-50 takes ~20x as
long per photo on CPU), written with a manifest of the folder's classes into ``--out``. Runs, on the same photos
and settings: the local job (one process, ``--threads`` torch threads), then ``--ray`` with 1 and with 2 workers
on a local Ray runtime of ``--cpus`` CPUs. Photos/s is taken over the pass itself (the pool's wall clock, the
workers already started); the workers' start (each imports torch and loads the model) is given beside it. The
host probe (benchmarks/common.py) is timed before and after.

    python benchmarks/bench_ray.py --data ../shared/data/mushrooms/test --photos 16 --out runs/bench-ray
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import probe_ms  # noqa: E402

from mushcam.manifest import load_manifest  # noqa: E402
from mushcam.models import build_model  # noqa: E402
from mushcam.trust.faithfulness import FaithfulnessSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_project(data: Path, out: Path, arch: str, size: int) -> Path:
    """A manifest of the data folder's classes and one random-weight checkpoint of ``arch``."""
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_model(arch, len(classes)).state_dict(), out / f"{arch}.pt")
    manifest = {"classes": [{"name": c, "toxicity": "unknown"} for c in classes],
                "input": {"size": size, "resize": "squash"}, "models": {arch: {"checkpoint": f"{arch}.pt"}}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def forward_seconds_per_photo(model: torch.nn.Module, size: int, settings: FaithfulnessSettings,
                              device: str = "cpu") -> tuple[int, float]:
    """The forward passes one photo's scores make, batched as ``evaluate_map`` batches them, and their time here.

    Per ranking (map, random): deletion + insertion at steps + 1 points = 2 (S + 1) images, in chunks of
    batch_size // 2 thresholds; blends: 3; p(x): 1; ROAD: 2 per percentage. S = 20, 9 percentages: 106.
    """
    half = max(1, settings.batch_size // 2)
    points = settings.steps + 1
    calls = [2 * min(half, points - first) for first in range(0, points, half)] * 2
    calls += [3, 1] + [2] * len(settings.road_percentages)
    model = model.eval().to(device)
    inputs = {n: torch.randn(n, 3, size, size, device=device) for n in set(calls)}
    with torch.inference_mode():
        for n in inputs:
            model(inputs[n])  # warm-up (and cuDNN's choice of kernels)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for n in calls:
            model(inputs[n])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return sum(calls), time.perf_counter() - start


class _Free(torch.nn.Module):
    """A classifier that costs almost nothing: timing ``evaluate_map`` with it leaves the CPU-side work."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def cpu_side_seconds_per_photo(size: int, classes: int, settings: FaithfulnessSettings, photos: int = 3) -> float:
    """``evaluate_map``'s own work per photo, outside the model: rankings, perturbed copies, blur, ROAD's imputation.

    On a GPU the forward passes shrink; this part stays on the worker's CPU cores.
    """
    from mushcam.trust.faithfulness import evaluate_map

    model = _Free(classes).eval()
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(photos):
        image = torch.randn(3, size, size, generator=generator)
        evaluate_map(model, image, torch.rand(7, 7, generator=generator), 0, settings)
    return (time.perf_counter() - start) / photos


def run_local(args: argparse.Namespace, project: Path, settings: FaithfulnessSettings) -> dict[str, float]:
    from mushcam.trust.run import faithfulness_over_folder

    store = Path(tempfile.mkdtemp(dir=args.out)) / "local.sqlite"
    start = time.perf_counter()
    (summary,) = faithfulness_over_folder(args.data, load_manifest(project), store, ["gradcam"], [args.arch],
                                          settings, limit=args.photos, log=lambda line: None)
    wall = time.perf_counter() - start
    return {"photos": summary.n_images, "seconds": summary.seconds, "wall_seconds": wall,
            "photos_per_second": summary.n_images / summary.seconds, "peak_rss_mb": summary.peak_rss_mb or 0.0}


def run_ray(args: argparse.Namespace, project: Path, settings: FaithfulnessSettings, workers: int) -> dict:
    from mushcam.distributed.faithfulness import faithfulness_on_ray
    from mushcam.distributed.runtime import RayOptions

    store = Path(tempfile.mkdtemp(dir=args.out)) / f"ray-{workers}.sqlite"
    start = time.perf_counter()
    _, (pool,) = faithfulness_on_ray(args.data, load_manifest(project), store, ["gradcam"],
                                     RayOptions(workers=workers), [args.arch], settings, limit=args.photos,
                                     log=lambda line: None)
    wall = time.perf_counter() - start
    return {"workers": workers, "photos_per_second": pool.photos_per_second, "pass_seconds": pool.seconds,
            "wall_seconds": wall, "startup_seconds": wall - pool.seconds, "retried": pool.retried,
            "per_worker": [{"photos": w.photos, "busy_seconds": round(w.busy_seconds, 2),
                            "load_seconds": round(w.load_seconds, 2),
                            "peak_rss_mb": round((w.peak_rss_bytes or 0) / 2**20)} for w in pool.workers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ROOT/<Class>/<photo>")
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--arch", default="mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray runtime")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local run (a worker has 1)")
    parser.add_argument("--device", default="cpu", help="where the forward passes of one photo are timed (cuda: a GPU)")
    parser.add_argument("--parts-only", action="store_true",
                        help="only the per-photo parts (forward passes, CPU side): no local or Ray runs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    project = write_project(Path(args.data), args.out / "project", args.arch, args.size)
    settings = FaithfulnessSettings()  # the command's defaults: 20 steps, blur, ROAD at 10..90 %
    probe_before = probe_ms()
    model = build_model(args.arch, len(load_manifest(project).class_names))
    forwards, forward_s = forward_seconds_per_photo(model, args.size, settings, args.device)
    cpu_side_s = cpu_side_seconds_per_photo(args.size, len(load_manifest(project).class_names), settings)
    parts = {"arch": args.arch, "size": args.size, "device": args.device, "forwards_per_photo": forwards,
             "forward_seconds_per_photo": forward_s, "cpu_side_seconds_per_photo": cpu_side_s,
             "probe_ms": probe_before, "load_average": os.getloadavg()}
    if args.parts_only:
        print(json.dumps(parts, indent=2))
        return
    local = run_local(args, project, settings)
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        distributed = [run_ray(args, project, settings, workers) for workers in (1, 2)]
    finally:
        ray.shutdown()
    per_photo = local["seconds"] / local["photos"]
    result = {
        "host": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "probe_ms_before": probe_before,
                 "probe_ms_after": probe_ms(), "torch": torch.__version__},
        "arch": args.arch, "size": args.size, "settings": settings.to_dict(),
        "forwards_per_photo": forwards, "forward_seconds_per_photo": forward_s,
        "local": local, "seconds_per_photo": per_photo,
        "cpu_side_seconds_per_photo": cpu_side_s, "ray": distributed,
    }
    (args.out / "bench_ray.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
