"""The checkpoint manifest: classes with toxicity, the input spec, and the models.

``checkpoints/manifest.json`` is edited by users, so every field is validated and an error
names the field. Example::

    {
      "classes": [{"name": "Amanita", "toxicity": "poisonous"}, ...],
      "input": {"size": 224, "resize": "squash",
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
      "models": {"resnet50": {"checkpoint": "resnet50.pt", "layer": "layer4"}}
    }
"""

from __future__ import annotations

from mushcam.exceptions import MushcamError

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mushcam.models import BACKBONES, DEFAULT_LAYERS

TOXICITIES: tuple[str, ...] = ("poisonous", "edible", "inedible", "mixed", "unknown")
RESIZE_MODES: tuple[str, ...] = ("squash", "center_crop")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The thesis's 9 genera, with the toxicity it implies (section 4.4.3).
THESIS_CLASSES: tuple[tuple[str, str], ...] = (
    ("Agaricus", "edible"),
    ("Amanita", "poisonous"),
    ("Boletus", "edible"),
    ("Cortinarius", "poisonous"),
    ("Entoloma", "poisonous"),
    ("Hygrocybe", "edible"),
    ("Lactarius", "edible"),
    ("Russula", "edible"),
    ("Suillus", "edible"),
)

MANIFEST_NAME = "manifest.json"


class ManifestError(MushcamError):
    """The manifest is missing, not JSON, or a field is wrong (the message names it)."""


@dataclass(frozen=True)
class ClassInfo:
    name: str
    toxicity: str = "unknown"


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the network's input: size, resize mode, normalisation."""

    size: int = 224
    resize: str = "squash"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


HEAD_ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu", "hardswish", "none")


@dataclass(frozen=True)
class ModelEntry:
    """One named model of the manifest.

    ``name``: the user's key in ``models`` (everything downstream is keyed by it).
    ``arch``: a torchvision classification model name (``resnet50``), ``timm:NAME``, or a
    preset; defaults to the name, so older manifests keyed by backbone keep working.
    ``layer``: the Grad-CAM layer as a dotted path (the source model's or the
    architecture's own); ``None`` = found automatically. ``label``: display name.
    ``head_activation``: the activation between hidden Linear layers of a custom head
    (parameter-free modules cannot be read from a state dict). ``code`` /
    ``kwargs``: ``"file.py:ClassName"`` beside the manifest and its keyword arguments, to
    build the model from the user's own code (run only when an entry names it).
    """

    name: str
    checkpoint: str
    layer: str | None = None
    arch: str = ""
    label: str = ""
    head_activation: str = "relu"
    code: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.arch:
            object.__setattr__(self, "arch", self.name)

    @property
    def backbone(self) -> str:
        """The architecture (the field's old name, kept for older callers)."""
        return self.arch

    @property
    def display_name(self) -> str:
        """``label`` if given, else the preset's display name, else the user's name."""
        from mushcam.models import DISPLAY_NAMES

        return self.label or (DISPLAY_NAMES.get(self.name) if self.name == self.arch else None) or self.name


@dataclass(frozen=True)
class Manifest:
    classes: tuple[ClassInfo, ...]
    input: InputSpec = InputSpec()
    models: dict[str, ModelEntry] = field(default_factory=dict)
    root: Path = Path(".")  # folder the checkpoint paths are relative to

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def toxicity(self, class_name_or_index: str | int) -> str:
        """Toxicity of a class by name or output index."""
        if isinstance(class_name_or_index, int):
            return self.classes[class_name_or_index].toxicity
        for info in self.classes:
            if info.name == class_name_or_index:
                return info.toxicity
        raise KeyError(class_name_or_index)

    def class_index(self, name: str) -> int:
        """Output index of a class name (exact, then case-insensitive)."""
        names = self.class_names
        if name in names:
            return names.index(name)
        lowered = [n.lower() for n in names]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        raise KeyError(f"unknown class {name!r}; classes are: {', '.join(names)}")

    def checkpoint_path(self, backbone: str) -> Path:
        """Absolute path of a backbone's checkpoint (relative paths are from ``root``)."""
        entry = self.models[backbone]
        path = Path(entry.checkpoint).expanduser()
        return path if path.is_absolute() else self.root / path

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": [{"name": c.name, "toxicity": c.toxicity} for c in self.classes],
            "input": {
                "size": self.input.size,
                "resize": self.input.resize,
                "mean": list(self.input.mean),
                "std": list(self.input.std),
            },
            "models": {name: _entry_dict(m) for name, m in self.models.items()},
        }


def _entry_dict(entry: ModelEntry) -> dict[str, Any]:
    """A model entry as manifest JSON: only the fields that differ from their defaults."""
    out: dict[str, Any] = {"checkpoint": entry.checkpoint}
    if entry.arch != entry.name:
        out["arch"] = entry.arch
    if entry.layer is not None:
        out["layer"] = entry.layer
    if entry.label:
        out["label"] = entry.label
    if entry.head_activation != "relu":
        out["head_activation"] = entry.head_activation
    if entry.code:
        out["code"] = entry.code
    if entry.kwargs:
        out["kwargs"] = dict(entry.kwargs)
    return out


def default_manifest(root: str | os.PathLike[str] = ".") -> Manifest:
    """The thesis's 9 genera, 224 px squash input, one ``<backbone>.pt`` per backbone."""
    return Manifest(
        classes=tuple(ClassInfo(n, t) for n, t in THESIS_CLASSES),
        models={b: ModelEntry(b, f"{b}.pt", DEFAULT_LAYERS[b]) for b in BACKBONES},
        root=Path(root),
    )


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file (or ``manifest.json`` inside a folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path.name} is not valid JSON: {exc}") from None
    return manifest_from_dict(data, root=path.parent.resolve(), source=path.name)


def manifest_from_dict(
    data: Any, root: str | os.PathLike[str] = ".", source: str = "manifest"
) -> Manifest:
    """Validate a parsed manifest; errors name the offending field."""

    def fail(where: str, what: str) -> ManifestError:
        return ManifestError(f"{source}: field '{where}' {what}")

    if not isinstance(data, dict):
        raise ManifestError(f"{source}: must be a JSON object")
    raw_classes = data.get("classes")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise fail("classes", "must be a non-empty list")
    classes = []
    for i, item in enumerate(raw_classes):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise fail(f"classes[{i}]", "must be an object with 'name' and 'toxicity'")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise fail(f"classes[{i}].name", "must be a non-empty string")
        toxicity = item.get("toxicity", "unknown")
        if toxicity not in TOXICITIES:
            raise fail(f"classes[{i}].toxicity", f"must be one of {', '.join(TOXICITIES)}; got {toxicity!r}")
        classes.append(ClassInfo(name.strip(), toxicity))
    names = [c.name for c in classes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail("classes", f"has duplicate names: {', '.join(duplicates)}")

    raw_input = data.get("input", {})
    if not isinstance(raw_input, dict):
        raise fail("input", "must be an object")
    size = raw_input.get("size", 224)
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 2048:
        raise fail("input.size", f"must be an integer between 16 and 2048; got {size!r}")
    resize = raw_input.get("resize", "squash")
    if resize not in RESIZE_MODES:
        raise fail("input.resize", f"must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    mean = _triple(raw_input.get("mean", list(IMAGENET_MEAN)), "input.mean", fail, positive=False)
    std = _triple(raw_input.get("std", list(IMAGENET_STD)), "input.std", fail, positive=True)

    raw_models = data.get("models", {})
    if not isinstance(raw_models, dict):
        raise fail("models", "must be an object keyed by model name")
    models = {}
    for name, entry in raw_models.items():
        if not isinstance(name, str) or not name.strip():
            raise fail("models", "has an empty model name")
        models[name] = _model_entry(name, entry, fail)

    return Manifest(
        classes=tuple(classes),
        input=InputSpec(size=size, resize=resize, mean=mean, std=std),
        models=models,
        root=Path(root),
    )


def _model_entry(name: str, entry: Any, fail: Any) -> ModelEntry:
    """One ``models`` entry: a checkpoint file name, or an object with the fields below."""
    where = f"models.{name}"
    if isinstance(entry, str):
        entry = {"checkpoint": entry}
    if not isinstance(entry, dict):
        raise fail(where, "must be an object with 'checkpoint' (and optionally 'arch', 'layer', 'label')")
    known = {"arch", "checkpoint", "layer", "label", "head_activation", "code", "kwargs"}
    unknown = sorted(str(k) for k in entry if k not in known)
    if unknown:
        raise fail(f"{where}.{unknown[0]}", f"is not a model field (fields: {', '.join(sorted(known))})")
    checkpoint = entry.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint.strip():
        raise fail(f"{where}.checkpoint", "must be a file name")
    arch = entry.get("arch", name)
    if not isinstance(arch, str) or not arch.strip():
        raise fail(f"{where}.arch", "must be a model architecture name such as 'resnet50' or 'timm:resnet18'")
    arch = arch.strip()
    layer = entry.get("layer", DEFAULT_LAYERS.get(arch))
    if layer is not None and (not isinstance(layer, str) or not layer.strip()):
        raise fail(f"{where}.layer", "must be a dotted module path such as 'layer4' (or left out: found automatically)")
    label = entry.get("label", "")
    if not isinstance(label, str):
        raise fail(f"{where}.label", "must be a string")
    activation = entry.get("head_activation", "relu")
    if activation not in HEAD_ACTIVATIONS:
        raise fail(f"{where}.head_activation", f"must be one of {', '.join(HEAD_ACTIVATIONS)}; got {activation!r}")
    code = entry.get("code")
    if code is not None and (not isinstance(code, str) or code.count(":") != 1 or not all(code.split(":"))):
        raise fail(f"{where}.code", f"must be 'file.py:ClassName' (a file beside the manifest); got {code!r}")
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise fail(f"{where}.kwargs", "must be an object of keyword arguments")
    return ModelEntry(
        name=name, checkpoint=checkpoint.strip(), layer=layer.strip() if layer else None, arch=arch,
        label=label.strip(), head_activation=activation, code=code, kwargs=dict(kwargs),
    )


def _triple(value: Any, where: str, fail: Any, positive: bool) -> tuple[float, float, float]:
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and (not positive or all(v > 0 for v in value))
    )
    if not ok:
        kind = "positive numbers" if positive else "numbers"
        raise fail(where, f"must be a list of 3 {kind}; got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def save_manifest(manifest: Manifest, path: str | os.PathLike[str]) -> None:
    """Write a manifest as indented JSON (atomically: a temp file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def default_checkpoint_dir() -> Path:
    """``$MUSHCAM_CHECKPOINTS`` if set, else the project's ``checkpoints/`` folder."""
    configured = os.environ.get("MUSHCAM_CHECKPOINTS", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parent.parent / "checkpoints"
