"""What can be explained: the manifest's models and whether each checkpoint is usable.

Also the explicit demo mode: torchvision's ImageNet-pretrained backbones (1000 classes,
eight of them fungi), used only when the user asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.manifest import ClassInfo, InputSpec, Manifest, ModelEntry
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    LayerError,
    PretrainedWeightsUnavailable,
    choose_layer,
    imagenet_weights,
    imagenet_weights_path,
    load_checkpoint,
    load_imagenet_model,
    resolve_layer,
)
from mushcam.models.heads import describe as describe_head
from mushcam.models.usercode import UserCodeError, build_from_code, parse_code

# The preset heads (demo mode describes them).
HEAD_SLOTS = {"resnet50": "fc", "efficientnet_b0": "classifier", "mobilenet_v3_large": "classifier"}

# ImageNet's fungus classes (indices 991-998), highlighted in demo mode.
IMAGENET_FUNGI: tuple[str, ...] = (
    "coral fungus", "agaric", "gyromitra", "stinkhorn", "earthstar", "hen-of-the-woods", "bolete", "ear",
)


@dataclass(frozen=True)
class ModelStatus:
    """One backbone's checkpoint: ``found`` (file present), ``missing``, or ``not listed``."""

    backbone: str
    status: str
    layer: str
    path: Path | None = None
    reason: str = ""


def checkpoint_statuses(manifest: Manifest) -> list[ModelStatus]:
    """Cheap file check for every backbone (no loading): what a home page lists first."""
    statuses = []
    for backbone in BACKBONES:
        entry = manifest.models.get(backbone)
        if entry is None:
            statuses.append(ModelStatus(backbone, "not listed", DEFAULT_LAYERS[backbone], None, "not in the manifest"))
            continue
        path = manifest.checkpoint_path(backbone)
        if path.is_file():
            statuses.append(ModelStatus(backbone, "found", entry.layer, path))
        else:
            statuses.append(ModelStatus(backbone, "missing", entry.layer, path, f"no file at {path}"))
    return statuses


def imagenet_manifest() -> Manifest:
    """Demo mode's manifest: ImageNet's 1000 categories (toxicity unknown), centre-crop input."""
    categories = imagenet_weights("resnet50").meta["categories"]
    return Manifest(
        classes=tuple(ClassInfo(name, "unknown") for name in categories),
        input=InputSpec(size=224, resize="center_crop"),
        models={b: ModelEntry(b, str(imagenet_weights_path(b)), DEFAULT_LAYERS[b]) for b in BACKBONES},
        root=Path("/"),
    )


def demo_weights_available(backbone: str) -> bool:
    """Whether the ImageNet weights are already in the torch cache (no download needed)."""
    return imagenet_weights_path(backbone).is_file()


@dataclass(frozen=True)
class LoadedModel:
    """A named manifest model, loaded, and how it was understood (shown on the Home page).

    ``model``: eval mode, float32, CPU. ``arch``: the architecture it was built as.
    ``layer``: the Grad-CAM layer as a path that ``grad_cam(model, x, layer)`` accepts;
    ``layer_note``: where it came from ("from the manifest", "chosen automatically: ...").
    ``head``: the head as rebuilt (``Dropout → Linear(2048→512) → ReLU → Linear(512→9)``).
    ``recognised``: how the checkpoint was read. ``runs_code``: the user's file when the
    entry builds the model from their own code, else ``None``.
    """

    name: str
    model: nn.Module
    arch: str
    layer: str
    layer_note: str = "from the manifest"
    head: str = ""
    recognised: str = ""
    runs_code: str | None = None


def load_catalog_entry(manifest: Manifest, name: str, demo: bool = False) -> LoadedModel:
    """Load the manifest's model ``name`` with everything the app shows about it.

    Without ``code`` the checkpoint is recognised as the entry's ``arch`` (no user code runs);
    with ``code`` the user's class is built and the weights loaded strictly. The layer is the
    entry's (in the source model's naming or the architecture's; returned as the model's own
    path) or, when the entry gives none, chosen automatically at the manifest's input size.
    """
    if demo:
        model = load_imagenet_model(name, download=True)
        return LoadedModel(name, model, name, DEFAULT_LAYERS[name], recognised="torchvision ImageNet weights",
                           head=describe_head(model.get_submodule(HEAD_SLOTS[name])))
    if name not in manifest.models:
        raise MushcamError(f"model {name!r} is not in the manifest (models: {', '.join(manifest.models) or 'none'})")
    entry = manifest.models[name]
    path = manifest.checkpoint_path(name)
    runs_code = None
    if entry.code:
        model = build_from_code(manifest.root, entry.code, entry.kwargs, path)
        runs_code = parse_code(entry.code)[0]
        _check_outputs(model, manifest, name, runs_code)
        arch = entry.code
        head = describe_head(_last_head(model))
        recognised = f"built by your code {entry.code}({_kwargs_text(entry.kwargs)}); weights loaded strictly"
    else:
        found = load_checkpoint(path, entry.arch, manifest.num_classes, entry.kwargs, entry.head_activation)
        model, arch, head, recognised = found.model, found.arch, found.head, found.how
    if entry.layer:
        try:
            layer = resolve_layer(model, entry.layer)
        except LayerError as exc:
            raise LayerError(f"models.{name}.layer: {exc}") from None
        note = "from the manifest" if layer == entry.layer else f"from the manifest ({entry.layer} = {layer})"
    else:
        layer, note = choose_layer(model, manifest.input.size)
    return LoadedModel(name, model, arch, layer, note, head, recognised, runs_code)


def _check_outputs(model: nn.Module, manifest: Manifest, name: str, file_name: str) -> None:
    """The user's model must return N x C logits for the manifest's C classes (one small forward)."""
    x = torch.zeros(1, 3, manifest.input.size, manifest.input.size)
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as exc:  # noqa: BLE001 - the user's forward
        raise UserCodeError(f"models.{name}: forward of the model from {file_name} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] != manifest.num_classes:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserCodeError(
            f"models.{name}: the model from {file_name} returns {shape}, but the manifest lists "
            f"{manifest.num_classes} classes (expected logits of shape N x {manifest.num_classes}; check 'kwargs')"
        )


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _last_head(model: nn.Module) -> nn.Module:
    """The last top-level part of a user's model that holds a Linear layer (its head, usually)."""
    parts = [child for child in model.children() if any(isinstance(m, nn.Linear) for m in child.modules())]
    return parts[-1] if parts else nn.Identity()


def load_catalog_model(manifest: Manifest, name: str, demo: bool = False) -> nn.Module:
    """The manifest's model ``name``, ready for ``grad_cam(model, x, manifest.models[name].layer)``."""
    return load_catalog_entry(manifest, name, demo).model


__all__ = [
    "IMAGENET_FUNGI",
    "LoadedModel",
    "load_catalog_entry",
    "ModelStatus",
    "PretrainedWeightsUnavailable",
    "checkpoint_statuses",
    "demo_weights_available",
    "imagenet_manifest",
    "load_catalog_model",
]
