"""The training loop: the starting model, shuffled batches, the cosine learning rate, one
backbone's epochs with early stopping (:func:`train_backbone`) and a whole run (:func:`train`)."""

from __future__ import annotations

import csv
import gc
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import torch
from torch import nn

from mushcam.augment import augment_batch
from mushcam.device import resolve_device
from mushcam.exceptions import MushcamError
from mushcam.manifest import MANIFEST_NAME, ClassInfo, InputSpec, Manifest, ModelEntry, load_manifest
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    HEAD_WEIGHT_KEYS,
    build_model,
    load_imagenet_model,
    load_model,
)
from mushcam.train.config import TrainConfig, TrainResult, check_config
from mushcam.train.data import Report, TrainingData, find_classes, load_training_data, resolve_toxicities
from mushcam.train.metrics import SplitMetrics, class_weights, evaluate_tensors
from mushcam.train.output import (
    LOG_COLUMNS,
    BatchTicker,
    chance_note,
    pct,
    plan_output,
    save_state,
    shielded_from_ctrl_c,
    summary_line,
    write_manifest,
    write_summary,
)


def initial_model(backbone: str, num_classes: int, pretrained: bool) -> nn.Module:
    """From scratch, or ImageNet weights with a fresh head for ``num_classes``.

    The ImageNet weights come from :func:`mushcam.models.load_imagenet_model` (torch cache,
    else a download; :class:`~mushcam.models.PretrainedWeightsUnavailable` in plain words).
    """
    model = build_model(backbone, num_classes)
    if not pretrained:
        return model
    head_weight = HEAD_WEIGHT_KEYS[backbone]
    head = {head_weight, head_weight[: -len("weight")] + "bias"}
    trunk = {k: v for k, v in load_imagenet_model(backbone, download=True).state_dict().items() if k not in head}
    missing, unexpected = model.load_state_dict(trunk, strict=False)
    if set(missing) != head or unexpected:
        raise MushcamError(f"ImageNet weights do not fit {backbone}: missing {missing}, unexpected {unexpected}")
    return model


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> int:
    """Set every BatchNorm layer's running-statistics momentum; returns how many were set.

    running = (1 - m) * running + m * batch. torchvision's MobileNetV3 uses m = 0.01, tuned for
    ImageNet's thousands of steps per epoch; with a few dozen steps per epoch the running
    statistics then lag far behind the weights, and the eval-mode model (what is validated
    and deployed) predicts a single class. Not part of the state dict: loading is unaffected.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch in batches; a last batch of one joins the previous (BatchNorm needs 2)."""
    order = torch.randperm(n, generator=generator)
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2] = torch.cat([parts[-2], parts.pop()])
    return parts


def cosine_factor(step: int, total_steps: int) -> float:
    """Learning-rate multiplier 0.5 * (1 + cos(pi * step / total)), from 1 down to 0."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def _train_epoch(
    model: nn.Module,
    data: TrainingData,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
    ticker: BatchTicker | None = None,
) -> tuple[float, float]:
    """One pass over the (augmented) training photos; returns mean loss and accuracy.

    ``ticker`` hears of each finished batch (it prints progress at most every few seconds).
    """
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    parts = batches(len(data.train_labels), config.batch_size, generator)
    if ticker is not None:
        ticker.start(len(parts))
    for index in parts:
        x = augment_batch([data.train_images[i] for i in index], data.spec, generator, config.augment).to(device)
        y = data.train_labels[index].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(index)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(index)
        if ticker is not None:
            ticker.batch_done(len(index))
    return loss_sum / seen, correct / seen


@dataclass
class _Training:
    """One backbone's model, loss, optimiser and schedule, ready for its first epoch."""

    model: nn.Module
    weights: torch.Tensor
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    device: torch.device


@dataclass
class _Progress:
    """Where the epochs stand: the best epoch so far and how the loop ended."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    best_val: SplitMetrics | None = None
    stopped_early: bool = False
    interrupted: bool = False


@dataclass(frozen=True)
class _Outputs:
    """Where one backbone's training writes: its checkpoint, the manifest and the epoch log."""

    backbone: str
    out_dir: Path
    classes: tuple[ClassInfo, ...]
    spec: InputSpec
    entries: dict[str, ModelEntry]

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / f"{self.backbone}.pt"

    @property
    def log_path(self) -> Path:
        return self.out_dir / f"{self.backbone}.train.csv"

    def save_best(self, model: nn.Module) -> None:
        """Checkpoint first, then the manifest that lists it (the entry is added at the first save)."""
        save_state(model, self.checkpoint)
        self.entries[self.backbone] = ModelEntry(self.backbone, self.checkpoint.name, DEFAULT_LAYERS[self.backbone])
        write_manifest(self.out_dir, self.classes, self.spec, self.entries)


def _prepare(backbone: str, data: TrainingData, toxicities: Sequence[str], config: TrainConfig) -> _Training:
    """Seeded model, weighted loss, AdamW and the per-step cosine schedule."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # weight init and dropout
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation
    model = initial_model(backbone, len(data.classes), config.pretrained).to(device)
    set_batchnorm_momentum(model, config.bn_momentum)
    weights = class_weights(data.counts, toxicities, config.poisonous_weight, config.inverse_frequency)
    criterion = nn.CrossEntropyLoss(weight=weights.to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = len(batches(len(data.train_labels), config.batch_size, torch.Generator().manual_seed(0)))
    total_steps = steps * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, total_steps))
    return _Training(model, weights, criterion, optimizer, scheduler, generator, device)


def _epoch_line(backbone: str, epoch: int, config: TrainConfig, train_loss: float, train_acc: float,
                val: SplitMetrics, lr: float, seconds: float, improved: bool) -> str:
    return (
        f"{backbone} epoch {epoch}/{config.epochs}: train loss {train_loss:.3f} acc {train_acc:.1%} | "
        f"val loss {val.loss:.3f} acc {val.accuracy:.1%} dangerous {pct(val.dangerous_error_rate)} | "
        f"lr {lr:.2g} | {seconds:.0f} s" + ("  * best" if improved else "")
    )


def _run_epochs(run: _Training, data: TrainingData, toxicities: Sequence[str], config: TrainConfig,
                outputs: _Outputs, log: TextIO, progress: _Progress, report: Report) -> None:
    """Train, validate, keep the best epoch and log each; stop after ``patience`` epochs without progress."""
    writer = csv.writer(log)
    for epoch in range(1, config.epochs + 1):
        progress.epoch = epoch
        epoch_start = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        ticker = BatchTicker(f"{outputs.backbone} epoch {epoch}/{config.epochs}", report)
        train_loss, train_acc = _train_epoch(
            run.model, data, run.criterion, run.optimizer, run.scheduler, config, run.generator, run.device,
            ticker=ticker,
        )
        val = evaluate_tensors(run.model, data.val_inputs, data.val_labels, run.weights, toxicities, run.device)
        improved = math.isfinite(val.loss) and val.loss < progress.best_loss
        seconds = time.perf_counter() - epoch_start
        # checkpoint, manifest, bookkeeping and log row: all or nothing under Ctrl-C
        with shielded_from_ctrl_c():
            if improved:
                outputs.save_best(run.model)
                progress.best_loss, progress.best_epoch, progress.best_val = val.loss, epoch, val
            writer.writerow([
                epoch, f"{train_loss:.5f}", f"{train_acc:.5f}", f"{val.loss:.5f}", f"{val.accuracy:.5f}",
                f"{val.dangerous_error_rate:.5f}", f"{lr:.3g}", f"{seconds:.1f}", int(improved),
            ])
            log.flush()
        report(_epoch_line(outputs.backbone, epoch, config, train_loss, train_acc, val, lr, seconds, improved))
        if epoch - progress.best_epoch >= config.patience:
            progress.stopped_early = True
            report(f"{outputs.backbone}: no better validation loss for {config.patience} epochs; stopping")
            return


def train_backbone(
    backbone: str,
    data: TrainingData,
    toxicities: Sequence[str],
    config: TrainConfig,
    out_dir: Path,
    entries: dict[str, ModelEntry],
    report: Report = print,
) -> TrainResult:
    """Train one backbone; keep the epoch with the lowest validation loss in ``out_dir``.

    ``entries`` are the manifest's model entries; this backbone's is added at its first
    save. On Ctrl-C the best checkpoint so far stays (with a matching manifest) and the
    result says ``interrupted``; before any epoch has finished, nothing is written and the
    KeyboardInterrupt propagates.
    """
    started = time.perf_counter()
    run = _prepare(backbone, data, toxicities, config)
    classes = tuple(ClassInfo(name, tox) for name, tox in zip(data.classes, toxicities, strict=True))
    outputs = _Outputs(backbone, out_dir, classes, data.spec, entries)
    progress = _Progress()
    with open(outputs.log_path, "w", newline="", encoding="utf-8") as log:
        csv.writer(log).writerow(LOG_COLUMNS)
        log.flush()
        try:
            _run_epochs(run, data, toxicities, config, outputs, log, progress, report)
        except KeyboardInterrupt:
            progress.interrupted = True
    if progress.best_val is None:
        if progress.interrupted:
            raise KeyboardInterrupt
        raise MushcamError(
            f"{backbone}: the validation loss was never finite; no checkpoint written (try a lower --lr)"
        )
    del run
    gc.collect()
    return TrainResult(
        backbone=backbone,
        checkpoint=outputs.checkpoint,
        log=outputs.log_path,
        best_epoch=progress.best_epoch,
        epochs_run=progress.epoch,
        val=progress.best_val,
        test=None,
        seconds=time.perf_counter() - started,
        stopped_early=progress.stopped_early,
        interrupted=progress.interrupted,
    )


def evaluate_checkpoint(
    manifest: Manifest,
    backbone: str,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> SplitMetrics:
    """Load a backbone through the app's own path (manifest -> load_model) and score it.

    ``weights`` default to 1 per class (plain cross-entropy).
    """
    model = load_model(backbone, manifest.checkpoint_path(backbone), num_classes=manifest.num_classes).to(device)
    if weights is None:
        weights = torch.ones(manifest.num_classes)
    toxicities = [c.toxicity for c in manifest.classes]
    return evaluate_tensors(model, inputs, labels, weights, toxicities, device)


def _check_request(backbones: Sequence[str], config: TrainConfig, out: Path) -> None:
    """Refuse an unknown backbone, a bad setting or an ``--out`` that is a file, before any work."""
    for backbone in backbones:
        if backbone not in BACKBONES:
            raise MushcamError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)} or all")
    check_config(config)
    resolve_device(config.device)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")


def _load_and_report(data_root: str | os.PathLike[str], classes: Sequence[str], toxicities: Sequence[str],
                     config: TrainConfig, report: Report, warn: Report) -> tuple[TrainingData, torch.Tensor]:
    """Decode the photos and say what was found, with each class's loss weight."""
    loading = time.perf_counter()
    data = load_training_data(data_root, config.image_size, config.augment, warn)
    weights = class_weights(data.counts, toxicities, config.poisonous_weight, config.inverse_frequency)
    report(
        f"data: {len(data.train_labels)} training, {len(data.val_labels)} validation, "
        f"{0 if data.test_labels is None else len(data.test_labels)} test photos decoded in "
        f"{time.perf_counter() - loading:.0f} s; device {resolve_device(config.device)}; "
        f"{torch.get_num_threads()} threads"
    )
    for name, count, toxicity, weight in zip(classes, data.counts, toxicities, weights.tolist(), strict=True):
        report(f"  {name:<16} {count:>5} train  {toxicity:<9} loss weight {weight:.3g}")
    return data, weights


def train(
    data_root: str | os.PathLike[str],
    backbones: Sequence[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig = TrainConfig(),
    manifest: Manifest | None = None,
    report: Report = print,
    warn: Report | None = None,
) -> list[TrainResult]:
    """Train ``backbones`` one after the other on ``data_root`` into ``out_dir``.

    Returns one result per backbone trained. A Ctrl-C keeps what was saved and then
    re-raises KeyboardInterrupt (after saying what was kept).
    """
    warn = warn or report
    out = Path(out_dir)
    _check_request(backbones, config, out)
    classes = find_classes(data_root)
    spec = InputSpec(size=config.image_size, resize="squash")
    existing_path = out / MANIFEST_NAME
    existing = load_manifest(existing_path) if existing_path.is_file() else None
    toxicities = resolve_toxicities(classes, manifest, existing, warn)
    _, entries = plan_output(out, classes, spec, backbones, warn)
    if config.pretrained:  # fail before hours of training, not after
        for backbone in backbones:
            load_imagenet_model(backbone, download=True)
    data, weights = _load_and_report(data_root, classes, toxicities, config, report, warn)
    out.mkdir(parents=True, exist_ok=True)
    return [_train_and_test(b, data, toxicities, weights, config, out, entries, report) for b in backbones]


def _train_and_test(backbone: str, data: TrainingData, toxicities: Sequence[str], weights: torch.Tensor,
                    config: TrainConfig, out: Path, entries: dict[str, ModelEntry], report: Report) -> TrainResult:
    """One backbone: train, then score the saved checkpoint on the test photos; write its summary."""
    result = train_backbone(backbone, data, toxicities, config, out, entries, report)
    if result.interrupted:
        report(
            f"interrupted: {backbone} keeps epoch {result.best_epoch} (val loss {result.val.loss:.3f}, "
            f"acc {result.val.accuracy:.1%}) in {result.checkpoint}; {out / MANIFEST_NAME} lists it"
        )
        write_summary(out, result, config, data, toxicities)
        raise KeyboardInterrupt
    test = None
    if data.test_inputs is not None and data.test_labels is not None:
        final = load_manifest(out)
        device = resolve_device(config.device)
        test = evaluate_checkpoint(final, backbone, data.test_inputs, data.test_labels, weights, device)
    result = replace(result, test=test)
    write_summary(out, result, config, data, toxicities)
    report(summary_line(result))
    note = chance_note(result, len(data.classes))
    if note:
        report(note)
    return result
