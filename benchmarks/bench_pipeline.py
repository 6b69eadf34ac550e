"""Peak memory and wall time of batch Grad-CAM: the naive way against ``python -m mushcam gradcam``.

    .venv/bin/python benchmarks/bench_pipeline.py [--repeats 3] [--limit N] [--threads 1]

Data: the test split of ../shared/data/mushrooms (235 photos, 8 genera); ``--limit N``
takes N of them, evenly spaced, when the full set is too slow on a loaded host. Models:
ResNet-50, EfficientNet-B0 and MobileNetV3-Large with random weights written by this
script at 224 px (weights' values change neither memory nor time).

Variants, each in its own fresh Python process (so that each peak is its own: VmHWM read
from /proc/self/status in the measured process; ``ru_maxrss`` would be inherited):

- ``ref:<backbone>`` the floor: load one model, decode one photo, one forward pass under
  ``no_grad`` (batch 1). The largest of these is "the largest single model's inference
  peak" that the pipeline's peak is held against (target: at most +10 %).
- ``naive``  what a notebook does: all three models loaded (parameters requiring grad),
  every photo decoded and preprocessed up front and kept, a full backward pass per image
  (autograd graph of the whole network, ``.grad`` filled for every parameter, activation
  hook + ``retain_grad``), every map kept, then the same files written at the end.
- ``pipeline`` ``python -m mushcam gradcam`` (batch 1) into an empty cache and folder.
- ``cached``  the same command again: the re-run, served by the cache (target: >= 10x
  faster than ``pipeline``, end to end).
- ``rerender`` the same command into a new output folder with the warm cache: every file
  is drawn again from the cached maps, no model call (for information).

All variants write the same files (overlay, heatmap, combined PNGs and the raw map).
Variants are interleaved (ref, naive, pipeline, cached, rerender; repeated), the table
gives medians, and a calibration probe (ten 512x512 matmuls) is timed before and after.
``--threads`` sets OMP_NUM_THREADS for every variant alike (default 1: on this shared
2-core host, two threads waiting on each other made forward passes up to 18x slower).
Times are end to end (process start to exit, imports included), as a user sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import probe_ms  # benchmarks/common.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mushrooms" / "test"
BACKBONES = ("resnet50", "efficientnet_b0", "mobilenet_v3_large")
VIEWS = ("overlay", "heatmap", "combined")
THESIS_MB = {"resnet50": "200-250", "efficientnet_b0": "100-150", "mobilenet_v3_large": "60-100"}
MB = 2**20


# ----------------------------------------------------------------------------- measured processes


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def worker_reference(manifest_dir: Path, backbone: str, image: Path) -> dict[str, object]:
    """One model, one photo, one forward pass under no_grad: the inference floor."""
    import torch

    sys.path.insert(0, str(ROOT))

    from mushcam.data import load_image, preprocess
    from mushcam.manifest import load_manifest
    from mushcam.models import load_model

    after_import = _status_bytes("VmRSS")
    manifest = load_manifest(manifest_dir)
    model = load_model(backbone, manifest.checkpoint_path(backbone), num_classes=manifest.num_classes)
    load_peak, after_load = _status_bytes("VmHWM"), _status_bytes("VmRSS")
    _reset_peak()
    with torch.no_grad():
        logits = model(preprocess(load_image(image), manifest.input).unsqueeze(0))
    assert logits.shape == (1, manifest.num_classes)
    work_peak = _status_bytes("VmHWM")
    return {"after_import": after_import, "after_load": after_load, "load_peak": load_peak,
            "work_peak": work_peak, "peak": max(load_peak, work_peak)}


def worker_naive(manifest_dir: Path, files: list[Path], data_root: Path, out: Path) -> dict[str, object]:
    """Everything in memory at once, full backward per image; same output files as the pipeline."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from mushcam.data import load_image, preprocess
    from mushcam.explain import Explanation, render_explanation
    from mushcam.manifest import load_manifest
    from mushcam.models import DISPLAY_NAMES, get_layer, load_model
    from mushcam.render import fit_within, to_png

    after_import = _status_bytes("VmRSS")
    manifest = load_manifest(manifest_dir)
    models = {b: load_model(b, manifest.checkpoint_path(b), num_classes=manifest.num_classes) for b in BACKBONES}
    images = [load_image(path) for path in files]
    inputs = [preprocess(image, manifest.input) for image in images]
    results: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, int]] = {}
    for backbone, model in models.items():
        saved: dict[str, torch.Tensor] = {}
        handle = get_layer(model, manifest.models[backbone].layer).register_forward_hook(
            lambda module, args, output, saved=saved: saved.__setitem__("a", output)
        )
        for index, x in enumerate(inputs):
            model.zero_grad()
            logits = model(x.unsqueeze(0))
            activation = saved["a"]
            activation.retain_grad()
            target = int(logits.argmax(1))
            logits[0, target].backward()
            weights = activation.grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * activation).sum(dim=1))[0].detach()
            results[(backbone, index)] = (cam, torch.softmax(logits.detach(), 1)[0], target)
        handle.remove()
    for (backbone, index), (cam, probabilities, target) in results.items():
        explanation = Explanation(cam, probabilities, target, manifest.models[backbone].layer)
        views = render_explanation(fit_within(images[index], 1024), explanation, manifest, DISPLAY_NAMES[backbone])
        pixels = {name.lower(): array for name, array in views.as_dict().items()}
        stem = out / backbone / files[index].relative_to(data_root).as_posix()
        stem.parent.mkdir(parents=True, exist_ok=True)
        for view in VIEWS:
            Path(f"{stem}.{view}.png").write_bytes(to_png(pixels[view]))
        np.save(f"{stem}.cam.npy", cam.numpy())
    return {"after_import": after_import, "peak": _status_bytes("VmHWM"), "maps": len(results)}


# ----------------------------------------------------------------------------- orchestration


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} … failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def write_checkpoints(folder: Path, classes: list[str]) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from mushcam.manifest import ClassInfo, InputSpec, Manifest, ModelEntry, save_manifest
    from mushcam.models import DEFAULT_LAYERS, build_model

    folder.mkdir(parents=True, exist_ok=True)
    for seed, backbone in enumerate(BACKBONES):
        torch.manual_seed(seed)
        torch.save(build_model(backbone, len(classes)).state_dict(), folder / f"{backbone}.pt")
    manifest = Manifest(
        classes=tuple(ClassInfo(name) for name in classes),
        input=InputSpec(size=224, resize="squash"),
        models={b: ModelEntry(b, f"{b}.pt", DEFAULT_LAYERS[b]) for b in BACKBONES},
        root=folder,
    )
    save_manifest(manifest, folder / "manifest.json")


def pick_files(data: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit is None or limit >= len(files):
        return files
    step = len(files) / limit
    return [files[int(i * step)] for i in range(limit)]


def png_levels(files: list[Path], classes: list[str], levels: tuple[int, ...] = (1, 6)) -> dict[int, tuple[float, int]]:
    """Encoding time and size of the pipeline's views at several zlib levels (in-process)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from mushcam.data import load_image
    from mushcam.explain import Explanation, render_explanation
    from mushcam.manifest import ClassInfo, Manifest
    from mushcam.render import to_png

    manifest = Manifest(classes=tuple(ClassInfo(c) for c in classes))
    generator = torch.Generator().manual_seed(0)
    times: dict[int, list[float]] = {level: [] for level in levels}
    sizes = dict.fromkeys(levels, 0)
    for path in files:
        explanation = Explanation(torch.rand(7, 7, generator=generator), torch.full((len(classes),), 1 / len(classes)),
                                  0, "layer4")
        views = render_explanation(load_image(path), explanation, manifest, "ResNet-50")
        for pixels in (views.overlay, views.heatmap, views.combined):
            for level in levels:
                start = time.perf_counter()
                sizes[level] += len(to_png(pixels, level))
                times[level].append((time.perf_counter() - start) * 1000)
    return {level: (statistics.median(times[level]), sizes[level]) for level in levels}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="ImageFolder root (default: the shared test split)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="use N photos, evenly spaced (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for every variant (default 1)")
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "bench_pipeline.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one measured variant
    parser.add_argument("--args", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_worker(args: argparse.Namespace) -> int:
    """One measured variant, in this (fresh) process: its numbers as one JSON line."""
    spec = json.loads(args.args)
    if args.worker == "reference":
        result = worker_reference(Path(spec["manifest"]), spec["backbone"], Path(spec["image"]))
    else:
        result = worker_naive(Path(spec["manifest"]), [Path(f) for f in spec["files"]], Path(spec["root"]),
                              Path(spec["out"]))
    print(json.dumps(result))
    return 0


def pipeline_entry(seconds: float, report: dict) -> dict[str, float]:
    """One pipeline run's numbers from its wall time and its ``--summary`` file."""
    entry = {"seconds": seconds, "inner_seconds": report["seconds"],
             "after_import": report["rss_after_import_bytes"],
             "peak": report["process_peak_rss_bytes"],
             "computed": sum(m["computed"] for m in report["models"])}
    fields = {"peak": "peak_rss_bytes", "rss_start": "rss_start_bytes",
              "rss_after_load": "rss_after_load_bytes", "work_peak": "work_peak_rss_bytes"}
    for model in report["models"]:
        for short, field in fields.items():
            entry[f"{short}:{model['backbone']}"] = model[field]
    return entry


def one_repeat(args: argparse.Namespace, work: Path, run_dir: Path, files: list[Path], data_args: list[str],
               env: dict[str, str], results: dict[str, list[dict[str, float]]]) -> None:
    """Every variant once, in order: the references, the naive loop, then the pipeline three ways."""
    for backbone in BACKBONES:
        spec = {"manifest": str(work / "ckpt"), "backbone": backbone, "image": str(files[0])}
        seconds, stdout = run_process(
            [sys.executable, __file__, "--worker", "reference", "--args", json.dumps(spec)], env)
        results.setdefault(f"ref:{backbone}", []).append({"seconds": seconds, **json.loads(stdout)})
    spec = {"manifest": str(work / "ckpt"), "files": [str(f) for f in files], "root": str(args.data),
            "out": str(run_dir / "naive")}
    seconds, stdout = run_process(
        [sys.executable, __file__, "--worker", "naive", "--args", json.dumps(spec)], env)
    results.setdefault("naive", []).append({"seconds": seconds, **json.loads(stdout)})
    for name, out in (("pipeline", "out"), ("cached", "out"), ("rerender", "out2")):
        summary = run_dir / f"{name}.json"
        command = [sys.executable, "-m", "mushcam", "gradcam", "--data", *data_args,
                   "--manifest", str(work / "ckpt"), "--cache", str(run_dir / "cache"),
                   "--out", str(run_dir / out), "--device", "cpu", "--batch-size", "1",
                   "--views", ",".join(VIEWS), "--summary", str(summary)]
        seconds, _ = run_process(command, env)
        results.setdefault(name, []).append(pipeline_entry(seconds, json.loads(summary.read_text())))


def measure(args: argparse.Namespace, files: list[Path], classes: list[str],
            env: dict[str, str]) -> tuple[dict[str, list[dict[str, float]]], dict[str, float]]:
    """``args.repeats`` interleaved repeats in a temporary folder: the results and the probes."""
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    results: dict[str, list[dict[str, float]]] = {}
    probes = {"before": probe_ms()}
    try:
        write_checkpoints(work / "ckpt", classes)
        data_args = [str(args.data)] if args.limit is None or args.limit >= 235 else [str(f) for f in files]
        print(f"{len(files)} photos, {args.repeats} repeats, {args.threads} thread(s); work in {work}", file=sys.stderr)
        for repeat in range(args.repeats):
            run_dir = work / f"run{repeat}"
            one_repeat(args, work, run_dir, files, data_args, env, results)
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        probes["after"] = probe_ms()
        shutil.rmtree(work, ignore_errors=True)
    return results, probes


def variant_lines(args: argparse.Namespace, files: list[Path], results: dict[str, list[dict[str, float]]],
                  probes: dict[str, float], torch_version: str) -> list[str]:
    """The table of variants (time, peak memory) and the ratios the targets are stated in."""

    def med(name: str, key: str) -> float:
        return median([float(r[key]) for r in results[name] if r.get(key) is not None])

    ref_peak = {b: med(f"ref:{b}", "peak") for b in BACKBONES}
    largest = max(BACKBONES, key=lambda b: ref_peak[b])
    lines = [
        f"{len(files)} photos of {args.data}, {args.repeats} interleaved repeats, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}, torch {torch_version}; "
        f"probe (10 matmuls 512x512) {probes['before']:.1f} ms before, {probes['after']:.1f} ms after",
        "",
        "| variant | wall s (median) | peak RSS MB | peak above import MB | peak / largest inference peak |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in [*(f"ref:{b}" for b in BACKBONES), "naive", "pipeline", "cached", "rerender"]:
        peak = med(name, "peak")
        above = median([float(r["peak"] - r["after_import"]) for r in results[name]])
        lines.append(f"| {name} | {med(name, 'seconds'):.1f} | {peak / MB:.0f} | {above / MB:.0f} | "
                     f"{peak / ref_peak[largest]:.2f} |")
    speedup = med("pipeline", "seconds") / med("cached", "seconds")
    return lines + [
        "",
        f"pipeline peak / largest single-model inference peak ({largest}): "
        f"{med('pipeline', 'peak') / ref_peak[largest]:.3f} (target <= 1.10)",
        f"naive peak / pipeline peak: {med('naive', 'peak') / med('pipeline', 'peak'):.2f}; "
        f"naive time / pipeline time: {med('naive', 'seconds') / med('pipeline', 'seconds'):.2f}",
        f"cached re-run speed-up, end to end: {speedup:.1f}x (target >= 10x); inside the process (imports "
        f"excluded): {med('pipeline', 'inner_seconds') / med('cached', 'inner_seconds'):.1f}x; re-render from cache "
        f"into a new folder: {med('pipeline', 'seconds') / med('rerender', 'seconds'):.1f}x end to end",
        f"seconds inside the process: pipeline {med('pipeline', 'inner_seconds'):.2f}, cached "
        f"{med('cached', 'inner_seconds'):.2f}, rerender {med('rerender', 'inner_seconds'):.2f}",
        f"maps computed per run: pipeline {med('pipeline', 'computed'):.0f}, cached {med('cached', 'computed'):.0f}, "
        f"rerender {med('rerender', 'computed'):.0f}",
    ]


def memory_lines(results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Per model: resident weights, load peaks and working memory per image, against the thesis."""
    lines = [
        "",
        "| model | weights resident MB | load peak above import MB (ref / pipeline) | "
        "working memory per image MB (ref forward / pipeline Grad-CAM+render) | thesis MB per image |",
        "|---|---:|---:|---:|---:|",
    ]
    for b in BACKBONES:
        ref = results[f"ref:{b}"]
        weights = median([float(r["after_load"] - r["after_import"]) for r in ref])
        ref_load = median([float(r["load_peak"] - r["after_import"]) for r in ref])
        ref_work = median([float(r["work_peak"] - r["after_load"]) for r in ref])
        runs = results["pipeline"]
        pipe_load = median([float(r[f"peak:{b}"] - r["after_import"]) for r in runs])
        pipe_work = median([float(r[f"work_peak:{b}"] - r[f"rss_after_load:{b}"]) for r in runs])
        lines.append(f"| {b} | {weights / MB:.0f} | {ref_load / MB:.0f} / {pipe_load / MB:.0f} | "
                     f"{ref_work / MB:.0f} / {pipe_work / MB:.0f} | {THESIS_MB[b]} |")
    return lines


def main() -> int:
    args = parse_args()
    if args.worker:
        return run_worker(args)
    if not args.data.is_dir():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    files = pick_files(args.data, args.limit)
    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), PYTHONHASHSEED="0")
    import torch

    torch.set_num_threads(args.threads)
    results, probes = measure(args, files, classes, env)
    lines = variant_lines(args, files, results, probes, torch.__version__) + memory_lines(results)
    lines += ["", "PNG zlib level over the views of the photos (3 views x photos, interleaved, median per PNG):", "",
              "| level | ms per PNG | total MB |", "|---|---:|---:|"]
    for level, (ms, size) in png_levels(files, classes).items():
        lines.append(f"| {level} | {ms:.1f} | {size / 1e6:.2f} |")
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"files": len(files), "threads": args.threads, "probes_ms": probes,
                                     "results": results, "table": lines}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
