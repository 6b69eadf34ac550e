"""Loading a model from a checkpoint file: recognised (any architecture) or the user's code.

:func:`load_checkpoint` is the one path: read the file safely, find the state dict, check
every weight is finite, compute in float32, recognise trunk and head, and build without a
second copy of the weights. :func:`load_model` is its old name-and-file form.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mushcam.models import checkpoint as ckpt
from mushcam.models.checkpoint import CheckpointError
from mushcam.models.recognise import Recognised, load_planned, plan
from mushcam.models.registry import (
    BACKBONES,
    TIMM_PREFIX,
    PretrainedWeightsUnavailable,
    build_model,
    imagenet_weights,
)


def _source_notes(path: Path, raw_dtypes: set[torch.dtype], where: str) -> list[str]:
    notes = []
    if path.suffix == ".safetensors":
        notes.append("safetensors file")
    if where:
        notes.append(f"weights from the training dict's '{where}'")
    halves = sorted(str(d).replace("torch.", "") for d in raw_dtypes
                    if d.is_floating_point and d not in (torch.float32, torch.float64))  # float16, bfloat16, float8
    if halves:
        notes.append(f"{'/'.join(halves)} weights computed in float32")
    return notes


def _vit_image_size(state: Mapping[str, torch.Tensor], arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A ViT's input size read from its position embedding, when the entry does not give it."""
    match = re.search(r"(?:vit_[a-z]_|patch)(\d+)", arch)
    option = "img_size" if arch.startswith(TIMM_PREFIX) else "image_size"
    if not match or option in kwargs:
        return kwargs
    key = next((k for k in state if k.endswith(("encoder.pos_embedding", "pos_embed"))), None)
    if key is None or state[key].dim() != 3:
        return kwargs
    tokens = int(state[key].shape[1])
    side = math.isqrt(tokens - 1) if math.isqrt(tokens - 1) ** 2 == tokens - 1 else math.isqrt(tokens)
    size = side * int(match.group(1))
    return kwargs if size == 224 else {**kwargs, option: size}


def load_checkpoint(
    path: str | os.PathLike[str],
    arch: str,
    num_classes: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
    head_activation: str = "relu",
) -> Recognised:
    """The model in ``path`` as ``arch``, with how it was recognised (eval mode, CPU, float32).

    ``num_classes`` (the manifest's class count), when given, must equal the head's outputs.
    """
    path = Path(path)
    state, where = ckpt.find_state_dict(ckpt.read_checkpoint(path), path.name)
    ckpt.check_finite(state, path.name)
    dtypes = {v.dtype for v in state.values()}
    state = ckpt.as_float32(state)
    kwargs = _vit_image_size(state, arch, dict(kwargs or {}))
    found_plan = plan(state, arch, kwargs, head_activation, path.name)
    recognised = load_planned(found_plan, state, path.name)
    notes = _source_notes(path, dtypes, where)
    if notes:
        recognised = Recognised(
            recognised.model, recognised.arch, recognised.head, recognised.how + "; " + "; ".join(notes),
            recognised.num_classes, recognised.final_key, recognised.final_shape,
        )
    if num_classes is not None and int(num_classes) != recognised.num_classes:
        raise CheckpointError(
            f"{path.name} has {recognised.num_classes} classes ({recognised.final_key} {recognised.final_shape}), "
            f"but {num_classes} were expected (the manifest's class list)"
        )
    return recognised


def load_model(
    backbone: str,
    checkpoint_path: str | os.PathLike[str],
    num_classes: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
    head_activation: str = "relu",
) -> nn.Module:
    """The architecture ``backbone`` with the checkpoint's weights, on CPU, in eval mode.

    ``num_classes`` defaults to the head's size in the checkpoint; if given and different,
    that is an error (never a silent partial load).
    """
    return load_checkpoint(checkpoint_path, backbone, num_classes, kwargs, head_activation).model


def imagenet_weights_path(backbone: str) -> Path:
    """Where torchvision keeps a preset's ImageNet weights file in the torch hub cache."""
    url = imagenet_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_imagenet_model(backbone: str, download: bool = True) -> nn.Module:
    """A preset with ImageNet-pretrained weights (1000 classes), in eval mode.

    Uses the file in the torch hub cache when present; otherwise downloads it when
    ``download`` is true. Raises :class:`PretrainedWeightsUnavailable` in plain words when
    neither works (no internet, no cache).
    """
    path = imagenet_weights_path(backbone)
    if not path.is_file():
        if not download:
            raise PretrainedWeightsUnavailable(f"ImageNet weights for {backbone} are not in the torch cache ({path})")
        try:
            torch.hub.load_state_dict_from_url(imagenet_weights(backbone).url, progress=False, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - any network failure means the same here
            raise PretrainedWeightsUnavailable(
                f"could not download ImageNet weights for {backbone} from {imagenet_weights(backbone).url} "
                f"({type(exc).__name__}: {exc}). On a machine with internet access they are fetched once into "
                f"{path.parent}; copy the file there to use them offline."
            ) from None
    return load_model(backbone, path, num_classes=1000)


__all__ = [
    "BACKBONES",
    "build_model",
    "imagenet_weights_path",
    "load_checkpoint",
    "load_imagenet_model",
    "load_model",
]
