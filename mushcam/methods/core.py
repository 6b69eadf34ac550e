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

from mushcam.exceptions import MushcamError
from mushcam.finite import require_finite
from mushcam.gradcam import GradCAMError, _class_indices, _LayerRecorder, eval_mode
from mushcam.models.layers import as_feature_map, channels_last_module, get_layer, resolve_layer


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


def layer_names(layer: str | Sequence[str]) -> list[str]:
    """One dotted path or several, as a non-empty list."""
    layers = [layer] if isinstance(layer, str) else list(layer)
    if not layers:
        raise GradCAMError("no layer given")
    return layers


def prepare_inputs(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` as a detached N x C x H x W batch on the model's device and dtype."""
    if inputs.dim() == 3:
        inputs = inputs.unsqueeze(0)
    if inputs.dim() != 4:
        raise GradCAMError(f"inputs must be N x C x H x W; got shape {tuple(inputs.shape)}")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        inputs = inputs.to(device=parameter.device, dtype=parameter.dtype)
    return inputs.detach()


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
    try:
        modules = {name: get_layer(model, name) for name in layers}
    except MushcamError:
        raise
    except ValueError as exc:  # an unknown layer name: the user's input
        raise GradCAMError(str(exc)) from None
    channels_last = {name: channels_last_module(model, resolve_layer(model, name)) for name in layers}
    inputs = prepare_inputs(model, inputs)
    with eval_mode(model), _LayerRecorder(modules, channels_last) as recorder, torch.no_grad():
        logits = model(inputs)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise GradCAMError("the model must return logits of shape N x C")
        require_finite(logits, "logits")
        missing = [name for name in layers if name not in recorder.activations]
        if missing:
            raise GradCAMError(
                f"layer {missing[0]!r} was never reached in the forward pass, so it cannot "
                "explain the output; choose a layer the input passes through"
            )
        chosen = _class_indices(class_idx, logits)
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
