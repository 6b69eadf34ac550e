"""What can be explained: the manifest's models and whether each checkpoint is usable.

Also the explicit demo mode: torchvision's ImageNet-pretrained backbones (1000 classes,
eight of them fungi), used only when the user asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mushcam.manifest import ClassInfo, InputSpec, Manifest, ModelEntry
from mushcam.exceptions import MushcamError
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    DISPLAY_NAMES,
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


def load_catalog_model(manifest: Manifest, name: str, demo: bool = False) -> nn.Module:
    """The manifest's model ``name``, ready for ``grad_cam(model, x, manifest.models[name].layer)``."""
    return load_catalog_entry(manifest, name, demo).model


__all__ = [
    "IMAGENET_FUNGI",
    "LoadedModel",
    "cam_layer",
    "load_catalog_entry",
    "ModelStatus",
    "PretrainedWeightsUnavailable",
    "checkpoint_statuses",
    "demo_weights_available",
    "imagenet_manifest",
    "load_catalog_model",
]
