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

import json
import math
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mushcam.exceptions import MushcamError
from mushcam.models import BACKBONES, DEFAULT_LAYERS, DISPLAY_NAMES
from mushcam.text import file_safe_name  # noqa: F401  (re-exported: its old home)
from mushcam.toxicity import TOXICITIES, Toxicity

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
MAX_MANIFEST_BYTES = 4 * 2**20  # a manifest is a few kilobytes; anything this large is a mistake
MAX_NESTING = 32  # the deepest a valid manifest goes is 4 (kwargs may nest a little more)
MIN_STD = 1e-3  # a smaller std multiplies pixel values by over 1000: a typo, not a normalisation


class ManifestError(MushcamError):
    """The manifest is missing, not JSON, or a field is wrong (the message names it)."""


@dataclass(frozen=True)
class ClassInfo:
    name: str
    toxicity: str = Toxicity.UNKNOWN.value


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

    def display_name(self, name: str) -> str:
        """What the app calls the model ``name``: its label, a preset's name, or ``name`` itself."""
        entry = self.models.get(name)
        return entry.display_name if entry is not None else DISPLAY_NAMES.get(name, name)

    def checkpoint_path(self, name: str) -> Path:
        """Absolute path of a model's checkpoint (relative paths are from ``root``)."""
        entry = self.models[name]
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
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; a manifest is a small JSON file "
                f"(at most {MAX_MANIFEST_BYTES // 2**20} MB): is this the right file?"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path.name} is not UTF-8 text; save the manifest as UTF-8 JSON") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    return manifest_from_dict(parse_json(text, path.name), root=path.parent.resolve(), source=path.name)


def _refuse_constant(name: str) -> float:
    raise ManifestError(f"{name} is not allowed (JSON has no NaN or Infinity); write a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ManifestError(f"the number {text[:40]} is too large to be finite; write a finite number")
    return value


def parse_json(text: str, source: str = "manifest") -> Any:
    """Strict JSON: no ``NaN`` / ``Infinity``, nesting at most :data:`MAX_NESTING` deep.

    Python's ``json`` accepts ``NaN`` and ``Infinity`` (not JSON), raises RecursionError on
    input nested some thousands deep, and ValueError on integers of over 4,300 digits; each
    of these becomes a :class:`ManifestError` that says what to fix.
    """
    depth = _nesting_depth(text)
    if depth > MAX_NESTING:
        raise ManifestError(
            f"{source} is nested too deeply: lists or objects more than {MAX_NESTING} levels deep; a MushCAM manifest "
            "needs at most a few (see docs/manifest.md)"
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits
        raise ManifestError(f"{source} holds a value that cannot be read: {str(exc).split(';')[0]}") from None


def _nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting outside strings, up to ``MAX_NESTING + 1`` (a linear scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_NESTING:
                    return deepest  # deep enough to refuse; no need to read on
        elif char in "]}":
            depth -= 1
    return deepest


Fail = Callable[[str, str], ManifestError]


def manifest_from_dict(
    data: Any, root: str | os.PathLike[str] = ".", source: str = "manifest"
) -> Manifest:
    """Validate a parsed manifest; errors name the offending field."""

    def fail(where: str, what: str) -> ManifestError:
        return ManifestError(f"{source}: field '{where}' {what}")

    if not isinstance(data, dict):
        raise ManifestError(f"{source}: must be a JSON object")
    return Manifest(
        classes=_classes(data.get("classes"), fail),
        input=_input_spec(data.get("input", {}), fail),
        models=_models(data.get("models", {}), fail),
        root=Path(root),
    )


def _classes(raw_classes: Any, fail: Fail) -> tuple[ClassInfo, ...]:
    """``classes``: a non-empty list of names or ``{name, toxicity}`` objects, names unique."""
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
        toxicity = item.get("toxicity", Toxicity.UNKNOWN.value)
        if toxicity not in TOXICITIES:
            raise fail(f"classes[{i}].toxicity", f"must be one of {', '.join(TOXICITIES)}; got {_short(toxicity)}")
        classes.append(ClassInfo(name.strip(), toxicity))
    _check_unique([c.name for c in classes], fail)
    return tuple(classes)


def class_key(name: str) -> str:
    """A class name as matching sees it: NFKC-normalised and case-folded (``Amanita`` =
    ``amanita`` = ``ＡＭＡＮＩＴＡ``), the way ``--target`` and class folders are matched."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _check_unique(names: list[str], fail: Fail) -> None:
    """Class names must differ after :func:`class_key`: two that collide would be one class to
    ``class_index`` and on a case-insensitive disk, so which one is meant is refused, not guessed."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    duplicates = sorted(n for n, count in counts.items() if count > 1)
    if duplicates:
        raise fail("classes", f"has duplicate names: {', '.join(duplicates)}")
    seen: dict[str, str] = {}
    for name in names:
        first = seen.setdefault(class_key(name), name)
        if first != name:
            raise fail("classes", f"has {first!r} and {name!r}, which differ only in case or Unicode form; class "
                                  "names are matched case-insensitively (--target, class folders), so rename one")


def _input_spec(raw_input: Any, fail: Fail) -> InputSpec:
    """``input``: size, resize mode, mean and std (defaults: 224, squash, ImageNet's)."""
    if not isinstance(raw_input, dict):
        raise fail("input", "must be an object")
    size = raw_input.get("size", 224)
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 2048:
        raise fail("input.size", f"must be an integer between 16 and 2048; got {_short(size)}")
    resize = raw_input.get("resize", "squash")
    if resize not in RESIZE_MODES:
        raise fail("input.resize", f"must be one of {', '.join(RESIZE_MODES)}; got {_short(resize)}")
    mean = _triple(raw_input.get("mean", list(IMAGENET_MEAN)), "input.mean", fail, positive=False)
    std = _triple(raw_input.get("std", list(IMAGENET_STD)), "input.std", fail, positive=True)
    return InputSpec(size=size, resize=resize, mean=mean, std=std)


def _models(raw_models: Any, fail: Fail) -> dict[str, ModelEntry]:
    """``models``: entries keyed by the user's model name; no two shown under one label."""
    if not isinstance(raw_models, dict):
        raise fail("models", "must be an object keyed by model name")
    models = {}
    for name, entry in raw_models.items():
        if not isinstance(name, str) or not name.strip():
            raise fail("models", "has an empty model name")
        models[name] = _model_entry(name, entry, fail)
    shown: dict[str, str] = {}
    for name, entry in models.items():  # the pages tell models apart by what they show
        other = shown.setdefault(entry.display_name, name)
        if other != name:
            raise fail(f"models.{name}.label", f"shows the model as {entry.display_name!r}, as models.{other} is "
                       "shown: give one of them another label")
    return models


def _model_entry(name: str, entry: Any, fail: Fail) -> ModelEntry:
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
        choices = ", ".join(HEAD_ACTIVATIONS)
        raise fail(f"{where}.head_activation", f"must be one of {choices}; got {_short(activation)}")
    code = entry.get("code")
    if code is not None and (not isinstance(code, str) or code.count(":") != 1 or not all(code.split(":"))):
        raise fail(f"{where}.code", f"must be 'file.py:ClassName' (a file beside the manifest); got {_short(code)}")
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise fail(f"{where}.kwargs", "must be an object of keyword arguments")
    _check_finite(kwargs, f"{where}.kwargs", fail)
    return ModelEntry(
        name=name, checkpoint=checkpoint.strip(), layer=layer.strip() if layer else None, arch=arch,
        label=label.strip(), head_activation=activation, code=code, kwargs=dict(kwargs),
    )


def _triple(value: Any, where: str, fail: Fail, positive: bool) -> tuple[float, float, float]:
    """Three finite numbers (a per-channel mean or std); a std must be at least :data:`MIN_STD`.

    Normalisation is ``(pixel - mean) / std`` with pixels in [0, 1]: a NaN or infinite value
    gives NaN predictions or a channel silently zeroed, and a std near 0 blows a channel up.
    """
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        kind = "positive numbers" if positive else "numbers"
        raise fail(where, f"must be a list of 3 {kind} (one per RGB channel); got {_short(value)}")
    try:
        numbers = tuple(float(v) for v in value)
    except OverflowError:
        raise fail(where, f"holds a number too large to be finite; got {_short(value)}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise fail(where, f"must hold finite numbers (not NaN or Infinity); got {_short(value)}")
    if positive and not all(v >= MIN_STD for v in numbers):
        raise fail(where, f"must hold numbers of at least {MIN_STD:g} (a standard deviation of pixel "
                          f"values in [0, 1], such as 0.229); got {_short(value)}")
    if not positive and not all(abs(v) <= 1e3 for v in numbers):
        raise fail(where, f"must hold the mean of pixel values in [0, 1] (such as 0.485); got {_short(value)}")
    return numbers  # type: ignore[return-value]


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (a 5,000-digit number must not fill the screen)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "a number of thousands of digits"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_finite(value: Any, where: str, fail: Fail) -> None:
    """Every number in ``value`` (nested lists / objects) is finite."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise fail(at, f"must be a finite number; got {item!r}")
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}") for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))


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
