"""Training: checkpoints for any genus list, weighted so that poisonous genera count more.

``python -m mushcam train --data ROOT --backbone all --out DIR`` trains on ``ROOT/train/<Class>/``,
selects the epoch with the lowest validation loss on ``ROOT/val/<Class>/`` and writes, per
backbone, ``DIR/<backbone>.pt`` (a plain state dict, what :func:`mushcam.models.load_model`
reads), ``DIR/<backbone>.train.csv`` (one row per epoch) and ``DIR/<backbone>.train.json``
(the run's settings and the best epoch's validation and, where ``ROOT/test`` exists, test
metrics), and merges the model into ``DIR/manifest.json`` (classes in output order with
toxicity, the input spec, checkpoint file, Grad-CAM layer). The app explains the result
as it is.

The loss is cross-entropy weighted per class (:func:`class_weights`): the thesis made every
poisonous genus count 4x (section 4.4.3 f) to keep dangerous false negatives -- a
poisonous genus predicted as edible -- rare. Optimiser AdamW, cosine learning-rate decay per
step, early stopping on the (weighted) validation loss. The validation and test inputs are
exactly :func:`mushcam.data.preprocess` of the photo, i.e. what the app feeds the model.

Every save is atomic and shielded from Ctrl-C (checkpoint first, then the manifest), so an
interrupted run leaves the best checkpoint so far and a manifest that matches it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.augment import AugmentConfig, augment_batch, prepare_image
from mushcam.data import ImageLoadError, load_image, preprocess, scan_image_folder
from mushcam.manifest import (
    MANIFEST_NAME,
    ClassInfo,
    InputSpec,
    Manifest,
    ModelEntry,
    load_manifest,
    save_manifest,
)
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    HEAD_WEIGHT_KEYS,
    build_model,
    load_imagenet_model,
    load_model,
)

POISONOUS = "poisonous"
EDIBLE = "edible"
LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "val_dangerous_error_rate", "lr", "seconds", "best",
)

Report = Callable[[str], None]


# --------------------------------------------------------------------------- weights, metrics


def class_weights(
    counts: Sequence[int],
    toxicities: Sequence[str],
    poisonous_weight: float = 4.0,
    inverse_frequency: bool = False,
) -> torch.Tensor:
    """Loss weight of each class: ``w_c = f_c * p_c``.

    ``f_c = N / (C * n_c)`` (N images, C classes, n_c images of class c) when
    ``inverse_frequency``, else 1; ``p_c = poisonous_weight`` for a class whose toxicity is
    ``poisonous`` (the thesis used 4), else 1. ``mixed``, ``inedible`` and ``unknown`` classes
    are not up-weighted: the dangerous error is defined on ``poisonous`` alone.
    """
    if len(counts) != len(toxicities):
        raise MushcamError(f"{len(counts)} class counts but {len(toxicities)} toxicities")
    if not counts:
        raise MushcamError("no classes")
    if not poisonous_weight > 0 or not math.isfinite(poisonous_weight):
        raise MushcamError(f"the poisonous weight must be a positive number; got {poisonous_weight}")
    if any(int(n) < 0 for n in counts):
        raise MushcamError(f"class counts cannot be negative: {list(counts)}")
    weights = torch.ones(len(counts), dtype=torch.float64)
    if inverse_frequency:
        if any(int(n) == 0 for n in counts):
            raise MushcamError("inverse-frequency weights need at least one image of every class")
        total = float(sum(int(n) for n in counts))
        weights = torch.tensor([total / (len(counts) * int(n)) for n in counts], dtype=torch.float64)
    for i, toxicity in enumerate(toxicities):
        if toxicity == POISONOUS:
            weights[i] *= float(poisonous_weight)
    return weights.float()


def dangerous_error_rate(true_idx: torch.Tensor, pred_idx: torch.Tensor, toxicities: Sequence[str]) -> float:
    """(# poisonous images predicted as an edible class) / (# poisonous images); NaN if none."""
    poisonous = torch.tensor([t == POISONOUS for t in toxicities])
    edible = torch.tensor([t == EDIBLE for t in toxicities])
    true_idx, pred_idx = true_idx.long().cpu(), pred_idx.long().cpu()
    at_risk = poisonous[true_idx]
    if int(at_risk.sum()) == 0:
        return float("nan")
    return float((at_risk & edible[pred_idx]).sum()) / float(at_risk.sum())


@dataclass(frozen=True)
class SplitMetrics:
    """Weighted cross-entropy, accuracy and dangerous-error rate of a model on one split."""

    loss: float
    accuracy: float
    dangerous_error_rate: float
    images: int


def evaluate_tensors(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    toxicities: Sequence[str],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> SplitMetrics:
    """Metrics of ``model`` (in eval mode) on preprocessed ``inputs``.

    loss = sum_i w_{y_i} CE_i / sum_i w_{y_i} (what ``nn.CrossEntropyLoss(weight=w)`` gives
    for the whole split at once).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    weights = weights.to(device)
    loss_sum, weight_sum = 0.0, 0.0
    predictions = []
    try:
        with torch.inference_mode():
            for start in range(0, len(labels), batch_size):
                x = inputs[start : start + batch_size].to(device)
                y = labels[start : start + batch_size].to(device)
                logits = model(x).float()
                per_image = nn.functional.cross_entropy(logits, y, reduction="none")
                loss_sum += float((per_image * weights[y]).sum())
                weight_sum += float(weights[y].sum())
                predictions.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    if not predictions:
        return SplitMetrics(float("nan"), float("nan"), float("nan"), 0)
    predicted = torch.cat(predictions)
    return SplitMetrics(
        loss=loss_sum / weight_sum if weight_sum > 0 else float("nan"),
        accuracy=float((predicted == labels.cpu()).float().mean()),
        dangerous_error_rate=dangerous_error_rate(labels, predicted, toxicities),
        images=len(labels),
    )


# --------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    """Every photo decoded once: training photos as uint8 squares, evaluation ones preprocessed."""

    classes: list[str]
    spec: InputSpec
    train_images: list[torch.Tensor]
    train_labels: torch.Tensor
    val_inputs: torch.Tensor
    val_labels: torch.Tensor
    test_inputs: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def counts(self) -> list[int]:
        return torch.bincount(self.train_labels, minlength=len(self.classes)).tolist()


def find_classes(data_root: str | os.PathLike[str]) -> list[str]:
    """Class names: the sub-folders of ``ROOT/train`` (sorted), i.e. the output order."""
    root = Path(data_root)
    train = root / "train"
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if not train.is_dir():
        raise FileNotFoundError(f"{root} has no train/ folder; expected {root}/train/<Class>/ and {root}/val/<Class>/")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise MushcamError(f"{train} must hold at least two class folders; found {classes or 'none'}")
    return classes


def _scan(folder: Path, classes: list[str], warn: Report) -> tuple[list[Path], list[int]]:
    """Paths and labels of a split; a class folder that training lacks is an error."""
    items = scan_image_folder(folder)
    unknown = sorted({item.label for item in items} - set(classes))
    if unknown:
        raise MushcamError(
            f"{folder} has class folders that train/ lacks: {', '.join(unknown)}; "
            f"the model can only learn the classes in train/ ({', '.join(classes)})"
        )
    index = {name: i for i, name in enumerate(classes)}
    missing = [c for c in classes if c not in {item.label for item in items}]
    if missing:
        warn(f"warning: {folder} has no images of {', '.join(missing)}")
    return [item.path for item in items], [index[item.label] for item in items]


def load_training_data(
    data_root: str | os.PathLike[str],
    image_size: int,
    augment: AugmentConfig = AugmentConfig(),
    warn: Report = print,
) -> TrainingData:
    """Decode ``train``, ``val`` (required) and ``test`` (if present) once, into memory.

    Unreadable photos are skipped with a warning; a class left without training photos is an
    error. Validation/test tensors are ``preprocess(load_image(path), squash spec)`` exactly.
    """
    root = Path(data_root)
    classes = find_classes(root)
    if not (root / "val").is_dir():
        raise FileNotFoundError(f"{root} has no val/ folder: early stopping needs validation photos in {root}/val/<Class>/")
    spec = InputSpec(size=image_size, resize="squash")
    skipped: list[str] = []

    def decode(paths: list[Path], labels: list[int], convert: Callable) -> tuple[list[torch.Tensor], list[int]]:
        out, kept = [], []
        for path, label in zip(paths, labels, strict=True):
            try:
                out.append(convert(load_image(path)))
                kept.append(label)
            except ImageLoadError as exc:
                skipped.append(f"{path}: {exc}")
        return out, kept

    train_paths, train_labels = _scan(root / "train", classes, warn)
    train_images, train_kept = decode(train_paths, train_labels, lambda im: prepare_image(im, image_size, augment.margin))
    val_paths, val_labels = _scan(root / "val", classes, warn)
    val_inputs, val_kept = decode(val_paths, val_labels, lambda im: preprocess(im, spec))
    if not val_inputs:
        raise MushcamError(f"no readable validation photos in {root / 'val'}")
    test_inputs = test_labels = None
    if (root / "test").is_dir():
        test_paths, test_labels_list = _scan(root / "test", classes, warn)
        test_list, test_kept = decode(test_paths, test_labels_list, lambda im: preprocess(im, spec))
        if test_list:
            test_inputs, test_labels = torch.stack(test_list), torch.tensor(test_kept)
    for line in skipped[:10]:
        warn(f"warning: skipped unreadable photo {line}")
    if len(skipped) > 10:
        warn(f"warning: skipped {len(skipped) - 10} more unreadable photos")
    data = TrainingData(
        classes=classes,
        spec=spec,
        train_images=train_images,
        train_labels=torch.tensor(train_kept, dtype=torch.long),
        val_inputs=torch.stack(val_inputs),
        val_labels=torch.tensor(val_kept, dtype=torch.long),
        test_inputs=test_inputs,
        test_labels=test_labels,
        skipped=skipped,
    )
    empty = [c for c, n in zip(classes, data.counts, strict=True) if n == 0]
    if empty:
        raise MushcamError(f"no readable training photos of {', '.join(empty)} in {root / 'train'}")
    return data


def resolve_toxicities(
    classes: Sequence[str], manifest: Manifest | None, fallback: Manifest | None = None, warn: Report = print
) -> list[str]:
    """Toxicity of each class from ``manifest`` (names matched case-insensitively), else from
    ``fallback`` (the output folder's existing manifest), else ``unknown`` with a warning."""
    toxicities, unknown = [], []
    for name in classes:
        found = None
        for source in (manifest, fallback):
            if source is None:
                continue
            with contextlib.suppress(KeyError):
                found = source.toxicity(source.class_names[source.class_index(name)])
                break
        if found is None:
            unknown.append(name)
            found = "unknown"
        toxicities.append(found)
    if unknown:
        warn(
            f"warning: toxicity unknown for {', '.join(unknown)} (not in "
            f"{'the --manifest file' if manifest else 'any manifest: pass --manifest FILE'}); "
            "they get no poisonous weight and count in no dangerous-error rate"
        )
    return toxicities


# --------------------------------------------------------------------------- output folder


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


def _write_manifest(out_dir: Path, classes: Sequence[ClassInfo], spec: InputSpec, entries: dict[str, ModelEntry]) -> None:
    ordered = {b: entries[b] for b in BACKBONES if b in entries}
    save_manifest(Manifest(classes=tuple(classes), input=spec, models=ordered, root=out_dir), out_dir / MANIFEST_NAME)


@contextlib.contextmanager
def _shielded_from_ctrl_c() -> Iterator[None]:
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


def _save_state(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a run (the command line's options)."""

    epochs: int = 30
    image_size: int = 224
    batch_size: int = 32
    poisonous_weight: float = 4.0
    inverse_frequency: bool = False
    pretrained: bool = False
    device: str = "auto"
    seed: int = 0
    lr: float | None = None  # None: 1e-3 from scratch, 3e-4 from ImageNet weights
    weight_decay: float = 0.05
    patience: int = 5
    bn_momentum: float = 0.1  # see set_batchnorm_momentum
    augment: AugmentConfig = AugmentConfig()

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 3e-4 if self.pretrained else 1e-3


@dataclass(frozen=True)
class TrainResult:
    """What one backbone's training produced."""

    backbone: str
    checkpoint: Path
    log: Path
    best_epoch: int
    epochs_run: int
    val: SplitMetrics
    test: SplitMetrics | None
    seconds: float
    stopped_early: bool
    interrupted: bool


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
                with _shielded_from_ctrl_c():
                    if improved:
                        _save_state(model, checkpoint)
                        entries[backbone] = ModelEntry(backbone, checkpoint.name, DEFAULT_LAYERS[backbone])
                        _write_manifest(out_dir, classes, data.spec, entries)
                        best_loss, best_epoch, best_val = val.loss, epoch, val
                    writer.writerow([
                        epoch, f"{train_loss:.5f}", f"{train_acc:.5f}", f"{val.loss:.5f}", f"{val.accuracy:.5f}",
                        f"{val.dangerous_error_rate:.5f}", f"{lr:.3g}", f"{seconds:.1f}", int(improved),
                    ])
                    handle.flush()
                report(
                    f"{backbone} epoch {epoch}/{config.epochs}: train loss {train_loss:.3f} acc {train_acc:.1%} | "
                    f"val loss {val.loss:.3f} acc {val.accuracy:.1%} dangerous {_pct(val.dangerous_error_rate)} | "
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


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


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
    _check_config(config)
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
            _write_summary(out, result, config, data, toxicities)
            raise KeyboardInterrupt
        test = None
        if data.test_inputs is not None and data.test_labels is not None:
            final = load_manifest(out)
            test = evaluate_checkpoint(final, backbone, data.test_inputs, data.test_labels, weights, device)
        result = replace(result, test=test)
        _write_summary(out, result, config, data, toxicities)
        results.append(result)
        report(_summary_line(result))
    return results


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1:
        raise MushcamError(f"--epochs must be at least 1; got {config.epochs}")
    if not 32 <= config.image_size <= 2048:
        raise MushcamError(f"--image-size must be between 32 and 2048; got {config.image_size}")
    if config.batch_size < 2:
        raise MushcamError(f"--batch-size must be at least 2 (BatchNorm needs two images); got {config.batch_size}")
    if not config.poisonous_weight > 0:
        raise MushcamError(f"--poisonous-weight must be positive; got {config.poisonous_weight}")
    if not config.learning_rate > 0:
        raise MushcamError(f"--lr must be positive; got {config.learning_rate}")
    if not 0 < config.bn_momentum <= 1:
        raise MushcamError(f"the BatchNorm momentum must be in (0, 1]; got {config.bn_momentum}")
    if config.patience < 1:
        raise MushcamError(f"--patience must be at least 1; got {config.patience}")


def _summary_line(result: TrainResult) -> str:
    line = (
        f"{result.backbone}: best epoch {result.best_epoch}/{result.epochs_run}, val acc {result.val.accuracy:.1%} "
        f"dangerous {_pct(result.val.dangerous_error_rate)}"
    )
    if result.test is not None:
        line += f"; test acc {result.test.accuracy:.1%} dangerous {_pct(result.test.dangerous_error_rate)}"
    return line + f"; {result.seconds / 60:.1f} min -> {result.checkpoint}"


def _json_metrics(metrics: SplitMetrics) -> dict[str, float | int | None]:
    """Metrics for JSON: an undefined rate (NaN, no poisonous image) becomes null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(metrics).items()}


def _write_summary(
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
        "classes": [{"name": c, "toxicity": t, "train_images": n} for c, t, n in zip(data.classes, toxicities, data.counts, strict=True)],
        "config": {**asdict(config), "learning_rate": config.learning_rate},
    }
    path = out / f"{result.backbone}.train.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- command line


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``python -m mushcam train``."""
    parser = subparsers.add_parser(
        "train",
        help="train backbones on ROOT/train, select on ROOT/val; write checkpoints + manifest.json into --out",
        description=(
            "Train classifiers whose checkpoints the app explains as they are. ROOT holds train/<Class>/ "
            "and val/<Class>/ (and optionally test/<Class>/, scored at the end). Poisonous classes count "
            "--poisonous-weight times in the loss (the thesis: 4)."
        ),
    )
    parser.add_argument("--data", required=True, metavar="ROOT", help="folder with train/<Class>/ and val/<Class>/")
    parser.add_argument("--backbone", required=True, choices=[*BACKBONES, "all"])
    parser.add_argument("--manifest", metavar="FILE", help="manifest (or its folder) giving each class's toxicity")
    parser.add_argument("--epochs", type=int, default=30, metavar="N", help="at most N epochs (default 30)")
    parser.add_argument("--image-size", type=int, default=224, metavar="S", help="network input side in pixels (default 224)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="default 32")
    parser.add_argument("--poisonous-weight", type=float, default=4.0, metavar="W", help="loss weight factor of poisonous classes (default 4)")
    parser.add_argument("--inverse-frequency", action="store_true", help="also weight each class by N / (C * n_c)")
    parser.add_argument("--pretrained", action="store_true", help="start from torchvision's ImageNet weights")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="same seed, same data, same machine: same weights")
    parser.add_argument("--lr", type=float, default=None, metavar="LR", help="peak learning rate (default 1e-3; 3e-4 with --pretrained)")
    parser.add_argument("--weight-decay", type=float, default=0.05, metavar="WD", help="AdamW weight decay (default 0.05)")
    parser.add_argument("--patience", type=int, default=5, metavar="N", help="stop after this many epochs without a better val loss")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: the CPUs available; 1 is faster on a busy shared host)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created); its manifest.json is merged")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    """The ``train`` command: a user error raises ValueError/OSError (one line, exit 2)."""
    threads = args.threads if args.threads is not None else len(os.sched_getaffinity(0))
    if threads < 1:
        raise MushcamError(f"--threads must be at least 1; got {threads}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_train(args)
    finally:
        torch.set_num_threads(previous_threads)  # a caller in the same process keeps its setting


def _run_train(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest) if args.manifest else None
    config = TrainConfig(
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        poisonous_weight=args.poisonous_weight,
        inverse_frequency=args.inverse_frequency,
        pretrained=args.pretrained,
        device=args.device,
        seed=args.seed,
        lr=args.lr,
        weight_decay=args.weight_decay,
        patience=args.patience,
    )
    backbones = list(BACKBONES) if args.backbone == "all" else [args.backbone]
    started = time.perf_counter()
    results = train(
        args.data, backbones, args.out, config, manifest,
        report=lambda line: print(line, flush=True),
        warn=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min; the app explains them with "
          f"MUSHCAM_CHECKPOINTS={Path(args.out).resolve()}", flush=True)
    return 0 if results else 1
