"""What a run writes into ``--out``: which existing manifest entries stay, Ctrl-C-safe atomic
saves of checkpoint and manifest, the per-epoch log's columns and the ``<backbone>.train.json``
summary (and its one-line form)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.files import write_bytes_atomic, write_text_atomic
from mushcam.manifest import (
    MANIFEST_NAME,
    ClassInfo,
    InputSpec,
    Manifest,
    ModelEntry,
    load_manifest,
    save_manifest,
)
from mushcam.metrics.health import chance_check
from mushcam.models import BACKBONES
from mushcam.train.config import TrainConfig, TrainResult
from mushcam.train.data import Report, TrainingData
from mushcam.train.metrics import SplitMetrics

LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "val_dangerous_error_rate", "lr", "seconds", "best",
)


def _same_layout(existing: Manifest, classes: Sequence[str], spec: InputSpec) -> bool:
    return existing.class_names == list(classes) and existing.input == spec


def plan_output(
    out_dir: Path, classes: Sequence[str], spec: InputSpec, backbones: Sequence[str], warn: Report = print
) -> tuple[Manifest | None, dict[str, ModelEntry]]:
    """The output folder's existing manifest and the model entries that stay in it.

    Same classes (same order) and same input spec: every entry stays until retrained.
    Otherwise the entries cannot share one manifest with the new models: they are dropped
    when their checkpoint is missing or about to be retrained, and an error is raised when a
    checkpoint of another backbone would be orphaned (nothing is overwritten then).
    """
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return None, {}
    existing = load_manifest(path)
    if _same_layout(existing, classes, spec):
        return existing, dict(existing.models)
    blocking = [
        b for b in existing.models if b not in backbones and existing.checkpoint_path(b).is_file()
    ]
    if blocking:
        raise MushcamError(
            f"{path} describes {', '.join(blocking)} for other classes or another input "
            f"({len(existing.classes)} classes, {existing.input.size} px {existing.input.resize}); "
            f"training {len(classes)} classes at {spec.size} px squash there would leave them unusable. "
            "Choose another --out folder, or retrain those backbones too."
        )
    if existing.models:
        warn(f"note: {path} described other classes or another input; it is replaced")
    return existing, {}


def write_manifest(
    out_dir: Path, classes: Sequence[ClassInfo], spec: InputSpec, entries: dict[str, ModelEntry]
) -> None:
    """The output folder's manifest: the classes, the input and every model trained into it (atomic)."""
    ordered = {b: entries[b] for b in BACKBONES if b in entries}
    save_manifest(Manifest(classes=tuple(classes), input=spec, models=ordered, root=out_dir), out_dir / MANIFEST_NAME)


@contextlib.contextmanager
def shielded_from_ctrl_c() -> Iterator[None]:
    """Defer SIGINT for the block (a save must not be cut in half); re-raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if previous is signal.default_int_handler or previous in (None, signal.SIG_DFL):
            raise KeyboardInterrupt
        if callable(previous):
            previous(signal.SIGINT, None)


def save_state(model: nn.Module, path: Path) -> None:
    """The model's weights as a plain state dict on CPU, written atomically (a reader never sees half a file)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def summary_line(result: TrainResult) -> str:
    line = (
        f"{result.backbone}: best epoch {result.best_epoch}/{result.epochs_run}, val acc {result.val.accuracy:.1%} "
        f"dangerous {pct(result.val.dangerous_error_rate)}"
    )
    if result.test is not None:
        line += f"; test acc {result.test.accuracy:.1%} dangerous {pct(result.test.dangerous_error_rate)}"
    return line + f"; {result.seconds / 60:.1f} min -> {result.checkpoint}"


def chance_note(result: TrainResult, num_classes: int) -> str | None:
    """Said when the kept epoch's validation accuracy is within its Wilson 95 % interval of chance (1 / K)."""
    n = result.val.images
    check = chance_check(round(result.val.accuracy * n), n, num_classes)
    if not check.at_chance:
        return None
    def spaced(x: float) -> str:
        return f"{100 * x:.1f} %"

    return (f"{result.backbone}: kept epoch {result.best_epoch}/{result.epochs_run}, val acc "
            f"{spaced(result.val.accuracy)}: not above chance ({spaced(check.chance)} for {num_classes} classes; "
            f"95 % interval {spaced(check.interval[0])}–{spaced(check.interval[1])}, n = {n}): "
            "read its maps as those of a model that has not learned the task")


TICK_SECONDS = 5.0  # the least time between two progress lines within an epoch


class BatchTicker:
    """Progress within an epoch: batches done/total, photos/s and an ETA, through ``say``.

    Says a line at most every ``every`` seconds and once at the end of the epoch, never one
    per batch (photos/s = photos done / seconds since the epoch began; ETA = batches left x
    mean seconds per batch so far).
    """

    def __init__(self, label: str, say: Report, every: float = TICK_SECONDS,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.label, self.say, self.every, self.clock = label, say, every, clock
        self.total = self.done = self.photos = 0
        self.began = self.last = 0.0

    def start(self, total: int) -> None:
        self.total, self.done, self.photos = total, 0, 0
        self.began = self.last = self.clock()

    def batch_done(self, photos: int) -> None:
        self.done += 1
        self.photos += photos
        now = self.clock()
        if self.done >= self.total or now - self.last >= self.every:
            self.last = now
            self.say(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.began, 1e-9)
        rate = self.photos / elapsed
        left = (self.total - self.done) * elapsed / max(self.done, 1)
        eta = "done" if self.done >= self.total else f"ETA {left:.0f} s"
        return f"  {self.label}: batch {self.done}/{self.total}, {rate:.1f} photos/s, {eta}"


def _json_metrics(metrics: SplitMetrics) -> dict[str, float | int | None]:
    """Metrics for JSON: an undefined rate (NaN, no poisonous image) becomes null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(metrics).items()}


def write_summary(
    out: Path, result: TrainResult, config: TrainConfig, data: TrainingData, toxicities: Sequence[str]
) -> None:
    summary = {
        "backbone": result.backbone,
        "checkpoint": result.checkpoint.name,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "interrupted": result.interrupted,
        "seconds": round(result.seconds, 1),
        "val": _json_metrics(result.val),
        "test": _json_metrics(result.test) if result.test else None,
        "classes": [
            {"name": c, "toxicity": t, "train_images": n}
            for c, t, n in zip(data.classes, toxicities, data.counts, strict=True)
        ],
        "config": {**asdict(config), "learning_rate": config.learning_rate},
    }
    text = json.dumps(summary, indent=2, default=str, allow_nan=False) + "\n"
    write_text_atomic(out / f"{result.backbone}.train.json", text)
