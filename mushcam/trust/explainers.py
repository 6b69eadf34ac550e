"""One way in to the CAM methods for the trust metrics: ``explain_maps(..., method=...)``.

``mushcam.methods.cam`` (Grad-CAM, Grad-CAM++, XGrad-CAM, ...) is used when it is present;
without it only ``gradcam`` (:func:`mushcam.gradcam.grad_cam`) is available. Everything in
:mod:`mushcam.trust` goes through here, so the metrics do not care which method made a map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.gradcam import GradCAMResult, grad_cam

DEFAULT_METHOD = "gradcam"


class UnknownMethodError(MushcamError):
    """A CAM method name that this installation does not provide."""


def available_methods() -> tuple[str, ...]:
    """The CAM method names that :func:`explain_maps` accepts, default first."""
    try:
        from mushcam.methods import METHODS
    except ImportError:
        return (DEFAULT_METHOD,)
    return tuple(METHODS)


def check_methods(methods: Sequence[str]) -> list[str]:
    """The names, de-duplicated in order; an unknown one is an :class:`UnknownMethodError`."""
    known = available_methods()
    chosen = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not chosen:
        raise UnknownMethodError(f"no CAM method given; choose from {', '.join(known)}")
    for name in chosen:
        if name not in known:
            raise UnknownMethodError(f"unknown CAM method {name!r}; choose from {', '.join(known)}")
    return chosen


def explain_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
    method: str = DEFAULT_METHOD,
) -> GradCAMResult:
    """Raw maps (N x h x w), logits and explained classes of ``method`` for a batch."""
    check_methods([method])
    try:
        from mushcam.methods import cam
    except ImportError:
        return grad_cam(model, inputs, layer, class_idx)
    return cam(model, inputs, layer, class_idx=class_idx, method=method)
