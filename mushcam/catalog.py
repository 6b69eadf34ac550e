"""What can be explained: the manifest's models and whether each checkpoint is usable.

Also the explicit demo mode: torchvision's ImageNet-pretrained backbones (1000 classes,
eight of them fungi), used only when the user asks for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mushcam.manifest import ClassInfo, InputSpec, Manifest, ModelEntry
from mushcam.exceptions import MushcamError
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    DISPLAY_NAMES,
    file_sha256,
    PretrainedWeightsUnavailable,
    imagenet_weights,
    imagenet_weights_path,
    load_imagenet_model,
    load_model,
)

# ImageNet's fungus classes (indices 991-998), highlighted in demo mode.
IMAGENET_FUNGI: tuple[str, ...] = (
    "coral fungus", "agaric", "gyromitra", "stinkhorn", "earthstar", "hen-of-the-woods", "bolete", "ear",
)


@dataclass(frozen=True)
class ModelStatus:
    """One named model's checkpoint file: ``found`` (present) or ``missing`` (``reason`` says where).

    ``name``: the manifest's key; ``arch``: its architecture; ``label``: what the app shows;
    ``layer``: the manifest's layer, or ``None`` when it is found at load.
    """

    name: str
    status: str
    layer: str | None
    path: Path | None = None
    reason: str = ""
    arch: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if not self.arch:
            object.__setattr__(self, "arch", self.name)
        if not self.label:
            object.__setattr__(self, "label", DISPLAY_NAMES.get(self.name, self.name))

    @property
    def backbone(self) -> str:
        """The model's name (this field's old name, kept for older callers)."""
        return self.name


def checkpoint_statuses(manifest: Manifest) -> list[ModelStatus]:
    """Cheap file check for every model of the manifest, in its order (no loading)."""
    statuses = []
    for name, entry in manifest.models.items():
        path = manifest.checkpoint_path(name)
        found = path.is_file()
        statuses.append(ModelStatus(
            name, "found" if found else "missing", entry.layer, path, "" if found else f"no file at {path}",
            arch=entry.arch, label=manifest.display_name(name),
        ))
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
    """Load the manifest's model ``name`` with everything the app shows about it."""
    if demo:
        model = load_imagenet_model(name, download=True)
        return LoadedModel(name, model, name, DEFAULT_LAYERS[name], recognised="torchvision ImageNet weights")
    if name not in manifest.models:
        raise MushcamError(f"no model named {name!r} in the manifest (it lists: {', '.join(manifest.models) or 'none'})")
    entry = manifest.models[name]
    model = load_model(entry.arch, manifest.checkpoint_path(name), num_classes=manifest.num_classes)
    layer = entry.layer or DEFAULT_LAYERS[entry.arch]
    return LoadedModel(name, model, entry.arch, layer, recognised="stock torchvision state dict")


def cam_layer(manifest: Manifest, name: str, loaded: LoadedModel | None = None) -> str | None:
    """The layer at which ``name``'s maps are computed and cached.

    The manifest's own spelling when the entry names one (``grad_cam`` accepts it in either
    form), so that the app, the command line and the shared CAM cache agree without loading
    the model; else the layer chosen at load (``None`` until the model is loaded).
    """
    entry = manifest.models.get(name)
    if entry is not None and entry.layer:
        return entry.layer
    return loaded.layer if loaded is not None else None


def entry_fingerprint(manifest: Manifest, name: str) -> str:
    """What, besides the weights file, changes the function a named model computes: its head
    activation, its ``code`` (and that file's contents) and ``kwargs``. ``""`` for an entry
    that sets none of them (every preset entry), so such a model's maps keep the cache keys
    they had before models had names."""
    entry = manifest.models[name]
    if entry.head_activation == "relu" and not entry.code and not entry.kwargs:
        return ""
    fields: dict[str, object] = {"head_activation": entry.head_activation, "code": entry.code, "kwargs": entry.kwargs}
    if entry.code:
        code_file = manifest.root / entry.code.split(":", 1)[0]
        fields["code_sha256"] = file_sha256(code_file) if code_file.is_file() else "absent"
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_digest(checkpoint_sha256: str, fingerprint: str) -> str:
    """The model part of a CAM cache key: the weights' SHA-256, combined with the entry's
    :func:`entry_fingerprint` when it has one. Two names for the same weights and fields share
    maps (they are the same function); two fields that differ never do."""
    if not fingerprint:
        return checkpoint_sha256
    return hashlib.sha256(f"{checkpoint_sha256}|{fingerprint}".encode("utf-8")).hexdigest()


def load_catalog_model(manifest: Manifest, name: str, demo: bool = False) -> nn.Module:
    """The manifest's model ``name``, ready for ``grad_cam(model, x, manifest.models[name].layer)``."""
    return load_catalog_entry(manifest, name, demo).model


__all__ = [
    "IMAGENET_FUNGI",
    "LoadedModel",
    "cache_digest",
    "cam_layer",
    "entry_fingerprint",
    "load_catalog_entry",
    "ModelStatus",
    "PretrainedWeightsUnavailable",
    "checkpoint_statuses",
    "demo_weights_available",
    "imagenet_manifest",
    "load_catalog_model",
]
