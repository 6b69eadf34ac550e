"""Prediction: each model over the test set, in batches, each run saved to the results store.

:func:`predict_images` computes one model's probabilities; :func:`evaluate_models` runs every
chosen model in turn, reports progress and skipped files, and saves one run per model.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch import nn

from mushcam.cam import eval_mode
from mushcam.catalog import load_catalog_entry
from mushcam.data import ImageLoadError, decode_image, image_sha256, preprocess, read_bytes
from mushcam.evaluate.scan import TestImage, TestSet, scan_test_set
from mushcam.exceptions import MushcamError
from mushcam.finite import naming_model, require_finite
from mushcam.manifest import InputSpec, Manifest
from mushcam.metrics import ModelMetrics, compute_metrics, format_rate
from mushcam.models import file_sha256
from mushcam.models.checkpoint import what_is_there
from mushcam.store import Predictions, RunRecord, Skipped, check_writable, save_run

MAX_BATCH_SIZE = 1024


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


def utc_now() -> str:
    """The time a run starts or ends, as the store records it (ISO 8601, seconds, UTC)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


_now = utc_now


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
    chosen, out, test_set = prepare_evaluation(data_root, manifest, out, list(models or []) + list(backbones or []),
                                               batch_size, log)

    def one(backbone: str, images: Sequence[TestImage], unreadable: Sequence[Skipped]):  # noqa: ANN202
        return evaluate_one(backbone, manifest, images, test_set, unreadable, out, batch_size, log, progress_stream)

    summaries = evaluate_each(chosen, test_set, one)
    log(f"results written to {out}; print them with: python -m mushcam report {out}")
    return summaries


def prepare_evaluation(data_root: str | Path, manifest: Manifest, out: str | Path, requested: Sequence[str],
                       batch_size: int, log: Callable[[str], None]) -> tuple[list[str], Path, TestSet]:
    """Everything checked before any model runs: the batch size, the models, the store, the test set."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise MushcamError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}; got {batch_size}")
    chosen = chosen_models(manifest, requested, log)
    return chosen, checked_store_path(out), scanned_test_set(data_root, manifest, log)


OneModel = Callable[[str, Sequence[TestImage], Sequence[Skipped]], tuple[RunSummary, tuple[Skipped, ...]]]


def evaluate_each(chosen: Sequence[str], test_set: TestSet, one: OneModel) -> list[RunSummary]:
    """``one(model, images, unreadable so far)`` for each model in turn; an image one model could not read
    is left out for the later ones (and counted once, as skipped, in each run)."""
    images = list(test_set.images)
    unreadable: list[Skipped] = []
    summaries = []
    for backbone in chosen:
        summary, newly_unreadable = one(backbone, images, unreadable)
        if newly_unreadable:
            unreadable.extend(newly_unreadable)
            bad = {s.path for s in newly_unreadable}
            images = [i for i in images if i.relpath not in bad]  # later models skip them at once
        summaries.append(summary)
    return summaries


def chosen_models(manifest: Manifest, requested: Sequence[str], log: Callable[[str], None]) -> list[str]:
    """The requested models (checked), or every manifest model whose checkpoint exists."""
    if requested:
        return check_model_names(manifest, requested)
    chosen = []
    for backbone in manifest.models:
        if manifest.checkpoint_path(backbone).is_file():
            chosen.append(backbone)
        else:
            path = manifest.checkpoint_path(backbone)
            log(f"skipping {backbone}: {what_is_there(path) or f'checkpoint not found at {path}'}")
    if not chosen:
        raise FileNotFoundError("none of the manifest's checkpoints exist; nothing to evaluate")
    return chosen


def checked_store_path(out: str | Path) -> Path:
    """``--out`` as a path, refused (a folder, no parent, locked, read-only, foreign) before any model runs."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file such as {out / 'results.sqlite'}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder for --out does not exist: {out.parent}")
    check_writable(out)
    return out


def scanned_test_set(data_root: str | Path, manifest: Manifest, log: Callable[[str], None]) -> TestSet:
    """The test set under ``data_root``, with what was skipped and the class counts logged."""
    test_set = scan_test_set(data_root, manifest)
    for reason, items in group_by_reason(test_set.skipped).items():
        log(f"skipped {len(items)} file{'s' if len(items) != 1 else ''} ({examples(items)}): {reason}")
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
    return test_set


def evaluate_one(
    backbone: str,
    manifest: Manifest,
    images: Sequence[TestImage],
    test_set: TestSet,
    unreadable: Sequence[Skipped],
    out: Path,
    batch_size: int,
    log: Callable[[str], None],
    progress_stream: TextIO | None,
) -> tuple[RunSummary, tuple[Skipped, ...]]:
    """One model over ``images``, its run saved; the summary and the images it could not read."""
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
    return save_evaluation(EvaluationPass(backbone, manifest, test_set, out, batch_size, started, digest, layer),
                           output, unreadable, log)


@dataclass(frozen=True)
class EvaluationPass:
    """What one model's run records besides its predictions (shared by local and distributed runs)."""

    backbone: str
    manifest: Manifest
    test_set: TestSet
    out: Path
    batch_size: int
    started_at: str
    checkpoint_sha256: str
    layer: str


def save_evaluation(job: EvaluationPass, output: BatchOutput, unreadable: Sequence[Skipped],
                    log: Callable[[str], None]) -> tuple[RunSummary, tuple[Skipped, ...]]:
    """One model's predictions saved as a run (sorted by image path); its summary and the images it could not read."""
    manifest, test_set, backbone = job.manifest, job.test_set, job.backbone
    for item in output.skipped:
        log(f"skipped {item.path}: {item.reason}")
    skipped = test_set.skipped + tuple(unreadable) + tuple(output.skipped)
    predictions = _sorted_predictions(output.predictions)
    checkpoint = manifest.checkpoint_path(backbone)
    run = RunRecord(
        backbone=backbone,
        checkpoint_path=str(checkpoint.resolve()),
        checkpoint_sha256=job.checkpoint_sha256,
        layer=job.layer,
        arch=manifest.models[backbone].arch,
        data_root=str(test_set.root),
        manifest=manifest.to_dict(),
        started_at=job.started_at,
        finished_at=_now(),
        versions=library_versions(),
        batch_size=job.batch_size,
        seconds=output.seconds,
        n_images=len(predictions),
    )
    if len(predictions) == 0:
        raise MushcamError(f"no image under {test_set.root} could be read")
    run_id = save_run(job.out, run, predictions, skipped)
    metrics = compute_metrics(predictions.true_idx, predictions.pred_idx, manifest.class_names,
                              [c.toxicity for c in manifest.classes])
    log(
        f"{backbone}: {len(predictions)} images in {output.seconds:.1f} s "
        f"({len(predictions) / max(output.seconds, 1e-9):.1f} images/s); accuracy {metrics.accuracy:.1%}; "
        "poisonous->edible "
        f"{format_rate(metrics.dangerous_count, metrics.dangerous_rate, metrics.poisonous_images)}"
    )
    return RunSummary(replace(run, run_id=run_id), metrics, skipped), tuple(output.skipped)


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
            path = manifest.checkpoint_path(name)
            raise MushcamError(what_is_there(path) or f"checkpoint for {name} not found: {path}")
    return chosen


def group_by_reason(skipped: Sequence[Skipped]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for item in skipped:
        groups.setdefault(item.reason, []).append(item.path)
    return groups


def examples(paths: Sequence[str], n: int = 3) -> str:
    return ", ".join(paths[:n]) + (f", ... {len(paths) - n} more" if len(paths) > n else "")
