"""Gradient-weighted CAM methods: each maps (A, G) to a raw map, G = d y_c / d A.

A is the target layer's activation (N x K x h x w), G the gradient of the explained
class's logit y_c with respect to it, both from :func:`mushcam.cam.core.capture`
(one forward pass plus a head-only backward pass). Sums over ``ij`` run over the h x w
positions; every map is ``ReLU(...)`` and is not normalised. Each method's function takes
a :class:`mushcam.cam.core.MapRequest` (its registry entry is in :mod:`mushcam.cam.registry`).

- Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ij G_kij``; map ``sum_k w_k A_k``.
- Grad-CAM++ (Chattopadhay et al. 2018, eq. 19):
  ``alpha_kij = G^2 / (2 G^2 + (sum_ab A_kab) G^3)`` (0 where the denominator is 0),
  ``w_k = sum_ij alpha_kij ReLU(G_kij)``; map ``sum_k w_k A_k``.
- XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_kij / sum_ab A_kab) G_kij``
  (0 for a channel whose activations sum to exactly 0); map ``sum_k w_k A_k``.
- HiResCAM (Draelos & Carin 2020): map ``sum_k G_k * A_k`` (element-wise, no pooling).
- LayerCAM (Jiang et al. 2021): map ``sum_k ReLU(G_k) * A_k``.

Where these depart from pytorch-grad-cam or torchcam (the eps terms, the exp(S) factor of
Grad-CAM++), docs/methods.md says how and why.
"""

from __future__ import annotations

import torch

from mushcam.cam.core import MapRequest, weighted_sum

_SPATIAL = (2, 3)


def grad_cam_pp_weights(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (N x K), the paper's closed form without an epsilon.

    Computed in float64 (N x K x h x w: cheap): with signed activations ``2 + G sum A``
    can come near 0, and float32 rounding there moved maps by 1e-5 of their maximum.
    """
    activation, gradient = activation.double(), gradient.double()
    g2 = gradient * gradient
    g3 = g2 * gradient
    total = activation.sum(dim=_SPATIAL, keepdim=True)
    denominator = 2 * g2 + total * g3
    nonzero = denominator != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)
    return (alpha * torch.relu(gradient)).sum(dim=_SPATIAL).float()


def xgrad_cam_weights(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM channel weights (N x K): the activation-weighted average of the gradient.

    In float64: the sum of signed activations can nearly cancel (see docs/methods.md).
    """
    activation, gradient = activation.double(), gradient.double()
    total = activation.sum(dim=_SPATIAL)
    numerator = (activation * gradient).sum(dim=_SPATIAL)
    nonzero = total != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, total, torch.ones_like(total)), 0.0).float()


def grad_cam_map(request: MapRequest) -> torch.Tensor:
    """Grad-CAM map, N x h x w: the gradient's spatial mean as channel weights."""
    return weighted_sum(request.gradient.mean(dim=_SPATIAL), request.activation)


def grad_cam_pp(request: MapRequest) -> torch.Tensor:
    """Grad-CAM++ map, N x h x w."""
    return weighted_sum(grad_cam_pp_weights(request.activation, request.gradient), request.activation)


def xgrad_cam(request: MapRequest) -> torch.Tensor:
    """XGrad-CAM map, N x h x w."""
    return weighted_sum(xgrad_cam_weights(request.activation, request.gradient), request.activation)


def hires_cam(request: MapRequest) -> torch.Tensor:
    """HiResCAM map, N x h x w: the element-wise product summed over channels."""
    return weighted_sum(request.gradient, request.activation)


def layer_cam(request: MapRequest) -> torch.Tensor:
    """LayerCAM map, N x h x w: positive gradients as per-position weights."""
    return weighted_sum(torch.relu(request.gradient), request.activation)
