"""The training loop: the starting model, shuffled batches, the cosine learning rate, one
backbone's epochs with early stopping (:func:`train_backbone`) and a whole run (:func:`train`)."""

from __future__ import annotations

import csv
import gc
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mushcam.augment import augment_batch
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
    pct,
    plan_output,
    save_state,
    shielded_from_ctrl_c,
    summary_line,
    write_manifest,
    write_summary,
)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MushcamError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device auto or cpu")
    if name not in ("cpu", "cuda"):
        raise MushcamError(f"--device must be auto, cpu or cuda; got {name!r}")
    return torch.device(name)


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
) -> tuple[float, float]:
    """One pass over the (augmented) training photos; returns mean loss and accuracy."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for index in batches(len(data.train_labels), config.batch_size, generator):
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
    return loss_sum / seen, correct / seen


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

    checkpoint = out_dir / f"{backbone}.pt"
    log_path = out_dir / f"{backbone}.train.csv"
    classes = [ClassInfo(name, tox) for name, tox in zip(data.classes, toxicities, strict=True)]
    best_loss, best_epoch, best_val = math.inf, 0, None
    epoch, stopped_early, interrupted = 0, False, False
    with open(log_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LOG_COLUMNS)
        handle.flush()
        try:
            for epoch in range(1, config.epochs + 1):
                epoch_start = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                train_loss, train_acc = _train_epoch(
                    model, data, criterion, optimizer, scheduler, config, generator, device
                )
                val = evaluate_tensors(model, data.val_inputs, data.val_labels, weights, toxicities, device)
                improved = math.isfinite(val.loss) and val.loss < best_loss
                seconds = time.perf_counter() - epoch_start
                # checkpoint, manifest, bookkeeping and log row: all or nothing under Ctrl-C
                with shielded_from_ctrl_c():
                    if improved:
                        save_state(model, checkpoint)
                        entries[backbone] = ModelEntry(backbone, checkpoint.name, DEFAULT_LAYERS[backbone])
                        write_manifest(out_dir, classes, data.spec, entries)
                        best_loss, best_epoch, best_val = val.loss, epoch, val
                    writer.writerow([
                        epoch, f"{train_loss:.5f}", f"{train_acc:.5f}", f"{val.loss:.5f}", f"{val.accuracy:.5f}",
                        f"{val.dangerous_error_rate:.5f}", f"{lr:.3g}", f"{seconds:.1f}", int(improved),
                    ])
                    handle.flush()
                report(
                    f"{backbone} epoch {epoch}/{config.epochs}: train loss {train_loss:.3f} acc {train_acc:.1%} | "
                    f"val loss {val.loss:.3f} acc {val.accuracy:.1%} dangerous {pct(val.dangerous_error_rate)} | "
                    f"lr {lr:.2g} | {seconds:.0f} s" + ("  * best" if improved else "")
                )
                if epoch - best_epoch >= config.patience:
                    stopped_early = True
                    report(f"{backbone}: no better validation loss for {config.patience} epochs; stopping")
                    break
        except KeyboardInterrupt:
            interrupted = True
    if best_val is None:
        if interrupted:
            raise KeyboardInterrupt
        raise MushcamError(f"{backbone}: the validation loss was never finite; no checkpoint written (try a lower --lr)")
    del model, optimizer
    gc.collect()
    return TrainResult(
        backbone=backbone,
        checkpoint=checkpoint,
        log=log_path,
        best_epoch=best_epoch,
        epochs_run=epoch,
        val=best_val,
        test=None,
        seconds=time.perf_counter() - started,
        stopped_early=stopped_early,
        interrupted=interrupted,
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
    for backbone in backbones:
        if backbone not in BACKBONES:
            raise MushcamError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)} or all")
    check_config(config)
    device = resolve_device(config.device)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    classes = find_classes(data_root)
    spec = InputSpec(size=config.image_size, resize="squash")
    existing_path = out / MANIFEST_NAME
    existing = load_manifest(existing_path) if existing_path.is_file() else None
    toxicities = resolve_toxicities(classes, manifest, existing, warn)
    _, entries = plan_output(out, classes, spec, backbones, warn)
    if config.pretrained:  # fail before hours of training, not after
        for backbone in backbones:
            load_imagenet_model(backbone, download=True)

    loading = time.perf_counter()
    data = load_training_data(data_root, config.image_size, config.augment, warn)
    weights = class_weights(data.counts, toxicities, config.poisonous_weight, config.inverse_frequency)
    report(
        f"data: {len(data.train_labels)} training, {len(data.val_labels)} validation, "
        f"{0 if data.test_labels is None else len(data.test_labels)} test photos decoded in "
        f"{time.perf_counter() - loading:.0f} s; device {device}; {torch.get_num_threads()} threads"
    )
    for name, count, toxicity, weight in zip(classes, data.counts, toxicities, weights.tolist(), strict=True):
        report(f"  {name:<16} {count:>5} train  {toxicity:<9} loss weight {weight:.3g}")
    out.mkdir(parents=True, exist_ok=True)

    results: list[TrainResult] = []
    for backbone in backbones:
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
            test = evaluate_checkpoint(final, backbone, data.test_inputs, data.test_labels, weights, device)
        result = replace(result, test=test)
        write_summary(out, result, config, data, toxicities)
        results.append(result)
        report(summary_line(result))
    return results
