"""What can be explained: the manifest's models and whether each checkpoint is usable.

This is the one loading path for manifest entries, and where the user's consent to run an
entry's ``code`` is applied: :func:`load_catalog_entry` takes a
:class:`~mushcam.models.consent.CodeConsent`, or the one attached to the manifest by
:func:`with_code_consent` (the command line's ``--trust-code``), or else the one remembered
on the Home page (:mod:`mushcam.settings`). :func:`code_requests` lists what would run.

Also the explicit demo mode: torchvision's ImageNet-pretrained backbones (1000 classes,
eight of them fungi), used only when the user asks for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.manifest import ClassInfo, InputSpec, Manifest, ModelEntry
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    DISPLAY_NAMES,
    LayerError,
    PretrainedWeightsUnavailable,
    choose_layer,
    file_sha256,
    imagenet_weights,
    imagenet_weights_path,
    load_checkpoint,
    load_imagenet_model,
    resolve_layer,
)
from mushcam.models.consent import CodeConsent, CodeConsentError, CodeFile, consent_message, consent_reason
from mushcam.models.heads import describe as describe_head
from mushcam.models.registry import ArchitectureError
from mushcam.models.usercode import UserCodeError, build_from_code, check_kwargs_data, code_files, parse_code

# The preset heads (demo mode describes them).
HEAD_SLOTS = {"resnet50": "fc", "efficientnet_b0": "classifier", "mobilenet_v3_large": "classifier"}

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


@dataclass(frozen=True)
class ConsentedManifest(Manifest):
    """A manifest carrying the user's :class:`CodeConsent` (e.g. ``--trust-code``) to every
    function that loads its models, so jobs deep below a command need no extra argument."""

    code_consent: CodeConsent = field(default_factory=CodeConsent)


def with_code_consent(manifest: Manifest, trust_code: bool = False, consent: CodeConsent | None = None) -> Manifest:
    """``manifest`` with ``consent`` attached (``trust_code=True``: run every entry's code, for
    this command only); unchanged when neither is given (the remembered consent applies)."""
    if consent is None and not trust_code:
        return manifest
    values = {f.name: getattr(manifest, f.name) for f in fields(Manifest)}
    return ConsentedManifest(**values, code_consent=consent or CodeConsent(trust_code=True))


def code_consent(manifest: Manifest, consent: CodeConsent | None = None) -> CodeConsent:
    """The consent that applies: ``consent``, else the manifest's own, else the remembered one."""
    if consent is not None:
        return consent
    attached = getattr(manifest, "code_consent", None)
    return attached if isinstance(attached, CodeConsent) else CodeConsent.remembered()


@dataclass(frozen=True)
class CodeRequest:
    """A manifest entry that wants to run code: its files with their SHA-256 as they are now,
    and whether the consent allows them. ``error``: why the files cannot be listed, if so."""

    name: str
    code: str
    files: tuple[CodeFile, ...] = ()
    trusted: bool = False
    error: str = ""

    @property
    def message(self) -> str:
        """"model 'x' needs your consent to run model.py (sha256 …): …" (empty when trusted)."""
        return "" if self.trusted or self.error else consent_message(self.files, self.name)


def code_requests(manifest: Manifest, consent: CodeConsent | None = None) -> list[CodeRequest]:
    """Every entry with ``code``, in manifest order: what it would run and whether it may (nothing imported)."""
    consent = code_consent(manifest, consent)
    requests = []
    for name, entry in manifest.models.items():
        if not entry.code:
            continue
        try:
            files = tuple(code_files(manifest.root, entry.code))
        except (UserCodeError, OSError) as exc:
            requests.append(CodeRequest(name, entry.code, error=str(exc)))
            continue
        requests.append(CodeRequest(name, entry.code, files, consent.allows(files)))
    return requests


def checkpoint_statuses(manifest: Manifest, consent: CodeConsent | None = None) -> list[ModelStatus]:
    """Cheap file check for every model of the manifest, in its order (no loading). An entry
    whose code the consent does not allow is ``needs consent`` (its reason says how to give it)."""
    waiting = {r.name: r for r in code_requests(manifest, consent) if r.message}
    statuses = []
    for name, entry in manifest.models.items():
        path = manifest.checkpoint_path(name)
        # a device, a pipe or a broken link is "found": loading it says what it is, not "no file"
        found = path.is_file() or ((path.is_symlink() or path.exists()) and not path.is_dir())
        status, reason = ("found", "") if found else ("missing", f"no file at {path}")
        if found and name in waiting:
            status, reason = "needs consent", consent_reason(waiting[name].files)
        statuses.append(ModelStatus(name, status, entry.layer, path, reason,
                                    arch=entry.arch, label=manifest.display_name(name)))
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


def load_catalog_entry(
    manifest: Manifest, name: str, demo: bool = False, consent: CodeConsent | None = None
) -> LoadedModel:
    """Load the manifest's model ``name`` with everything the app shows about it.

    Without ``code`` the checkpoint is recognised as the entry's ``arch`` (no user code runs);
    with ``code`` the user's class is built and the weights loaded strictly, only if
    :func:`code_consent` allows its files as they are now (else :class:`CodeConsentError`,
    before anything is imported). ``kwargs`` may not name files. The layer is the
    entry's (in the source model's naming or the architecture's; returned as the model's own
    path) or, when the entry gives none, chosen automatically at the manifest's input size.
    """
    if demo:
        model = load_imagenet_model(name, download=True)
        return LoadedModel(name, model, name, DEFAULT_LAYERS[name], recognised="torchvision ImageNet weights",
                           head=describe_head(model.get_submodule(HEAD_SLOTS[name])))
    if name not in manifest.models:
        raise MushcamError(f"no model named {name!r} in the manifest "
                           f"(it lists: {', '.join(manifest.models) or 'none'})")
    entry = manifest.models[name]
    path = manifest.checkpoint_path(name)
    check_kwargs_data(entry.kwargs, manifest.root, f"models.{name}.kwargs")
    runs_code = None
    if entry.code:
        model = build_from_code(manifest.root, entry.code, entry.kwargs, path, code_consent(manifest, consent), name)
        runs_code = parse_code(entry.code)[0]
        _check_outputs(model, manifest, name, runs_code)
        arch = entry.code
        head = describe_head(_last_head(model))
        recognised = f"built by your code {entry.code}({_kwargs_text(entry.kwargs)}); weights loaded strictly"
    else:
        try:
            found = load_checkpoint(path, entry.arch, manifest.num_classes, entry.kwargs, entry.head_activation)
        except ArchitectureError as exc:
            raise ArchitectureError(f"models.{name}: {exc}") from None
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
        raise UserCodeError(f"models.{name}: forward of the model from {file_name} raised "
                            f"{type(exc).__name__}: {exc}") from None
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
    return hashlib.sha256(f"{checkpoint_sha256}|{fingerprint}".encode()).hexdigest()


def load_catalog_model(
    manifest: Manifest, name: str, demo: bool = False, consent: CodeConsent | None = None
) -> nn.Module:
    """The manifest's model ``name``, ready for ``grad_cam(model, x, manifest.models[name].layer)``."""
    return load_catalog_entry(manifest, name, demo, consent).model


__all__ = [
    "IMAGENET_FUNGI",
    "CodeConsent",
    "CodeConsentError",
    "CodeRequest",
    "ConsentedManifest",
    "code_consent",
    "code_requests",
    "with_code_consent",
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
