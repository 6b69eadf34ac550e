"""One way in to the CAM methods for the trust metrics: ``explain_maps(..., method=...)``.

Everything in :mod:`mushcam.trust` goes through here, so the metrics do not care which of
:data:`mushcam.methods.METHODS` made a map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mushcam.gradcam import GradCAMResult
from mushcam.methods import METHODS, UnknownMethodError, cam, check_method

DEFAULT_METHOD = "gradcam"


def available_methods() -> tuple[str, ...]:
    """The CAM method names that :func:`explain_maps` accepts, default first."""
    return tuple(METHODS)


def check_methods(methods: Sequence[str]) -> list[str]:
    """The names, de-duplicated in order; an unknown one is an :class:`UnknownMethodError`."""
    known = available_methods()
    chosen = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not chosen:
        raise UnknownMethodError(f"no CAM method given; choose from {', '.join(known)}")
    return [check_method(name) for name in chosen]


def explain_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
    method: str = DEFAULT_METHOD,
) -> GradCAMResult:
    """Raw maps (N x h x w), logits and explained classes of ``method`` for a batch."""
    check_methods([method])
    return cam(model, inputs, layer, class_idx=class_idx, method=method)


__all__ = ["DEFAULT_METHOD", "UnknownMethodError", "available_methods", "check_methods", "explain_maps"]
