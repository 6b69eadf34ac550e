"""``cam(model, inputs, layer, class_idx, method)``: one capture, then the registered method.

Every method returns :class:`mushcam.cam.core.CamResult` (raw maps at the layer's
resolution, ReLU'd, not normalised; the logits; the explained class), so the cache,
rendering and pages treat them alike. The method is looked up in
:mod:`mushcam.cam.registry`; there is no per-method code here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mushcam.cam.core import CamResult, ClassIndex, MapRequest, Progress, capture, eval_mode, layer_names
from mushcam.cam.registry import DEFAULT_METHOD, Method, contrast_labels, get_method
from mushcam.cam.targets import Score, TargetError, class_score, contrast_score
from mushcam.finite import require_finite


def cam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str | Sequence[str],
    class_idx: ClassIndex = None,
    method: str = DEFAULT_METHOD,
    batch_size: int | None = None,
    progress: Progress | None = None,
    versus: int | Sequence[int] | torch.Tensor | None = None,
) -> CamResult:
    """Raw maps of ``method`` for a batch ``inputs`` (N x 3 x H x W) at ``layer``.

    ``layer`` is a dotted module path (``"layer4"``, or the source model's ``"backbone.layer4"``
    for a checkpoint loaded from a wrapper) or several. A ViT token layer or a Swin stage is
    read as its token grid (prefix tokens dropped, channels first). ``class_idx`` is None (each
    image's predicted class), one int for all images, or one per image (Eigen-CAM's map does
    not depend on the class, but the class is still recorded). ``batch_size`` bounds the copies
    run together by Ablation-CAM (default: 128 MiB of ablated activations) and Score-CAM
    (default 32 masked inputs). ``progress(done, total)`` is called by the long methods after
    every batch; an exception raised from it stops the computation (hooks removed, eval mode
    restored) and propagates. ``versus`` (a class, or one per image) makes the map contrastive: a
    gradient method then explains ``y_A - y_B``, "what pushed the explained class A above B".
    """
    entry = get_method(method)
    layers = layer_names(layer)
    score = _score_for(entry, versus)
    with eval_mode(model):
        captured = capture(model, inputs, layers, class_idx, gradients=entry.needs_gradient, score=score,
                           second_order=entry.second_order, keep_inputs=entry.layer_input)
        cams_by_layer: dict[str, torch.Tensor] = {}
        for name in layers:
            raw_map = entry.function(MapRequest(model, captured, name, batch_size, progress))
            require_finite(raw_map, f"{entry.label} maps at layer {name!r}")
            cams_by_layer[name] = raw_map.float()
    return CamResult(
        cams=cams_by_layer[layers[0]],
        logits=captured.logits,
        class_idx=captured.class_idx,
        cams_by_layer=cams_by_layer,
    )


def _score_for(entry: Method, versus: int | Sequence[int] | torch.Tensor | None) -> Score:
    """What ``entry`` differentiates: its own target, the contrast with ``versus``, or the class's logit."""
    if versus is None:
        return entry.target or class_score
    if not entry.can_contrast:
        able = ", ".join(contrast_labels())
        raise TargetError(f"{entry.label} cannot make a contrastive map: 'versus' needs a gradient method of the "
                          f"explained class's logit ({able})")
    return contrast_score(versus)


def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str | Sequence[str],
    class_idx: ClassIndex = None,
) -> CamResult:
    """Grad-CAM of ``model`` for a batch ``inputs`` at ``layer``: ``cam(..., method="gradcam")``.

    For a target class c and the activation A (K x h x w) of the layer::

        alpha_k = mean_ij  d y_c / d A_k[i, j]          (global-average-pooled gradient)
        cam     = ReLU( sum_k alpha_k * A_k )            (h x w, raw: not normalised)
    """
    return cam(model, inputs, layer, class_idx, method="gradcam")
