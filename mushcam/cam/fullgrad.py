"""FullGrad (Srinivas & Fleuret 2019): input-gradient and every bias-gradient, summed at the input's size.

With ``X`` the input, ``b^l`` the bias of every Conv2d and BatchNorm2d layer l (for batch
norm, its effective bias ``beta - mu gamma / sqrt(var + eps)``) and ``z^l`` that layer's output::

    map = sum_c s(|X_c * dy/dX_c|) + sum_l sum_k Up( s(|b^l_k * dy/dz^l_k|) )

where ``s`` min-max scales one channel map, ``(m - min) / (max + 1e-7)`` as pytorch-grad-cam does,
and Up resizes bilinearly to the input (resizing is linear, so the channels of a layer are summed
first and resized once). The target layer is not used: FullGrad reads every biased layer.

Cost: this is **not** head-only. It needs dy/dz at every biased layer, so it runs one forward
pass with autograd on and one backward pass through the whole network (about 3 forward passes),
differentiating the activations and the input only: no parameter's ``.grad`` is written, and hooks
are removed in ``finally``. pytorch-grad-cam also back-propagates into every parameter.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from mushcam.cam.core import GradCAMError, MapRequest, class_indices
from mushcam.cam.gradient_more import MINMAX_EPS, resized

BIASED = (nn.Conv2d, nn.BatchNorm2d)


def biased_layers(model: nn.Module) -> list[nn.Module]:
    """Every Conv2d / BatchNorm2d with a bias, in module order (pytorch-grad-cam's choice: exact types)."""
    return [m for m in model.modules() if type(m) in BIASED and m.bias is not None]


def effective_bias(layer: nn.Module) -> torch.Tensor:
    """The bias the layer adds to its output in eval mode (batch norm folds its statistics in)."""
    if isinstance(layer, nn.BatchNorm2d):
        return (layer.bias - layer.running_mean * layer.weight / torch.sqrt(layer.running_var + layer.eps)).detach()
    return layer.bias.detach()


def channel_scaled_sum(maps: torch.Tensor) -> torch.Tensor:
    """``sum_k s(maps_k)`` for N x K x h x w, ``s`` the per-channel min-max of pytorch-grad-cam."""
    low = maps.amin(dim=(2, 3), keepdim=True)
    shifted = maps - low
    return (shifted / (shifted.amax(dim=(2, 3), keepdim=True) + MINMAX_EPS)).sum(dim=1)


def _recorded_outputs(model: nn.Module, layers: list[nn.Module], inputs: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The logits and every biased layer's output (in the graph), from one forward with autograd on."""
    outputs: list[torch.Tensor | None] = [None] * len(layers)
    thread = threading.get_ident()

    def keep(index: int):  # noqa: ANN202
        def hook(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor | None:
            if threading.get_ident() != thread:
                return None
            outputs[index] = output
            return output.clone()  # an in-place activation after it (ReLU(inplace=True)) must not rebase it
        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        with torch.enable_grad():
            logits = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return logits, outputs


def full_grad(request: MapRequest) -> torch.Tensor:
    """FullGrad map at the input's size, N x H x W (see the module)."""
    captured, model = request.captured, request.model
    layers = biased_layers(model)
    inputs = captured.inputs.detach().clone().requires_grad_(True)
    logits, outputs = _recorded_outputs(model, layers, inputs)
    reached = [(layer, out) for layer, out in zip(layers, outputs, strict=True)
               if out is not None and out.requires_grad]
    chosen = class_indices(captured.class_idx, logits)
    with torch.enable_grad():
        total = logits.gather(1, chosen.view(-1, 1)).sum()
        found = torch.autograd.grad(total, [inputs] + [out for _, out in reached], allow_unused=True)
    if found[0] is None:
        raise GradCAMError("no gradient flows from the output back to the input: FullGrad cannot explain this model")
    size = (inputs.shape[-2], inputs.shape[-1])
    total_map = channel_scaled_sum((found[0] * inputs).abs().detach())
    for (layer, _), gradient in zip(reached, found[1:], strict=True):
        if gradient is None or gradient.dim() != 4:
            continue
        bias = effective_bias(layer).to(gradient.dtype)[None, :, None, None]
        total_map = total_map + resized(channel_scaled_sum((bias * gradient).abs().detach()), size)
    return total_map.float()
