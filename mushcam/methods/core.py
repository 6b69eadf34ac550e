"""Shared capture for the CAM methods: activations (and gradients) at the target layers.

It works on the Grad-CAM engine's principle (:mod:`mushcam.gradcam`): the trunk before the
target layer runs under ``torch.no_grad()``; a forward hook turns the layer's output into
the only leaf that requires grad, so ``torch.autograd.grad`` differentiates the head alone
and no parameter's ``.grad`` is written. Hooks are removed in ``finally`` (the recorder is a
context manager) and a model in training mode is put in eval mode for the call and
restored module by module. Gradient-free methods (Eigen-CAM, and the capture pass of
Ablation-CAM and Score-CAM) skip the backward pass altogether.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mushcam.gradcam import (
    GradCAMError,
    eval_mode,
    layer_names,
    layer_recorder,
    prepare_inputs,
    recorded_forward,
)
from mushcam.models.layers import as_feature_map


@dataclass(frozen=True)
class Capture:
    """What one forward (and, if asked, one head-only backward) pass gives.

    ``activations[name]``: N x K x h x w, detached (a ViT's or Swin's tokens as their grid,
    as :func:`mushcam.gradcam.grad_cam` reads them). ``gradients[name]``: d y_c / d A of the
    same shape, or None when not asked for. ``logits``: N x C. ``class_idx``: (N,).
    ``inputs``: the batch on the model's device and dtype (for methods that re-run it).
    ``raw[name]`` and ``layouts[name]``: the layer's output as it came ("nchw", "nhwc" or
    "tokens"), for methods that put a modified output back into the network.
    """

    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor] | None
    logits: torch.Tensor
    class_idx: torch.Tensor
    inputs: torch.Tensor
    raw: dict[str, torch.Tensor]
    layouts: dict[str, str]


def capture(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str | Sequence[str],
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
    gradients: bool = True,
) -> Capture:
    """Run ``model`` once on ``inputs``; keep the target layers' activations (and gradients).

    With ``gradients`` the score ``sum_n y_{n, c_n}`` is differentiated with respect to the
    hooked activations only (images in a batch do not interact in eval mode, so each
    image's gradient is its own). Costs one forward pass, plus a head-only backward pass
    when ``gradients`` is true.
    """
    layers = layer_names(layer)
    inputs = prepare_inputs(model, inputs)
    with eval_mode(model), layer_recorder(model, layers) as recorder, torch.no_grad():
        logits, chosen = recorded_forward(model, inputs, layers, recorder, class_idx)
        leaves = [recorder.activations[name] for name in layers]
        grads: dict[str, torch.Tensor] | None = None
        if gradients:
            if not logits.requires_grad:
                raise GradCAMError(f"no gradient flows from the output back to layer {layers[0]!r}")
            score = logits.gather(1, chosen.view(-1, 1)).sum()
            with torch.enable_grad():
                found = torch.autograd.grad(score, leaves, allow_unused=True)
            grads = {}
            for name, gradient in zip(layers, found, strict=True):
                if gradient is None:
                    raise GradCAMError(f"no gradient flows from the output back to layer {name!r}")
                grads[name] = as_feature_map(gradient.detach(), recorder.layouts[name])
    return Capture(
        activations={name: as_feature_map(leaf.detach(), recorder.layouts[name])
                     for name, leaf in zip(layers, leaves, strict=True)},
        gradients=grads,
        logits=logits.detach(),
        class_idx=chosen.detach(),
        inputs=inputs,
        raw={name: leaf.detach() for name, leaf in zip(layers, leaves, strict=True)},
        layouts=dict(recorder.layouts),
    )


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)`` as float32: weights N x K (per channel) or N x K x h x w."""
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    return torch.relu((weights * activation).sum(dim=1)).float()
