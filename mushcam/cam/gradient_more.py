"""More gradient methods on the shared capture (A, G = d y_c / d A, one forward + head-only backward).

- EigenGrad-CAM (pytorch-grad-cam's): the first principal component of ``G * A`` (centred per
  channel, as the peer does; it has no paper to follow), sign fixed so the projection sums to >= 0.
- Element-wise Grad-CAM (pytorch-grad-cam's ``GradCAMElementWise``): ``sum_k ReLU(G_k * A_k)``.
- ShapleyCAM (Cai 2025): ``w_k = mean_ij (G - 0.5 H A)_kij`` with ``H A`` the Hessian-vector
  product of the head at A (a second head-only backward); map ``sum_k w_k A_k``.
- CAM (Zhou et al. 2016): for a layer that feeds a global-average-pool + linear head, the class's
  weights ``W_c`` of that linear layer: map ``sum_k W_ck A_k`` (= h w times Grad-CAM's map there).
- RefineCAM (pytorch-grad-cam's): the product over the requested layers of each layer's
  Grad-CAM++ map, min-max normalised, resized to the input and min-max normalised again (as the
  peer's per-layer maps are); a single layer gives its Grad-CAM++ map so scaled.
- Smooth Grad-CAM++ (Omeiza 2019): ``D^p = mean_s G(X + e_s)^p`` over ``SMOOTH_SAMPLES`` noisy
  copies (e ~ N(0, SMOOTH_STD^2), seeded), ``alpha = D^2 / (2 D^2 + sum_ab A_kab D^3)``,
  ``w_k = sum_ij alpha ReLU(D^1)``; map ``sum_k w_k A_k`` on the image's own A. Each noisy copy is
  one more capture (forward + head-only backward).

Where these depart from the peers, docs/methods.md says how and why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mushcam.cam.activation import eigen_projection
from mushcam.cam.core import GradCAMError, MapRequest, capture, weighted_sum
from mushcam.cam.gradient import grad_cam_pp_weights

_SPATIAL = (2, 3)
SMOOTH_SAMPLES = 4  # torchcam's SmoothGradCAMpp defaults
SMOOTH_STD = 0.3
SMOOTH_SEED = 0
HEAD_TOLERANCE = 1e-4  # relative: how closely the logits must equal W mean(A) + b for CAM
MINMAX_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: (x - min) / (max + 1e-7)


def eigen_grad_cam(request: MapRequest) -> torch.Tensor:
    """EigenGrad-CAM map, N x h x w: ReLU of the centred first-component projection of G * A."""
    return torch.relu(eigen_projection(request.gradient * request.activation, center=True))


def grad_cam_elementwise(request: MapRequest) -> torch.Tensor:
    """Element-wise Grad-CAM map, N x h x w: ReLU before the channel sum."""
    return torch.relu(request.gradient * request.activation).sum(dim=1).float()


def shapley_cam(request: MapRequest) -> torch.Tensor:
    """ShapleyCAM map, N x h x w, from the capture's gradient and Hessian-vector product."""
    products = request.captured.hessian_products
    if products is None:
        raise GradCAMError("ShapleyCAM needs the Hessian-vector product, but the capture ran without it")
    weights = (request.gradient - 0.5 * products[request.layer]).mean(dim=_SPATIAL)
    return weighted_sum(weights, request.activation)


def head_linear(model: nn.Module, channels: int) -> nn.Linear:
    """The last ``nn.Linear`` taking ``channels`` features: the classifier of a pooled-feature head."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.in_features == channels]
    if not found:
        raise GradCAMError(f"CAM needs a global-average-pool + linear head on the layer's {channels} channels, and "
                           "this model has no linear layer of that width: choose the last convolutional layer, or "
                           "use Grad-CAM (it equals CAM up to a factor where CAM applies)")
    return found[-1]


def class_activation_map(request: MapRequest) -> torch.Tensor:
    """CAM map, N x h x w: the head's class weights on the channels. Refused (GradCAMError) unless the
    logits equal ``W mean_ij(A) + b`` (the layer feeds global-average-pool + linear) to HEAD_TOLERANCE."""
    activation, captured = request.activation, request.captured
    linear = head_linear(request.model, activation.shape[1])
    weight = linear.weight.detach().to(activation.dtype)
    pooled = activation.mean(dim=_SPATIAL) @ weight.T
    if linear.bias is not None:
        pooled = pooled + linear.bias.detach().to(activation.dtype)
    logits = captured.logits.to(pooled.dtype)
    scale = float(logits.abs().max()) or 1.0
    if pooled.shape != logits.shape or float((pooled - logits).abs().max()) > HEAD_TOLERANCE * scale:
        raise GradCAMError(f"CAM needs layer {request.layer!r} to feed a global-average-pool + linear head, and "
                           "this model does more between them: choose the last convolutional layer, or use "
                           "Grad-CAM (it equals CAM up to a factor where CAM applies)")
    return weighted_sum(weight[captured.class_idx], activation)


def min_max(maps: torch.Tensor, eps: float = MINMAX_EPS) -> torch.Tensor:
    """Each map (N x h x w) shifted to min 0 and divided by ``max + eps`` (pytorch-grad-cam's scaling)."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    shifted = maps - low
    return shifted / (shifted.amax(dim=(1, 2), keepdim=True) + eps)


def resized(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of N x h x w maps to ``size`` (half-pixel centres, as OpenCV's INTER_LINEAR)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


def refine_cam(request: MapRequest) -> torch.Tensor:
    """RefineCAM map at the input's size, N x H x W: the product of every requested layer's min-max
    normalised Grad-CAM++ map (the same product for each layer of the request)."""
    captured = request.captured
    size = (captured.inputs.shape[-2], captured.inputs.shape[-1])
    product = None
    for name, activation in captured.activations.items():
        gradient = captured.gradients[name] if captured.gradients is not None else request.gradient
        layer_map = weighted_sum(grad_cam_pp_weights(activation, gradient), activation)
        scaled = min_max(resized(min_max(layer_map), size))  # the peer scales before and after resizing
        product = scaled if product is None else product * scaled
    return product


def smooth_gradients(request: MapRequest, samples: int = SMOOTH_SAMPLES, std: float = SMOOTH_STD,
                     seed: int = SMOOTH_SEED) -> list[torch.Tensor]:
    """The layer's gradient on each noisy copy ``X + e_s`` (one capture each), noise drawn in order from
    one seeded generator (the batch's whole noise tensor per sample, as torchcam draws it)."""
    inputs = request.captured.inputs
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    gradients = []
    for s in range(samples):
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype) * std
        noisy = capture(request.model, inputs + noise, [request.layer], request.captured.class_idx)
        gradients.append(noisy.gradients[request.layer])
        request.report(s + 1, samples)
    return gradients


def smooth_grad_cam_pp(request: MapRequest) -> torch.Tensor:
    """Smooth Grad-CAM++ map, N x h x w (see the module); alpha in float64 like Grad-CAM++'s."""
    gradients = [g.double() for g in smooth_gradients(request)]
    mean = torch.stack(gradients).mean(dim=0)
    g2 = torch.stack([g * g for g in gradients]).mean(dim=0)
    g3 = torch.stack([g * g * g for g in gradients]).mean(dim=0)
    activation = request.activation
    denominator = 2 * g2 + activation.double().sum(dim=_SPATIAL, keepdim=True) * g3
    nonzero = denominator != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)
    weights = (alpha * torch.relu(mean)).sum(dim=_SPATIAL).float()
    return weighted_sum(weights.to(activation.dtype), activation)
