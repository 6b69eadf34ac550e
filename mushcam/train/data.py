"""The photos a run learns from: the classes (``ROOT/train/<Class>/``), every split decoded once
into memory, and each class's toxicity."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mushcam.augment import AugmentConfig, prepare_image
from mushcam.data import ImageLoadError, load_image, preprocess, scan_image_folder
from mushcam.exceptions import MushcamError
from mushcam.manifest import InputSpec, Manifest
from mushcam.toxicity import Toxicity

Report = Callable[[str], None]


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


def _decode(
    paths: list[Path], labels: list[int], convert: Callable, skipped: list[str]
) -> tuple[list[torch.Tensor], list[int]]:
    """Each photo converted, with its label; an unreadable one is added to ``skipped``."""
    out, kept = [], []
    for path, label in zip(paths, labels, strict=True):
        try:
            out.append(convert(load_image(path)))
            kept.append(label)
        except ImageLoadError as exc:
            skipped.append(f"{path}: {exc}")
    return out, kept


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
        raise FileNotFoundError(
            f"{root} has no val/ folder: early stopping needs validation photos in {root}/val/<Class>/"
        )
    spec = InputSpec(size=image_size, resize="squash")
    skipped: list[str] = []

    train_paths, train_labels = _scan(root / "train", classes, warn)
    train_images, train_kept = _decode(
        train_paths, train_labels, lambda im: prepare_image(im, image_size, augment.margin), skipped
    )
    val_paths, val_labels = _scan(root / "val", classes, warn)
    val_inputs, val_kept = _decode(val_paths, val_labels, lambda im: preprocess(im, spec), skipped)
    if not val_inputs:
        raise MushcamError(f"no readable validation photos in {root / 'val'}")
    test_inputs = test_labels = None
    if (root / "test").is_dir():
        test_paths, test_labels_list = _scan(root / "test", classes, warn)
        test_list, test_kept = _decode(test_paths, test_labels_list, lambda im: preprocess(im, spec), skipped)
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
            found = Toxicity.UNKNOWN.value
        toxicities.append(found)
    if unknown:
        warn(
            f"warning: toxicity unknown for {', '.join(unknown)} (not in "
            f"{'the --manifest file' if manifest else 'any manifest: pass --manifest FILE'}); "
            "they get no poisonous weight and count in no dangerous-error rate"
        )
    return toxicities
