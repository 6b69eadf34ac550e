"""Errors page interaction cost on a 10,000-row store, and evaluation throughput per backbone.

    .venv/bin/python benchmarks/bench_errors.py [--rows 10000] [--repeats 15] [--eval-images 32]
                                                [--eval-repeats 3] [--threads 2] [--skip-eval]

Part 1, filtering and paging (the issue's target: <= 200 ms per interaction). A store with
one run of ``--rows`` predictions over the thesis's 9 genera is written to a temporary
folder. Measured, as medians over ``--repeats`` rounds whose variants run interleaved in a
rotating order:

- ``library``: one interaction in the library alone: :func:`mushcam.errors.matching_rows`
  + :func:`mushcam.errors.page_of` + :func:`mushcam.errors.display_rows` for 25 rows, for
  six different filters (error kind, confidence range, class, sort order, a later page);
- ``page``: one whole rerun of ``pages/3_Errors.py`` under Streamlit's AppTest after a
  widget change (error kind, confidence slider, true class, sort, page number), with the
  store, the model and the Grad-CAM maps already cached (as after the first view): what a
  user waits for on the server per interaction, minus the browser's drawing. The model is a
  random-weights MobileNetV3 at 64 px, so that the maps cost little; the rest of the rerun
  does not depend on it.
- ``load``: the first read of the store (SQLite to NumPy columns + error kinds), paid once
  per store version (the page caches it).

Part 2, evaluation throughput: :func:`mushcam.evaluate.predict_images` (read, hash, decode,
preprocess to 224 px, forward under inference_mode, softmax) on ``--eval-images`` JPEG
files of 500x375, random weights, per backbone at batch 1 and batch 16; interleaved rounds,
median images/second.

A calibration probe (ten 512x512 matmuls) is timed before and after each part so that a
noisy run can be recognised: the host is shared.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere

from common import probe_ms  # noqa: E402  (benchmarks/common.py)

sys.path.insert(0, str(ROOT / "tests"))

from mushcam import errors, store  # noqa: E402
from mushcam.data import image_sha256  # noqa: E402
from mushcam.manifest import THESIS_CLASSES  # noqa: E402
from mushcam.models import BACKBONES, DISPLAY_NAMES, build_model, file_sha256  # noqa: E402


def rotating(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Run the variants ``repeats`` times in a rotating order; milliseconds per call."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def write_store(folder: Path, rows: int) -> tuple[Path, Path, Path]:
    """A checkpoint folder (MobileNetV3, 9 thesis genera, 64 px), 9 tiny images and a store of ``rows`` rows."""
    from factories import make_image, write_manifest

    classes = list(THESIS_CLASSES)
    ckpt = folder / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), classes=classes)
    data = folder / "data"
    rng = np.random.default_rng(0)
    true = rng.integers(0, len(classes), rows)
    # a weak model: right 60% of the time, else a random other class; confidence spread over (1/9, 1)
    wrong = rng.random(rows) > 0.6
    pred = np.where(wrong, (true + rng.integers(1, len(classes), rows)) % len(classes), true)
    logits = rng.normal(0, 1.5, (rows, len(classes)))
    logits[np.arange(rows), pred] += rng.uniform(0, 5, rows)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = probabilities.argmax(1)
    paths = [f"{classes[t][0]}/img_{i:05d}.jpg" for i, t in enumerate(true)]
    hashes = []
    for c, (name, _) in enumerate(classes):  # one picture per class, hard-linked under every row's name
        (data / name).mkdir(parents=True, exist_ok=True)
        make_image(96, 64, seed=c).save(data / name / "source.jpg")
        hashes.append(image_sha256((data / name / "source.jpg").read_bytes()))
    for path, t in zip(paths, true, strict=True):
        os.link(data / classes[t][0] / "source.jpg", data / path)
    from mushcam.manifest import load_manifest

    manifest = load_manifest(ckpt)
    order = np.argsort(np.asarray(paths))
    run = store.RunRecord(
        backbone="mobilenet_v3_large", checkpoint_path=str(ckpt / "mobilenet_v3_large.pt"),
        checkpoint_sha256=file_sha256(ckpt / "mobilenet_v3_large.pt"), layer="features.16",
        data_root=str(data.resolve()), manifest=manifest.to_dict(), started_at="2026-11-26T00:00:00+00:00",
        finished_at="2026-11-26T00:10:00+00:00", versions={}, batch_size=16, seconds=600.0, n_images=rows,
    )
    predictions = store.Predictions(
        image_paths=tuple(paths[i] for i in order), image_sha256=tuple(hashes[true[i]] for i in order),
        true_idx=true[order], pred_idx=pred[order], confidence=probabilities.max(1)[order],
        probabilities=probabilities[order].astype(np.float32),
    )
    out = folder / "results.sqlite"
    store.save_run(out, run, predictions)
    return ckpt, data, out


def bench_filtering(rows: int, repeats: int) -> None:
    print(f"\n## Filtering and paging: a store of {rows:,} rows (one run, 9 classes)\n")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, _data, out = write_store(Path(tmp), rows)
        size_mb = out.stat().st_size / 1e6
        load_times = []
        for _ in range(5):
            start = time.perf_counter()
            contents = store.load_store(out)
            run = contents.runs[0]
            table = errors.run_table(run, contents.predictions[run.run_id])
            load_times.append((time.perf_counter() - start) * 1000)
        names = run.class_names
        filters = {
            "errors, most confident first": errors.ErrorFilter(),
            "dangerous only": errors.ErrorFilter(kind="dangerous"),
            "confidence 0.3-0.7": errors.ErrorFilter(confidence=(0.3, 0.7)),
            "true Amanita, all kinds": errors.ErrorFilter(true_idx=names.index("Amanita"), kind="all"),
            "low confidence, least confident first": errors.ErrorFilter(kind="low_confidence",
                                                                        order="least_confident_first"),
        }

        def interaction(flt: errors.ErrorFilter, page: int = 1) -> Callable[[], object]:
            def call() -> object:
                found = errors.matching_rows(table, flt)
                shown = errors.page_of(found, page, 25)
                return errors.display_rows(table, shown.rows)

            return call

        variants = {name: interaction(flt) for name, flt in filters.items()}
        variants["all rows, page 100"] = interaction(errors.ErrorFilter(kind="all"), page=100)
        before = probe_ms()
        library = rotating(variants, max(repeats, 30))
        after = probe_ms()
        counts = {name: len(errors.matching_rows(table, flt)) for name, flt in filters.items()}
        print(f"store file {size_mb:.1f} MB; first read + error kinds: median {statistics.median(load_times):.0f} ms "
              f"(5 reads; paid once per store version)")
        print(f"probe before {before:.1f} ms, after {after:.1f} ms\n")
        print("| library interaction (filter + sort + page of 25) | matching rows | median ms | max ms |")
        print("|---|---:|---:|---:|")
        for name, values in library.items():
            count = counts.get(name, rows)
            print(f"| {name} | {count:,} | {statistics.median(values):.2f} | {max(values):.2f} |")

        bench_page(ckpt, out, repeats)


def bench_page(ckpt: Path, out: Path, repeats: int) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["MUSHCAM_CHECKPOINTS"] = str(ckpt)
    os.environ["MUSHCAM_RESULTS"] = str(out)
    os.environ["MUSHCAM_DATA"] = str(out.parent / "data")  # the page reads images only from the user's folder
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "pages" / "3_Errors.py"), default_timeout=120)
    start = time.perf_counter()
    at.run()
    first = (time.perf_counter() - start) * 1000
    if at.exception:
        raise RuntimeError([e.value for e in at.exception])
    kinds = itertools.cycle(["dangerous", "all", "low_confidence", "errors"])
    confidences = itertools.cycle([(0.2, 0.9), (0.5, 1.0), (0.0, 1.0)])
    classes = itertools.cycle(["Amanita", "(any)", "Boletus"])
    orders = itertools.cycle(["least_confident_first", "path", "confident_first"])

    def kind() -> None:
        at.selectbox(key="err_kind").select(next(kinds)).run()

    def slider() -> None:
        at.slider(key="err_conf").set_value(next(confidences)).run()

    def true_class() -> None:
        at.selectbox(key="err_true").select(next(classes)).run()

    def order() -> None:
        at.selectbox(key="err_order").select(next(orders)).run()

    def next_page() -> None:
        widget = at.number_input(key="err_page")
        widget.set_value(2 if widget.value == 1 else 1).run()

    variants = {"error kind": kind, "confidence slider": slider, "true class": true_class, "sort order": order,
                "next page": next_page}
    for _ in range(2):  # warm: the maps of the images shown get computed and cached
        for call in variants.values():
            call()
    before = probe_ms()
    times = rotating(variants, repeats)
    after = probe_ms()
    if at.exception:
        raise RuntimeError([e.value for e in at.exception])
    print(f"\nwhole page rerun (AppTest, in-process), first view incl. model load and maps: {first:.0f} ms")
    print(f"probe before {before:.1f} ms, after {after:.1f} ms\n")
    print("| page interaction (whole rerun, caches warm) | median ms | max ms |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.0f} | {max(values):.0f} |")
    all_values = [v for values in times.values() for v in values]
    print(f"| **all {len(all_values)} interactions** | **{statistics.median(all_values):.0f}** | "
          f"**{max(all_values):.0f}** |")


def bench_eval(n_images: int, repeats: int) -> None:
    from factories import make_image

    from mushcam.evaluate import TestImage, predict_images
    from mushcam.manifest import InputSpec

    print(f"\n## Evaluation throughput: {n_images} JPEG files of 500x375, 224 px input, random weights\n")
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for i in range(n_images):
            path = Path(tmp) / f"img_{i:03d}.jpg"
            make_image(500, 375, seed=i).save(path, quality=90)
            images.append(TestImage(path, path.name, i % 9))
        spec = InputSpec(size=224)
        models = {b: build_model(b, 9).eval() for b in BACKBONES}
        for model in models.values():  # warm-up: first calls allocate
            predict_images(model, images[:2], spec, batch_size=2)
        variants: dict[str, Callable[[], object]] = {}
        for backbone in BACKBONES:
            for batch in (1, 16):
                variants[f"{backbone}|{batch}"] = (
                    lambda m=models[backbone], b=batch: predict_images(m, images, spec, batch_size=b))
        before = probe_ms()
        times = rotating(variants, repeats)
        after = probe_ms()
    print(f"probe before {before:.1f} ms, after {after:.1f} ms; {repeats} interleaved rounds\n")
    print("| backbone | batch 1 (images/s) | batch 16 (images/s) | batch 16 / batch 1 |")
    print("|---|---:|---:|---:|")
    for backbone in BACKBONES:
        rate = {b: n_images / (statistics.median(times[f"{backbone}|{b}"]) / 1000) for b in (1, 16)}
        print(f"| {DISPLAY_NAMES[backbone]} | {rate[1]:.1f} | {rate[16]:.1f} | {rate[16] / rate[1]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15, help="rounds of page interactions")
    parser.add_argument("--eval-images", type=int, default=32)
    parser.add_argument("--eval-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-filter", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import streamlit

    print(f"# bench_errors: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), streamlit {streamlit.__version__}, python {platform.python_version()}")
    if not args.skip_filter:
        bench_filtering(args.rows, args.repeats)
    if not args.skip_eval:
        bench_eval(args.eval_images, args.eval_repeats)


if __name__ == "__main__":
    main()
