"""Backbone registry and robust, safe checkpoint loading.

Three torchvision backbones with their classification head sized for N classes, the
thesis's default Grad-CAM layers, and a loader that accepts the shapes of checkpoint
people actually save while refusing anything that is not plain tensors
(``torch.load(..., weights_only=True)``: a checkpoint is untrusted input).
"""

from __future__ import annotations

from mushcam.exceptions import MushcamError

import hashlib
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

BACKBONES: tuple[str, ...] = ("resnet50", "efficientnet_b0", "mobilenet_v3_large")

DEFAULT_LAYERS: dict[str, str] = {
    "resnet50": "layer4",
    "efficientnet_b0": "features.7",
    "mobilenet_v3_large": "features.16",
}

# The final Linear layer of each backbone: its weight's first dimension is the class count.
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

_CONSTRUCTORS: dict[str, Callable[..., nn.Module]] = {
    "resnet50": tvm.resnet50,
    "efficientnet_b0": tvm.efficientnet_b0,
    "mobilenet_v3_large": tvm.mobilenet_v3_large,
}

_IMAGENET_WEIGHTS = {
    "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2,
    "efficientnet_b0": tvm.EfficientNet_B0_Weights.IMAGENET1K_V1,
    "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
}

# Prefixes that wrappers add to parameter names (DataParallel, Lightning, custom wrappers).
_KEY_PREFIXES = ("module.", "model.", "backbone.")


class CheckpointError(MushcamError):
    """A checkpoint could not be read or does not fit the backbone."""


class PretrainedWeightsUnavailable(MushcamError):
    """torchvision's ImageNet weights are neither cached nor downloadable here."""


def _check_backbone(backbone: str) -> None:
    if backbone not in _CONSTRUCTORS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")


def build_model(backbone: str, num_classes: int) -> nn.Module:
    """A randomly initialised backbone with a head for ``num_classes``; downloads nothing."""
    _check_backbone(backbone)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return _CONSTRUCTORS[backbone](weights=None, num_classes=int(num_classes))


def get_layer(model: nn.Module, path: str) -> nn.Module:
    """The sub-module at a dotted path (``layer4``, ``features.7``); a wrong path lists valid ones."""
    if path:
        try:
            return model.get_submodule(path)  # walks the path only: cheap on every Grad-CAM call
        except AttributeError:
            pass
    modules = dict(model.named_modules())
    # List the children of the deepest part of the path that does exist.
    parts = path.split(".")
    parent = ""
    for depth in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:depth]) in modules:
            parent = ".".join(parts[:depth])
            break
    children = [name for name, _ in modules[parent].named_children()]
    valid = [f"{parent}.{child}" if parent else child for child in children]
    where = f"under {parent!r}" if parent else "at the top level"
    raise ValueError(
        f"no module named {path!r} in {type(model).__name__}; valid names {where}: "
        f"{', '.join(valid)} (deeper modules are named with dots, e.g. 'layer4.2.conv3')"
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes: identifies a checkpoint in caches and result stores."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(checkpoint_path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely and return a plain ``{name: tensor}`` state dict.

    Accepts a bare state dict, or a dict holding it under ``state_dict`` or
    ``model_state_dict``; strips ``module.``, ``model.`` and ``backbone.`` prefixes.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        if found:
            raise CheckpointError(
                f"refused {path.name}: it holds Python objects ({found.group(1)}), not only tensors, "
                "and loading it could run code. Save the weights with torch.save(model.state_dict(), ...)."
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path.name}: not a PyTorch weights file, or corrupt") from None
    except Exception as exc:  # noqa: BLE001 - corrupt zip, truncated file, not a checkpoint
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from None
    return _unwrap_state_dict(raw, path.name)


def _unwrap_state_dict(raw: object, name: str) -> dict[str, torch.Tensor]:
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not raw:
        raise CheckpointError(f"{name} holds no state dict (found {type(raw).__name__})")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "expected a state dict (or a dict with 'state_dict' / 'model_state_dict')"
            )
        state[_strip_prefixes(str(key))] = value
    return state


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                stripped = True
    return key


def num_classes_in(state: Mapping[str, torch.Tensor], backbone: str) -> int:
    """Number of classes of a state dict: the first dimension of the head's weight."""
    _check_backbone(backbone)
    key = HEAD_WEIGHT_KEYS[backbone]
    if key not in state:
        raise CheckpointError(
            f"checkpoint has no {key!r}: it is not a {backbone} (first keys: "
            f"{', '.join(list(state)[:4])})"
        )
    return int(state[key].shape[0])


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], backbone: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch names the keys and shapes."""
    expected = model.state_dict()
    # Old checkpoints may lack BatchNorm's step counter; it does not affect inference.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_first(shapes)})")
        raise CheckpointError(f"checkpoint does not fit {backbone}: " + "; ".join(parts))
    model.load_state_dict(dict(state), strict=False)


def _first(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", … {len(items) - n} more" if len(items) > n else "")


def load_model(
    backbone: str,
    checkpoint_path: str | os.PathLike[str],
    num_classes: int | None = None,
) -> nn.Module:
    """The backbone with the checkpoint's weights, on CPU, in eval mode.

    ``num_classes`` defaults to the head's size in the checkpoint; if given and different,
    that is an error (never a silent partial load).
    """
    _check_backbone(backbone)
    state = read_state_dict(checkpoint_path)
    found = num_classes_in(state, backbone)
    if num_classes is not None and int(num_classes) != found:
        raise CheckpointError(
            f"{Path(checkpoint_path).name} has {found} classes "
            f"({HEAD_WEIGHT_KEYS[backbone]} {tuple(state[HEAD_WEIGHT_KEYS[backbone]].shape)}), "
            f"but {num_classes} were expected (the manifest's class list)"
        )
    model = build_model(backbone, found)
    fit_state_dict(model, state, backbone)
    return model.eval()


def imagenet_weights(backbone: str) -> tvm.WeightsEnum:
    """torchvision's ImageNet weights entry for a backbone (URL, categories, transforms)."""
    _check_backbone(backbone)
    return _IMAGENET_WEIGHTS[backbone]


def imagenet_weights_path(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights file in the torch hub cache."""
    url = imagenet_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_imagenet_model(backbone: str, download: bool = True) -> nn.Module:
    """The backbone with ImageNet-pretrained weights (1000 classes), in eval mode.

    Uses the file in the torch hub cache when present; otherwise downloads it when
    ``download`` is true. Raises :class:`PretrainedWeightsUnavailable` in plain words when
    neither works (no internet, no cache).
    """
    path = imagenet_weights_path(backbone)
    if not path.is_file():
        if not download:
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for {backbone} are not in the torch cache ({path})"
            )
        try:
            torch.hub.load_state_dict_from_url(
                imagenet_weights(backbone).url, progress=False, check_hash=True
            )
        except Exception as exc:  # noqa: BLE001 - any network failure means the same here
            raise PretrainedWeightsUnavailable(
                f"could not download ImageNet weights for {backbone} from "
                f"{imagenet_weights(backbone).url} ({type(exc).__name__}: {exc}). On a machine "
                f"with internet access they are fetched once into {path.parent}; copy the file "
                f"there to use them offline."
            ) from None
    model = build_model(backbone, 1000)
    fit_state_dict(model, read_state_dict(path), backbone)
    return model.eval()
