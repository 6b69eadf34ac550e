"""CAM methods on one engine: ``cam(model, inputs, layer, class_idx, method)``.

Every method returns :class:`mushcam.gradcam.GradCAMResult` (raw maps at the layer's
resolution, ReLU'd, not normalised; the logits; the explained class), so the cache,
rendering and pages treat them alike. ``method="gradcam"`` is :func:`mushcam.gradcam.grad_cam`
itself. What each method costs, in passes for one image with K channels at the layer:

=============  ===============================================================
gradcam        1 forward + backward through the head only
gradcampp      same
xgradcam       same
hirescam       same
layercam       same
eigencam       1 forward (no gradient), one SVD of the h*w x K activation
ablationcam    1 forward + ceil(K / batch_size) trunk passes on one image + the
               head on K ablated copies (see :mod:`mushcam.methods.ablation`)
scorecam       1 forward + K full forward passes, batch_size at a time
=============  ===============================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.gradcam import GradCAMResult, eval_mode, grad_cam
from mushcam.methods.ablation import ablation_cam
from mushcam.gradcam import layer_names
from mushcam.methods.core import capture
from mushcam.methods.eigen import eigen_cam
from mushcam.methods.gradient import GRADIENT_MAPS
from mushcam.methods.score import score_cam

METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcampp",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "ablationcam",
    "scorecam",
)
DEFAULT_METHOD = "gradcam"

METHOD_LABELS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "ablationcam": "Ablation-CAM",
    "scorecam": "Score-CAM",
}

COSTS: dict[str, str] = {
    "gradcam": "1 forward + head-only backward",
    "gradcampp": "1 forward + head-only backward",
    "xgradcam": "1 forward + head-only backward",
    "hirescam": "1 forward + head-only backward",
    "layercam": "1 forward + head-only backward",
    "eigencam": "1 forward, no gradient",
    "ablationcam": "1 forward + 1 trunk pass per chunk of ablated channels + the head on every channel",
    "scorecam": "1 forward + 1 full forward per channel",
}


class UnknownMethodError(MushcamError):
    """A CAM method name that MushCAM does not implement (the message lists the names)."""


def check_method(method: str) -> str:
    """``method`` if it names a method; otherwise UnknownMethodError listing the names."""
    if method not in METHODS:
        raise UnknownMethodError(f"unknown CAM method {method!r}; choose one of: {', '.join(METHODS)}")
    return method


def cam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str | Sequence[str],
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
    method: str = DEFAULT_METHOD,
    batch_size: int | None = None,
) -> GradCAMResult:
    """Raw maps of ``method`` for a batch ``inputs`` (N x 3 x H x W) at ``layer``.

    ``layer`` and ``class_idx`` are as for :func:`mushcam.gradcam.grad_cam` (None explains
    each image's predicted class; Eigen-CAM's map does not depend on the class, but the
    class is still recorded). ``batch_size`` bounds the copies run together by Ablation-CAM
    (default: 128 MiB of ablated activations) and Score-CAM (default 32 masked inputs).
    """
    check_method(method)
    if method == "gradcam":
        return grad_cam(model, inputs, layer, class_idx)
    layers = layer_names(layer)
    with eval_mode(model):
        captured = capture(model, inputs, layers, class_idx, gradients=method in GRADIENT_MAPS)
        cams_by_layer: dict[str, torch.Tensor] = {}
        for name in layers:
            activation = captured.activations[name]
            if method in GRADIENT_MAPS:
                cams_by_layer[name] = GRADIENT_MAPS[method](activation, captured.gradients[name])
            elif method == "eigencam":
                cams_by_layer[name] = eigen_cam(activation)
            elif method == "ablationcam":
                cams_by_layer[name] = ablation_cam(model, captured, name, batch_size)
            else:
                cams_by_layer[name] = score_cam(model, captured, name, batch_size)
    return GradCAMResult(
        cams=cams_by_layer[layers[0]],
        logits=captured.logits,
        class_idx=captured.class_idx,
        cams_by_layer=cams_by_layer,
    )


__all__ = ["COSTS", "DEFAULT_METHOD", "METHODS", "METHOD_LABELS", "UnknownMethodError", "cam", "check_method"]
