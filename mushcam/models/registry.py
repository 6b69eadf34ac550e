"""Architectures by name: the thesis's three presets, any torchvision classifier, ``timm:NAME``.

A preset keeps its thesis layer (``DEFAULT_LAYERS``). Every architecture is built without
downloading anything (``weights=None``), on the ``meta`` device when its constructor allows
(no memory is spent on a random initialisation that the checkpoint overwrites). A
:class:`Skeleton` describes an architecture's parameter names and shapes and where its
classification head sits, which is what checkpoint recognition matches against.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from mushcam.exceptions import MushcamError
from mushcam.models import options as arch_options

BACKBONES: tuple[str, ...] = ("resnet50", "efficientnet_b0", "mobilenet_v3_large")

DEFAULT_LAYERS: dict[str, str] = {
    "resnet50": "layer4",
    "efficientnet_b0": "features.7",
    "mobilenet_v3_large": "features.16",
}

# The final Linear layer of each preset: its weight's first dimension is the class count.
HEAD_WEIGHT_KEYS: dict[str, str] = {
    "resnet50": "fc.weight",
    "efficientnet_b0": "classifier.1.weight",
    "mobilenet_v3_large": "classifier.3.weight",
}

DISPLAY_NAMES: dict[str, str] = {
    "resnet50": "ResNet-50",
    "efficientnet_b0": "EfficientNet-B0",
    "mobilenet_v3_large": "MobileNetV3-Large",
}

TIMM_PREFIX = "timm:"
# A class count no architecture uses inside its trunk: finds the final layer of a skeleton.
_PROBE_CLASSES = 1237

_PRESET_CONSTRUCTORS: dict[str, Callable[..., nn.Module]] = {
    "resnet50": tvm.resnet50,
    "efficientnet_b0": tvm.efficientnet_b0,
    "mobilenet_v3_large": tvm.mobilenet_v3_large,
}

_IMAGENET_WEIGHTS = {
    "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2,
    "efficientnet_b0": tvm.EfficientNet_B0_Weights.IMAGENET1K_V1,
    "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
}

# Parameter-free modules that may sit around a head's Linear layers.
_PARAMETER_FREE_HEAD = (nn.Dropout, nn.Identity, nn.Flatten, nn.ReLU, nn.GELU, nn.SiLU, nn.Hardswish,
                        nn.Tanh, nn.AdaptiveAvgPool2d)


class ArchitectureError(MushcamError):
    """An architecture name that cannot be built here (unknown, or timm not installed)."""


def torchvision_architectures() -> list[str]:
    """torchvision's classification models (``resnet18`` ... ``vit_b_16``, ``swin_t``)."""
    return sorted(tvm.list_models(module=tvm))


def check_architecture(arch: str) -> None:
    """Raise :class:`ArchitectureError` naming close matches if ``arch`` cannot be built."""
    if arch.startswith(TIMM_PREFIX):
        timm = _import_timm(arch)
        name = arch[len(TIMM_PREFIX):]
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
            raise ArchitectureError(f"timm has no model named {name!r}{hint}")
        return
    names = torchvision_architectures()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ArchitectureError(
            f"unknown architecture {arch!r}.{hint} Use a torchvision classification model name "
            f"(resnet18 … wide_resnet101_2, efficientnet_b0 … b7, convnext_tiny, vit_b_16, swin_t, …) "
            "or 'timm:NAME'; or build it from your own code with the entry's 'code' field"
        )


def _import_timm(arch: str):  # noqa: ANN202 - the timm module
    try:
        import timm
    except ImportError:
        raise ArchitectureError(
            f"architecture {arch!r} needs the timm package, which is not installed: pip install timm"
        ) from None
    return timm


def _construct(arch: str, num_classes: int, kwargs: Mapping[str, Any]) -> nn.Module:
    if arch.startswith(TIMM_PREFIX):
        timm = _import_timm(arch)
        return timm.create_model(arch[len(TIMM_PREFIX):], pretrained=False, num_classes=num_classes, **kwargs)
    options = dict(kwargs)
    if arch in ("googlenet", "inception_v3"):
        options.setdefault("init_weights", False)
    return tvm.get_model(arch, weights=None, num_classes=num_classes, **options)


def build_architecture(
    arch: str, num_classes: int, kwargs: Mapping[str, Any] | None = None, device: str = "cpu"
) -> nn.Module:
    """``arch`` with a head for ``num_classes``, randomly initialised (``cpu``) or empty (``meta``).

    ``kwargs`` go to the constructor (e.g. ``{"image_size": 64}`` for ``vit_b_16``), checked
    first (:mod:`mushcam.models.options`: known keys, plausible numbers); whatever the
    constructor still raises is one :class:`ArchitectureError` line. A constructor that cannot
    run on ``meta`` (RegNet computes widths with tensors) is built on the CPU instead.
    """
    check_architecture(arch)
    options = dict(kwargs or {})
    problem = options_problem(arch, options)
    if problem:
        raise ArchitectureError(problem)
    try:
        with torch.device(device):
            return _construct(arch, int(num_classes), options)
    except (NotImplementedError, RuntimeError) as exc:
        if device != "meta":
            raise _build_error(arch, options, exc) from None
    except Exception as exc:  # noqa: BLE001 - the builder's reaction to the entry's kwargs
        raise _build_error(arch, options, exc) from None
    try:
        return _construct(arch, int(num_classes), options)
    except Exception as exc:  # noqa: BLE001 - as above, on the CPU
        raise _build_error(arch, options, exc) from None


def options_problem(arch: str, kwargs: Mapping[str, Any]) -> str | None:
    """Why ``kwargs`` cannot build ``arch`` (a reserved key, an absurd number, a key no
    torchvision builder of it takes), or None; timm's keys are left to timm."""
    problem = arch_options.value_problem(kwargs)
    if problem or not kwargs or arch.startswith(TIMM_PREFIX):
        return problem
    return arch_options.unknown_keys_problem(arch, kwargs)


def _build_error(arch: str, options: dict[str, Any], exc: BaseException) -> BaseException:
    """The builder's exception as one line; a wrong key names the keys the model class takes.
    Without kwargs nothing of the user's is involved: ``exc`` itself (a bug, shown as one)."""
    if not options:
        return exc
    accepted: list[str] = []
    if isinstance(exc, TypeError):
        try:
            accepted = (arch_options.shown_keys(type(_construct_on_meta(arch))) if arch.startswith(TIMM_PREFIX)
                        else arch_options.torchvision_settings(arch))
        except Exception:  # noqa: BLE001 - the hint is optional
            accepted = []
    return ArchitectureError(arch_options.build_failure(arch, options, exc, accepted))


def _construct_on_meta(arch: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return _construct(arch, _PROBE_CLASSES, {})
    except (NotImplementedError, RuntimeError):
        return _construct(arch, _PROBE_CLASSES, {})


def build_model(backbone: str, num_classes: int) -> nn.Module:
    """A randomly initialised preset backbone with a head for ``num_classes``; downloads nothing.

    Kept for training and older callers: only the three presets (any architecture:
    :func:`build_architecture`).
    """
    if backbone not in _PRESET_CONSTRUCTORS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return _PRESET_CONSTRUCTORS[backbone](weights=None, num_classes=int(num_classes))


def display_name(arch: str) -> str:
    """A preset's display name (``ResNet-50``), else the architecture name itself."""
    return DISPLAY_NAMES.get(arch, arch)


@dataclass(frozen=True)
class Skeleton:
    """An architecture's parameter names and shapes, and where its classification head is.

    ``final``: the module producing the logits (``fc``, ``classifier.1``, ``heads.head``).
    ``slot``: the head module a fine-tuner replaces (``final``'s parent when that holds only
    Linear layers and parameter-free modules, e.g. EfficientNet's ``classifier``; else
    ``final``, e.g. ConvNeXt's ``classifier.2``). ``trunk``: every state-dict key outside the
    slot. ``feature_dim``: the width the slot receives.
    """

    arch: str
    shapes: dict[str, tuple[int, ...]]
    final: str
    slot: str
    trunk: frozenset[str]
    feature_dim: int

    @property
    def final_weight_key(self) -> str:
        return f"{self.final}.weight"


def _frozen_kwargs(kwargs: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(kwargs or {}), sort_keys=True, default=str)


def skeleton(arch: str, kwargs: Mapping[str, Any] | None = None) -> Skeleton:
    """The :class:`Skeleton` of ``arch`` (built once per process on ``meta``; pure, so memoised)."""
    return _skeleton(arch, _frozen_kwargs(kwargs))


@functools.lru_cache(maxsize=64)
def _skeleton(arch: str, kwargs_json: str) -> Skeleton:
    model = build_architecture(arch, _PROBE_CLASSES, json.loads(kwargs_json), device="meta")
    final = ""
    for name, module in model.named_modules():
        out = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
        if out == _PROBE_CLASSES and isinstance(module, (nn.Linear, nn.Conv2d)):
            final = name
    if not final:
        raise ArchitectureError(f"cannot find the classification layer of {arch}")
    slot = final
    if "." in final:
        parent_name = final.rsplit(".", 1)[0]
        parent = model.get_submodule(parent_name)
        if all(isinstance(child, (nn.Linear, nn.Conv2d, *_PARAMETER_FREE_HEAD)) for child in parent.children()):
            slot = parent_name
    slot_module = model.get_submodule(slot)
    first = next(m for m in slot_module.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    feature_dim = int(getattr(first, "in_features", None) or first.in_channels)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    trunk = frozenset(k for k in shapes if not k.startswith(slot + "."))
    return Skeleton(arch, shapes, final, slot, trunk, feature_dim)


# --- ImageNet weights of the presets (explicit demo mode and pretrained training only) ---


class PretrainedWeightsUnavailable(MushcamError):
    """torchvision's ImageNet weights are neither cached nor downloadable here."""


def imagenet_weights(backbone: str) -> tvm.WeightsEnum:
    """torchvision's ImageNet weights entry for a preset (URL, categories, transforms)."""
    if backbone not in _IMAGENET_WEIGHTS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    return _IMAGENET_WEIGHTS[backbone]


__all__ = [
    "ArchitectureError",
    "BACKBONES",
    "DEFAULT_LAYERS",
    "DISPLAY_NAMES",
    "HEAD_WEIGHT_KEYS",
    "PretrainedWeightsUnavailable",
    "Skeleton",
    "TIMM_PREFIX",
    "build_architecture",
    "build_model",
    "check_architecture",
    "display_name",
    "imagenet_weights",
    "options_problem",
    "skeleton",
    "torchvision_architectures",
]
