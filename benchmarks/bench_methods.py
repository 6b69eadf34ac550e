"""Each CAM method against its peer's implementation of it (pytorch-grad-cam 1.5.7 or torchcam 0.5): time and memory.

    python benchmarks/bench_methods.py [--repeats 5] [--heavy-repeats 1] [--size 224]
        [--threads 2] [--device cpu|cuda] [--backbones ...] [--heavy-backbones ...] [--methods ...]

Every registered method has its peer (PEERS): pytorch-grad-cam for most, torchcam for ``cam``,
``smoothgradcampp``, ``sscam``, ``iscam`` and ``legrad``. ``legrad`` needs a ViT: it is timed on
torchvision's ``vit_b_16`` at ``--size`` (random weights, a random head), block 11, whatever
``--backbones`` says. A method that refuses a preset (CAM without a pooled linear head at the
layer) gets a "refused" row and its peer is not run. The perturbation methods (HEAVY) run only on
``--heavy-backbones`` (default: every backbone).

Per preset (random weights: the cost does not depend on their values), batch 1, the
explained class fixed, ours (``mushcam.cam.cam``) and the peer's same method run
interleaved (ours first on even repeats, theirs first on odd ones), so that a contended
moment on a shared host hits both alike; medians of wall and CPU time are reported, and the
ratio peer / ours of CPU time (the process's own, all threads).
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
from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss  # noqa: E402
from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model, get_layer  # noqa: E402

HEAVY = ("ablationcam", "scorecam", "sscam", "iscam")
TORCHCAM = {"cam": "CAM", "smoothgradcampp": "SmoothGradCAMpp", "sscam": "SSCAM", "iscam": "ISCAM", "legrad": "LeGrad"}
PGC = {
    "gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
    "layercam": "LayerCAM", "eigencam": "EigenCAM", "ablationcam": "AblationCAM", "scorecam": "ScoreCAM",
    "finercam": "FinerCAM", "eigengradcam": "EigenGradCAM", "gradcamelementwise": "GradCAMElementWise",
    "fullgrad": "FullGrad", "kpcacam": "KPCA_CAM", "shapleycam": "ShapleyCAM", "fem": "FEM", "refinecam": "RefineCAM",
}
VIT_LAYER = "encoder.layers.encoder_layer_11"


def peer_name(method: str) -> str:
    """Which peer implements ``method`` (the cost table's column)."""
    return "torchcam" if method in TORCHCAM else "pytorch-grad-cam" if method in PGC or method == "dff" else "?"


def torchcam_call(method: str, model: torch.nn.Module, layer_name: str, x: torch.Tensor,
                  target: int) -> Callable[[], object]:
    from torchcam import methods as tc

    def run() -> object:
        kind = getattr(tc, TORCHCAM[method])
        extractor = kind(model, layer_name) if method == "legrad" else kind(model, target_layer=layer_name,
                                                                            input_shape=tuple(x.shape[1:]))
        try:
            if method in ("smoothgradcampp", "legrad"):
                scores = model(x)
            else:
                with torch.no_grad():
                    scores = model(x)
            return extractor(target, scores)
        finally:
            extractor.remove_hooks()
            model.zero_grad(set_to_none=True)

    return run


def _pgc_release(extractor: object) -> None:
    bases = getattr(extractor, "base_cam_per_layer", None) or [getattr(extractor, "base_cam", extractor)]
    for base in bases:
        base.activations_and_grads.release()


def peer_call(method: str, model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
              target: int, layer_name: str = "") -> Callable[[], object]:
    if method in TORCHCAM:
        return torchcam_call(method, model, layer_name, x, target)
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import DeepFeatureFactorization
    from pytorch_grad_cam.refine_cam import RefineCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run() -> object:
        if method == "dff":
            extractor = DeepFeatureFactorization(model=model, target_layer=layer)
            try:
                return extractor(x, n_components=5)
            finally:
                extractor.activations_and_grads.release()
        kind = RefineCAM if method == "refinecam" else getattr(pgc, PGC[method])
        extractor = kind(model, [] if method == "fullgrad" else [layer])
        if method == "scorecam":
            extractor.batch_size = 32
        try:
            targets = None if method == "finercam" else [ClassifierOutputTarget(target)]
            return extractor(input_tensor=x, targets=targets)
        finally:
            _pgc_release(extractor)
            model.zero_grad(set_to_none=True)

    return run


def measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float | None, float]:
    """(wall milliseconds, extra megabytes, CPU milliseconds of this process) of one call.

    CPU time (all threads of this process) is what a loaded shared host disturbs least: waiting for
    a core does not count in it. Both are reported; the table's ratio is on CPU time."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = current_rss_bytes() if reset_peak_rss() else None  # no reset: no reading
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) * 1000
    cpu = (time.process_time() - cpu_start) * 1000
    if device.type == "cuda":
        extra = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = peak_rss_bytes()
        extra = None if peak is None or before is None else max(0, peak - before) / 2**20
    return elapsed, extra, cpu


def vit_model(size: int) -> torch.nn.Module:
    """torchvision's vit_b_16 at ``size`` px, random weights and a random head (LeGrad's benchmark model)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(image_size=size, num_classes=8)
    with torch.no_grad():
        model.heads.head.weight.normal_(0, 0.02)
    return model.eval()


def bench_backbone(backbone: str, methods: list[str], args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    model = (vit_model(args.size) if backbone == "vit_b_16" else build_model(backbone, 8)).eval().to(device)
    layer_name = VIT_LAYER if backbone == "vit_b_16" else DEFAULT_LAYERS[backbone]
    layer = get_layer(model, layer_name)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    target = 3
    with torch.inference_mode():
        model(x)
    forward_ms = []
    rows = []
    for method in methods:
        ours = lambda method=method: cam(model, x, layer_name, target, method=method)  # noqa: E731
        theirs = peer_call(method, model, layer, x, target, layer_name)
        try:
            ours()  # warm-up: first-call costs (allocator, kernels) out of the medians
        except MushcamError as refused:
            print(f"  {backbone:18s} {method:11s} refused: {refused}", flush=True)
            rows.append({"backbone": backbone, "method": method, "refused": str(refused)})
            continue
        if method not in HEAVY:
            theirs()
        repeats = args.heavy_repeats if method in HEAVY else args.repeats
        times = {"ours": [], "peer": []}
        cpu = {"ours": [], "peer": []}
        memory = {"ours": [], "peer": []}
        for r in range(repeats):
            order = (("ours", ours), ("peer", theirs)) if r % 2 == 0 else (("peer", theirs), ("ours", ours))
            for name, fn in order:
                ms, mb, cpu_ms = measure(fn, device)
                times[name].append(ms)
                cpu[name].append(cpu_ms)
                if mb is not None:
                    memory[name].append(mb)
            with torch.inference_mode():
                forward_ms.append(measure(lambda: model(x), device)[2])
        row = {
            "backbone": backbone, "method": method,
            "ours_ms": statistics.median(times["ours"]), "peer_ms": statistics.median(times["peer"]),
            "ours_cpu": statistics.median(cpu["ours"]), "peer_cpu": statistics.median(cpu["peer"]),
            "ours_mb": max(memory["ours"]) if memory["ours"] else float("nan"),
            "peer_mb": max(memory["peer"]) if memory["peer"] else float("nan"),
            "repeats": repeats,
        }
        rows.append(row)
        print(f"  {backbone:18s} {method:11s} ours {row['ours_ms']:9.1f} ms  peer {row['peer_ms']:9.1f} ms  "
              f"cpu {row['ours_cpu']:9.1f} / {row['peer_cpu']:9.1f} ms x{row['peer_cpu'] / row['ours_cpu']:6.2f}  "
              f"mem {row['ours_mb']:7.1f} / {row['peer_mb']:7.1f} MB", flush=True)
    for row in rows:
        row["forward_ms"] = statistics.median(forward_ms) if forward_ms else float("nan")
    return rows


def plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(backbone, its methods) in the order they run: LeGrad on the ViT only, HEAVY on --heavy-backbones only."""
    heavy = args.backbones if args.heavy_backbones is None else args.heavy_backbones
    runs = []
    for backbone in args.backbones:
        chosen = [m for m in args.methods if m != "legrad" and (m not in HEAVY or backbone in heavy)]
        if chosen:
            runs.append((backbone, chosen))
    if "legrad" in args.methods:
        runs.append(("vit_b_16", ["legrad"]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heavy-repeats", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--heavy-backbones", nargs="+", default=None)
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
    for backbone, methods in plan(args):
        rows += bench_backbone(backbone, methods, args, device)
    print(f"# probe after: {probe_ms():.1f} ms; total {time.perf_counter() - started:.0f} s\n")
    print("| model | method | peer | forward CPU ms | ours CPU ms | peer CPU ms | peer / ours (CPU) | ours wall ms "
          "| peer wall ms | ours extra MB | peer extra MB | our cost |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        if "refused" in row:
            print(f"| {row['backbone']} | {row['method']} | {peer_name(row['method'])} | | refused | | | | | | "
                  f"| {COSTS[row['method']]} |")
            continue
        print(f"| {row['backbone']} | {row['method']} | {peer_name(row['method'])} | {row['forward_ms']:.1f} "
              f"| {row['ours_cpu']:.1f} | {row['peer_cpu']:.1f} | **{row['peer_cpu'] / row['ours_cpu']:.2f}** "
              f"| {row['ours_ms']:.1f} | {row['peer_ms']:.1f} | {row['ours_mb']:.0f} | {row['peer_mb']:.0f} "
              f"| {COSTS[row['method']]} |")


if __name__ == "__main__":
    main()
