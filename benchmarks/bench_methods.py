"""Each CAM method against pytorch-grad-cam 1.5.7's implementation of it: time and memory.

    python benchmarks/bench_methods.py [--repeats 5] [--heavy-repeats 1] [--size 224]
        [--threads 2] [--device cpu|cuda] [--backbones ...] [--methods ...]

Per preset (random weights: the cost does not depend on their values), batch 1, the
explained class fixed, ours (``mushcam.cam.cam``) and the peer's same method run
interleaved (ours first on even repeats, theirs first on odd ones), so that a contended
moment on a shared host hits both alike; medians and the ratio peer / ours are reported.
The gradient methods and Eigen-CAM repeat ``--repeats`` times, Ablation-CAM and Score-CAM
(thousands of forward passes each on ResNet-50) ``--heavy-repeats`` times. A plain
inference forward pass is timed beside them, and a calibration probe (ten 512x512
matmuls) before and after.

The peer's extractor is built inside its timed call and released after it: its hooks stay
registered for the extractor's life and would otherwise also fire during our calls.
Its ``__call__`` min-max normalises and resizes the map (a few milliseconds at most);
ours returns the raw map. Peer batch sizes: AblationCAM 32 (its default), ScoreCAM 32
(ours too; its default is 16).

Memory: before each call the peak is reset (/proc/self/clear_refs on CPU,
``torch.cuda.reset_peak_memory_stats`` on CUDA); reported is the peak during the call
minus the resident size before it: the extra memory the method needs. On CPU, freed
memory that the allocator keeps can hide part of a later call's need, so the numbers are
lower bounds, best compared within a row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the peer prints a progress bar per batch

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from common import probe_ms  # noqa: E402  (benchmarks/common.py)

from mushcam.cam import COSTS, METHODS, cam  # noqa: E402
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss  # noqa: E402
from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model, get_layer  # noqa: E402

HEAVY = ("ablationcam", "scorecam")


def peer_call(method: str, model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
              target: int) -> Callable[[], object]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = {
        "gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
        "ablationcam": pgc.AblationCAM, "scorecam": pgc.ScoreCAM,
    }

    def run() -> object:
        extractor = classes[method](model=model, target_layers=[layer])
        if method == "scorecam":
            extractor.batch_size = 32
        try:
            return extractor(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        finally:
            extractor.activations_and_grads.release()
            model.zero_grad(set_to_none=True)

    return run


def measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    """(milliseconds, extra megabytes) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = current_rss_bytes() if reset_peak_rss() else None  # no reset: no reading
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) * 1000
    if device.type == "cuda":
        extra = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = peak_rss_bytes()
        extra = None if peak is None or before is None else max(0, peak - before) / 2**20
    return elapsed, extra


def bench_backbone(backbone: str, methods: list[str], args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(backbone, 8).eval().to(device)
    layer_name = DEFAULT_LAYERS[backbone]
    layer = get_layer(model, layer_name)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    target = 3
    with torch.inference_mode():
        model(x)
    forward_ms = []
    rows = []
    for method in methods:
        ours = lambda method=method: cam(model, x, layer_name, target, method=method)  # noqa: E731
        theirs = peer_call(method, model, layer, x, target)
        ours()  # warm-up: first-call costs (allocator, kernels) out of the medians
        if method not in HEAVY:
            theirs()
        repeats = args.heavy_repeats if method in HEAVY else args.repeats
        times = {"ours": [], "peer": []}
        memory = {"ours": [], "peer": []}
        for r in range(repeats):
            order = (("ours", ours), ("peer", theirs)) if r % 2 == 0 else (("peer", theirs), ("ours", ours))
            for name, fn in order:
                ms, mb = measure(fn, device)
                times[name].append(ms)
                if mb is not None:
                    memory[name].append(mb)
            with torch.inference_mode():
                forward_ms.append(measure(lambda: model(x), device)[0])
        row = {
            "backbone": backbone, "method": method,
            "ours_ms": statistics.median(times["ours"]), "peer_ms": statistics.median(times["peer"]),
            "ours_mb": max(memory["ours"]) if memory["ours"] else float("nan"),
            "peer_mb": max(memory["peer"]) if memory["peer"] else float("nan"),
            "repeats": repeats,
        }
        rows.append(row)
        print(f"  {backbone:18s} {method:11s} ours {row['ours_ms']:9.1f} ms  peer {row['peer_ms']:9.1f} ms  "
              f"x{row['peer_ms'] / row['ours_ms']:6.2f}  mem {row['ours_mb']:7.1f} / {row['peer_mb']:7.1f} MB",
              flush=True)
    for row in rows:
        row["forward_ms"] = statistics.median(forward_ms)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heavy-repeats", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    import pytorch_grad_cam

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"device {device}{' ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, "
          f"{args.size} px, batch 1, pytorch-grad-cam {getattr(pytorch_grad_cam, '__version__', '1.5.7')}")
    print(f"# probe before: {probe_ms():.1f} ms", flush=True)
    started = time.perf_counter()
    rows = []
    for backbone in args.backbones:
        rows += bench_backbone(backbone, args.methods, args, device)
    print(f"# probe after: {probe_ms():.1f} ms; total {time.perf_counter() - started:.0f} s\n")
    print("| model | method | forward ms | ours ms | pytorch-grad-cam ms | peer / ours | ours extra MB "
          "| peer extra MB | our cost |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['backbone']} | {row['method']} | {row['forward_ms']:.1f} | {row['ours_ms']:.1f} "
              f"| {row['peer_ms']:.1f} | {row['peer_ms'] / row['ours_ms']:.2f} | {row['ours_mb']:.0f} "
              f"| {row['peer_mb']:.0f} | {COSTS[row['method']]} |")


if __name__ == "__main__":
    main()
