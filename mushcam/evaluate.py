"""Test-set evaluation: every prediction of every model into the results store, and a report.

``python -m mushcam evaluate --data ROOT [--manifest FILE] [--models NAME ...] [--batch-size N]
--out results.sqlite`` runs each named model of the manifest over ``ROOT/<Class>/<image>`` (one model at a time,
batched, under ``torch.inference_mode()``) and saves one run per model (see
:mod:`mushcam.store`). Images are decoded with :func:`mushcam.data.load_image`'s decoder
and preprocessed with :func:`mushcam.data.preprocess` to the manifest's input spec, exactly
as the Explain page does, so a stored probability vector is what the app shows for that
image. Class folders not in the manifest and unreadable images are skipped, reported on
the console and listed in the store.

``python -m mushcam report results.sqlite`` prints accuracy, the toxicity-aware error
rates, per-class precision / recall / F1 and the confusion matrix of every run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.data import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    decode_image,
    image_sha256,
    preprocess,
    printable,
    read_bytes,
    scan_images,
)
from mushcam.finite import naming_model, require_finite
from mushcam.gradcam import eval_mode
from mushcam.manifest import InputSpec, Manifest
from mushcam.metrics import ModelMetrics, compute_metrics, format_rate
from mushcam.catalog import load_catalog_entry
from mushcam.models import file_sha256
from mushcam.store import Predictions, RunRecord, Skipped, StoreContents, check_writable, load_store, save_run

MAX_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TestImage:
    """One image to evaluate: absolute path, path relative to the data root, true class index."""

    path: Path
    relpath: str
    true_idx: int


@dataclass(frozen=True)
class TestSet:
    root: Path  # resolved
    images: tuple[TestImage, ...]
    skipped: tuple[Skipped, ...]  # class folders not in the manifest, loose files


def scan_test_set(root: str | Path, manifest: Manifest) -> TestSet:
    """The images under ``root/<Class>/`` whose class folder names a manifest class.

    Folder names match class names exactly, then case-insensitively. Images in a folder
    that is not a manifest class, and images lying directly in ``root``, are skipped with
    the reason.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    root = root.resolve()
    images: list[TestImage] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        skipped.append(Skipped(printable(path.name), "not inside a class folder (expected ROOT/<Class>/<image>)"))
    scan = scan_images(root)
    skipped.extend(Skipped(path, reason) for path, reason in scan.skipped)
    for item in scan.images:
        try:
            true_idx = manifest.class_index(item.label)
        except KeyError:
            skipped.append(Skipped(item.relpath, f"class folder {item.label!r} is not one of the manifest's classes"))
            continue
        images.append(TestImage(item.path, item.relpath, true_idx))
    return TestSet(root, tuple(images), tuple(skipped))


class Progress:
    """A one-line progress bar on a stream (redrawn at most 5 times a second; plain lines off a terminal)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_quarter = -1

    def update(self, done: int) -> None:
        now = time.perf_counter()
        fraction = done / self.total if self.total else 1.0
        if self.tty:
            if now - self.last_draw < 0.2 and done < self.total:
                return
            self.last_draw = now
            filled = int(round(24 * fraction))
            rate = done / max(now - self.start, 1e-9)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (24 - filled)}] {done}/{self.total} ({rate:.1f} images/s)"
            )
            if done >= self.total:
                self.stream.write("\n")
        else:
            quarter = int(fraction * 4)
            if quarter > self.last_quarter:
                self.last_quarter = quarter
                self.stream.write(f"{self.label}: {done}/{self.total} images\n")
        self.stream.flush()


@dataclass(frozen=True)
class BatchOutput:
    predictions: Predictions
    skipped: tuple[Skipped, ...]  # unreadable images
    seconds: float


def predict_images(
    model: nn.Module,
    images: Sequence[TestImage],
    spec: InputSpec,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> BatchOutput:
    """Softmax probabilities of ``model`` for every readable image, in batches.

    Each image is read once (its bytes hashed with SHA-256), decoded like the app decodes
    uploads, and preprocessed to ``spec``; ``probabilities = softmax(model(x))``.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise MushcamError(f"batch size must be between 1 and {MAX_BATCH_SIZE}; got {batch_size}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    paths: list[str] = []
    hashes: list[str] = []
    true_idx: list[int] = []
    chunks: list[torch.Tensor] = []
    skipped: list[Skipped] = []
    start = time.perf_counter()
    done = 0
    with eval_mode(model), torch.inference_mode():
        for first in range(0, len(images), batch_size):
            batch = images[first:first + batch_size]
            tensors = []
            for item in batch:
                try:
                    data = read_bytes(item.path)
                    tensors.append(preprocess(decode_image(data), spec))
                except ImageLoadError as exc:
                    skipped.append(Skipped(item.relpath, f"unreadable image: {exc}"))
                    continue
                paths.append(item.relpath)
                hashes.append(image_sha256(data))
                true_idx.append(item.true_idx)
            if tensors:
                logits = model(torch.stack(tensors).to(device))
                require_finite(logits, "logits")  # fails at the first batch, not at the store's constraints
                chunks.append(torch.softmax(logits.float(), dim=1).cpu())
            done += len(batch)
            if progress is not None:
                progress(done)
    seconds = time.perf_counter() - start
    if chunks:
        probabilities = torch.cat(chunks).numpy().astype(np.float32)
    else:
        probabilities = np.zeros((0, 0), dtype=np.float32)
    predicted = probabilities.argmax(axis=1) if len(paths) else np.zeros(0, dtype=np.int64)
    confidence = probabilities.max(axis=1).astype(np.float64) if len(paths) else np.zeros(0)
    return BatchOutput(
        Predictions(
            image_paths=tuple(paths),
            image_sha256=tuple(hashes),
            true_idx=np.asarray(true_idx, dtype=np.int64),
            pred_idx=predicted.astype(np.int64),
            confidence=confidence,
            probabilities=probabilities,
        ),
        tuple(skipped),
        seconds,
    )


def library_versions() -> dict[str, str]:
    """Versions that can change a prediction: recorded with every run."""
    import PIL
    import torchvision

    import mushcam

    return {
        "mushcam": mushcam.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunSummary:
    run: RunRecord
    metrics: ModelMetrics
    skipped: tuple[Skipped, ...]


def _sorted_predictions(predictions: Predictions) -> Predictions:
    """Rows in image-path order, as the store returns them."""
    order = sorted(range(len(predictions)), key=lambda i: predictions.image_paths[i])
    return Predictions(
        image_paths=tuple(predictions.image_paths[i] for i in order),
        image_sha256=tuple(predictions.image_sha256[i] for i in order),
        true_idx=predictions.true_idx[order],
        pred_idx=predictions.pred_idx[order],
        confidence=predictions.confidence[order],
        probabilities=predictions.probabilities[order] if len(order) else predictions.probabilities,
    )


def evaluate_models(
    data_root: str | Path,
    manifest: Manifest,
    out: str | Path,
    backbones: Sequence[str] | None = None,
    batch_size: int = 16,
    log: Callable[[str], None] = print,
    progress_stream: TextIO | None = None,
    *,
    models: Sequence[str] | None = None,
) -> list[RunSummary]:
    """Evaluate each named model in turn and save its run to ``out``; returns what was saved.

    ``models`` (manifest names; ``backbones`` is its old name) defaults to the manifest's
    models whose checkpoint file exists (the others are reported). A named model that is
    not in the manifest or has no checkpoint is an error, raised before any model runs.
    Each model's run is committed as soon as that model has finished.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise MushcamError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}; got {batch_size}")
    requested = list(models or []) + list(backbones or [])
    if requested:
        chosen = check_model_names(manifest, requested)
    else:
        chosen = []
        for backbone in manifest.models:
            if manifest.checkpoint_path(backbone).is_file():
                chosen.append(backbone)
            else:
                log(f"skipping {backbone}: checkpoint not found at {manifest.checkpoint_path(backbone)}")
        if not chosen:
            raise FileNotFoundError("none of the manifest's checkpoints exist; nothing to evaluate")
    out = Path(out).expanduser()
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file such as {out / 'results.sqlite'}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder for --out does not exist: {out.parent}")
    check_writable(out)  # a locked, read-only or foreign store is refused before any model runs

    test_set = scan_test_set(data_root, manifest)
    for reason, items in _group_by_reason(test_set.skipped).items():
        log(f"skipped {len(items)} file{'s' if len(items) != 1 else ''} ({_examples(items)}): {reason}")
    if not test_set.images:
        raise MushcamError(
            f"no images of the manifest's classes under {test_set.root} (expected ROOT/<Class>/<image>, "
            f"classes: {', '.join(manifest.class_names)})"
        )
    counts = np.bincount([i.true_idx for i in test_set.images], minlength=manifest.num_classes)
    absent = [n for n, c in zip(manifest.class_names, counts, strict=True) if c == 0]
    log(
        f"{len(test_set.images)} images of {manifest.num_classes - len(absent)} classes in {test_set.root}"
        + (f" (no images of: {', '.join(absent)})" if absent else "")
    )

    images = list(test_set.images)
    unreadable: list[Skipped] = []
    summaries = []
    for backbone in chosen:
        checkpoint = manifest.checkpoint_path(backbone)
        started = _now()
        digest = file_sha256(checkpoint)
        loaded = load_catalog_entry(manifest, backbone)
        model, layer = loaded.model, loaded.layer
        bar = Progress(f"{backbone}", len(images), progress_stream)
        try:
            with naming_model(backbone):
                output = predict_images(model, images, manifest.input, batch_size, bar.update)
        except KeyboardInterrupt:
            log(f"\ninterrupted while evaluating {backbone}: nothing written for it; earlier results are intact")
            raise
        finally:
            del model, loaded
        if output.skipped:
            for item in output.skipped:
                log(f"skipped {item.path}: {item.reason}")
            unreadable.extend(output.skipped)
            bad = {s.path for s in output.skipped}
            images = [i for i in images if i.relpath not in bad]  # later models skip them at once
        skipped = test_set.skipped + tuple(unreadable)
        predictions = _sorted_predictions(output.predictions)
        run = RunRecord(
            backbone=backbone,
            checkpoint_path=str(checkpoint.resolve()),
            checkpoint_sha256=digest,
            layer=layer,
            arch=manifest.models[backbone].arch,
            data_root=str(test_set.root),
            manifest=manifest.to_dict(),
            started_at=started,
            finished_at=_now(),
            versions=library_versions(),
            batch_size=batch_size,
            seconds=output.seconds,
            n_images=len(predictions),
        )
        if len(predictions) == 0:
            raise MushcamError(f"no image under {test_set.root} could be read")
        run_id = save_run(out, run, predictions, skipped)
        metrics = compute_metrics(predictions.true_idx, predictions.pred_idx, manifest.class_names,
                                  [c.toxicity for c in manifest.classes])
        log(
            f"{backbone}: {len(predictions)} images in {output.seconds:.1f} s "
            f"({len(predictions) / max(output.seconds, 1e-9):.1f} images/s); accuracy {metrics.accuracy:.1%}; "
            f"poisonous->edible {format_rate(metrics.dangerous_count, metrics.dangerous_rate, metrics.poisonous_images)}"
        )
        summaries.append(RunSummary(replace(run, run_id=run_id), metrics, skipped))
    log(f"results written to {out}; print them with: python -m mushcam report {out}")
    return summaries


def check_model_names(manifest: Manifest, names: Sequence[str]) -> list[str]:
    """``names`` (comma- or space-separated, duplicates dropped) if each is a manifest model
    whose checkpoint exists; else a :class:`MushcamError` naming the first that is not."""
    chosen = list(dict.fromkeys(n.strip() for name in names for n in str(name).split(",") if n.strip()))
    for name in chosen:
        if name not in manifest.models:
            raise MushcamError(
                f"the manifest lists no checkpoint for {name} (its models: {', '.join(manifest.models) or 'none'}); "
                "give --model one of those names"
            )
        if not manifest.checkpoint_path(name).is_file():
            raise MushcamError(f"checkpoint for {name} not found: {manifest.checkpoint_path(name)}")
    return chosen


def _group_by_reason(skipped: Sequence[Skipped]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for item in skipped:
        groups.setdefault(item.reason, []).append(item.path)
    return groups


def _examples(paths: Sequence[str], n: int = 3) -> str:
    return ", ".join(paths[:n]) + (f", ... {len(paths) - n} more" if len(paths) > n else "")


def run_metrics(contents: StoreContents, run_id: int) -> ModelMetrics:
    """The metrics of one stored run."""
    run = contents.run(run_id)
    rows = contents.predictions[run_id]
    return compute_metrics(rows.true_idx, rows.pred_idx, run.class_names, run.toxicities)


# ---------------------------------------------------------------------------------- report


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, right: Sequence[bool]) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _pct(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.1%}"


def _num(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def run_label(run: RunRecord, runs: Sequence[RunRecord] = ()) -> str:
    """The model's display name (``ResNet-50``, a label, or its manifest name), with the
    checkpoint hash (and data folder) added where needed to tell runs apart."""
    label = run.label
    same_backbone = [r for r in runs if r.backbone == run.backbone]
    if len({r.checkpoint_sha256 for r in same_backbone}) > 1:
        label += f" · {run.checkpoint_sha256[:8]}"
    if len({r.data_root for r in runs}) > 1:
        label += f" · {Path(run.data_root).name}"
    return label


def format_report(contents: StoreContents, markdown: bool = False, summary_only: bool = False) -> str:
    """The report as text: a summary row per run, then per-class scores and confusion matrices."""
    if not contents.runs:
        return "the store holds no runs"
    parts = []
    rows = []
    for run in contents.runs:
        m = run_metrics(contents, run.run_id)
        rows.append([
            run_label(run, contents.runs), run.checkpoint_sha256[:8], str(m.n_images), _pct(m.accuracy), _num(m.macro_f1),
            format_rate(m.dangerous_count, m.dangerous_rate, m.poisonous_images),
            format_rate(m.benign_count, m.benign_rate, m.edible_images),
            str(len(contents.skipped.get(run.run_id, ()))),
        ])
    header = ["model", "checkpoint", "images", "accuracy", "macro F1", "poisonous->edible (dangerous)",
              "edible->poisonous", "skipped"]
    parts.append(_table(header, rows, markdown, [False, False, True, True, True, True, True, True]))
    roots = sorted({r.data_root for r in contents.runs})
    parts.append("data: " + ", ".join(roots))
    if summary_only:
        return "\n".join(parts)
    for run in contents.runs:
        m = run_metrics(contents, run.run_id)
        arch = run.name if run.arch == run.name else f"{run.name}: {run.arch}"
        title = f"{run_label(run, contents.runs)} ({arch}, checkpoint {run.checkpoint_sha256[:12]}, {run.finished_at})"
        parts.append("\n" + (f"### {title}" if markdown else title))
        class_rows = [
            [c.name, c.toxicity, str(c.support), str(c.predicted), _num(c.precision), _num(c.recall), _num(c.f1)]
            for c in m.classes
        ]
        parts.append(_table(["class", "toxicity", "images", "predicted", "precision", "recall", "F1"], class_rows,
                            markdown, [False, False, True, True, True, True, True]))
        names = list(m.class_names)
        short = names if markdown else [n[:12] for n in names]
        matrix_rows = [[names[i]] + [str(int(v)) for v in m.confusion[i]] for i in range(len(names))]
        parts.append("\nconfusion matrix (rows: true class, columns: predicted class)")
        parts.append(_table(["true \\ predicted", *short], matrix_rows, markdown, [False] + [True] * len(names)))
        skipped = contents.skipped.get(run.run_id, ())
        if skipped:
            parts.append(f"\nnot evaluated: {len(skipped)} file{'s' if len(skipped) != 1 else ''}")
            for reason, paths in _group_by_reason(skipped).items():
                parts.append(f"  {len(paths)} x {reason} ({_examples(paths)})")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------- CLI


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` and ``report``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="run each model over a test set (ROOT/<Class>/<image>) and store every prediction in SQLite",
    )
    parser.add_argument("--data", required=True, help="test-set folder: ROOT/<Class>/<image> (class = manifest class)")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or checkpoints/)")
    parser.add_argument("--model", "--models", "--backbone", "--backbones", dest="models", nargs="+", metavar="NAME",
                        help="models to evaluate, by their manifest name (default: every manifest model with a "
                        "checkpoint); --backbones is the old spelling")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--out", required=True, help="results store to create or update, e.g. results.sqlite")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for inference (default: torch's choice; 1 is fastest on a busy shared host)")
    parser.set_defaults(handler=run_evaluate)

    report = subparsers.add_parser("report", help="print accuracy, per-class scores, confusion matrix and toxicity-aware error rates")
    report.add_argument("store", help="results store written by `evaluate`")
    report.add_argument("--markdown", action="store_true", help="markdown tables")
    report.add_argument("--summary", action="store_true", help="only the one-row-per-model summary")
    report.set_defaults(handler=run_report)


def run_evaluate(args: argparse.Namespace) -> int:
    from mushcam.cli import resolve_manifest

    if args.threads is not None:
        if args.threads < 1:
            raise MushcamError(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    manifest = resolve_manifest(args.manifest)
    evaluate_models(args.data, manifest, args.out, batch_size=args.batch_size, models=args.models)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from mushcam.trust.report import format_trust_report
    from mushcam.trust.store import load_trust

    print(format_report(load_store(args.store), markdown=args.markdown, summary_only=args.summary))
    trust = format_trust_report(load_trust(args.store), markdown=args.markdown)
    if trust:
        print("\n" + trust)
    return 0
