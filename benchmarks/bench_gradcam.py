"""Cost of one Grad-CAM call against one plain forward pass, ours and the peers'.

    .venv/bin/python benchmarks/bench_gradcam.py [--repeats 30] [--size 224] [--threads 2]

For each model (the three presets, the thesis's MushroomClassifier wrapper over ResNet-50
loaded from its checkpoint, and ConvNeXt-Tiny; random weights: cost does not depend on their values), batch 1, the
variants run interleaved in a rotating order (A B C D E, B C D E A, ...) so that a
contended moment on a shared host hits them alike; we report medians and the ratio to the
plain forward pass (inference mode). A calibration probe (ten 512x512 matmuls) is timed
before and after so that a noisy run can be recognised.

Memory: each (backbone, variant) runs in a fresh subprocess that builds the model and runs
one inference forward (so the weights and the forward's buffers are already resident),
resets the peak through /proc/self/clear_refs, makes one call, and reports VmHWM after the
call minus VmRSS before it: the extra memory the method needs beyond a forward pass.
(Repeated calls in one process would show ~0: the allocator reuses freed memory.)

``--pipeline BEFORE_TREE [AFTER_TREE]``: photos per second of the whole ``python -m mushcam gradcam``
command (random MobileNetV3-Large at 224 px over ``--photos`` shared test photos, fresh cache and
output folder each time) for two checkouts, interleaved in one run, beside ``evaluate`` over the
same photos and ``python -m mushcam --help``; wall and CPU seconds (user + system of the child),
medians, and whether the two trees' files and cache entries are byte-identical.
"""


from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from common import probe_ms  # noqa: E402  (benchmarks/common.py)

from mushcam.cam import grad_cam  # noqa: E402
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss  # noqa: E402
from mushcam.models import (  # noqa: E402
    BACKBONES,
    DEFAULT_LAYERS,
    build_architecture,
    build_model,
    get_layer,
    load_checkpoint,
    resolve_layer,
)

# Beside the presets: the thesis's wrapper (MushroomClassifier over ResNet-50, recognised from
# its checkpoint; the layer in the wrapper's own naming) and one other architecture.
MODELS: tuple[str, ...] = (*BACKBONES, "thesis_resnet50", "convnext_tiny")
LAYERS: dict[str, str] = {**DEFAULT_LAYERS, "thesis_resnet50": "backbone.layer4", "convnext_tiny": "features.7"}


def build(name: str) -> torch.nn.Module:
    """The model under test, random weights, eval mode (the wrapper goes through a checkpoint file)."""
    torch.manual_seed(0)
    if name in BACKBONES:
        return build_model(name, 9).eval()
    if name == "thesis_resnet50":
        import tempfile

        from torch import nn

        trunk = build_architecture("resnet50", 9)
        trunk.fc = nn.Identity()
        head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2048, 512), nn.ReLU(inplace=True), nn.Dropout(0.3),
                             nn.Linear(512, 9))
        state = {**{f"backbone.{k}": v for k, v in trunk.state_dict().items()},
                 **{f"classifier.{k}": v for k, v in head.state_dict().items()}}
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / "thesis.pt")
            return load_checkpoint(Path(folder) / "thesis.pt", "resnet50").model
    return build_architecture(name, 9).eval()


def variants(model: torch.nn.Module, backbone: str, x: torch.Tensor, target: int) -> dict[str, Callable[[], object]]:
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TorchCamGradCAM

    layer_name = LAYERS[backbone]
    layer = get_layer(model, layer_name)
    pgc = GradCAM(model=model, target_layers=[layer])  # registers hooks for good: used alone below
    captum = LayerGradCam(model, layer)

    def forward() -> object:
        with torch.inference_mode():
            return model(x)

    def ours() -> object:
        return grad_cam(model, x, layer_name, target).cams

    def pytorch_grad_cam() -> object:
        return pgc(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    def captum_call() -> object:
        return captum.attribute(x, target=target, relu_attributions=True)

    def torchcam_call() -> object:
        extractor = TorchCamGradCAM(model, target_layer=resolve_layer(model, layer_name))
        try:
            return extractor(target, model(x))
        finally:
            extractor.remove_hooks()

    calls = {"forward": forward, "mushcam": ours, "grad-cam": pytorch_grad_cam, "captum": captum_call,
             "torchcam": torchcam_call}
    # pytorch-grad-cam keeps its hooks on the layer between calls; they would tax everyone else.
    pgc.activations_and_grads.release()

    def pgc_with_hooks() -> object:
        from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

        pgc.activations_and_grads = ActivationsAndGradients(model, [layer], None, False)
        try:
            return pytorch_grad_cam()
        finally:
            pgc.activations_and_grads.release()
            model.zero_grad(set_to_none=True)

    calls["grad-cam"] = pgc_with_hooks
    return calls


def measure(backbone: str, size: int, repeats: int) -> dict[str, dict[str, float]]:
    model = build(backbone)
    x = torch.randn(1, 3, size, size)
    calls = variants(model, backbone, x, target=3)
    names = list(calls)
    for name in names:  # warm-up
        for _ in range(3):
            calls[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            calls[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(times["forward"])
    return {
        name: {
            "ms": statistics.median(times[name]),
            "ratio": statistics.median(times[name]) / base,
            "peak_growth_mb": peak_growth_mb(backbone, size, name),
        }
        for name in names
    }


def peak_growth_mb(backbone: str, size: int, variant: str) -> float:
    """Run one call of ``variant`` in a fresh process; its peak RSS growth in MB."""
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", backbone, variant, "--size", str(size)],
        capture_output=True, text=True, check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def memory_child(backbone: str, variant: str, size: int) -> None:
    model = build(backbone)
    x = torch.randn(1, 3, size, size)
    calls = variants(model, backbone, x, target=3)
    calls["forward"]()
    gc.collect()
    if not reset_peak_rss():
        print("nan")
        return
    before = current_rss_bytes()
    calls[variant]()
    print((peak_rss_bytes() - before) / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", nargs="+", type=Path, metavar="TREE",
                        help="time the gradcam command of these checkouts (before, after: default this one)")
    parser.add_argument("--photos", type=int, default=40, help="shared test photos for --pipeline (default 40)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="which models (default: all)")
    parser.add_argument("--memory-child", nargs=2, metavar=("BACKBONE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.pipeline:
        from bench_gradcam_pipeline import run_pipeline_benchmark

        trees = [*args.pipeline, Path(__file__).resolve().parent.parent][:2]
        run_pipeline_benchmark(trees, args.photos, args.repeats)
        return
    if args.memory_child:
        memory_child(*args.memory_child, args.size)
        return
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"calibration probe before: {probe_ms():.1f} ms")
    rows = []
    for backbone in args.models:
        results = measure(backbone, args.size, args.repeats)
        for name, r in results.items():
            rows.append((backbone, name, r["ms"], r["ratio"], r["peak_growth_mb"]))
    print(f"calibration probe after:  {probe_ms():.1f} ms")
    print(f"\n{args.size}x{args.size}, batch 1, median of {args.repeats} interleaved runs")
    print("| backbone | method | median ms | x forward | extra peak RSS over a forward (MB) |")
    print("|---|---|---:|---:|---:|")
    for backbone, name, ms, ratio, growth in rows:
        print(f"| {backbone} | {name} | {ms:.1f} | {ratio:.2f} | {growth:.1f} |")


if __name__ == "__main__":
    main()
