"""Activation-only CAM methods: Eigen-CAM, KPCA-CAM and FEM. No class, no gradient: one forward pass.

Eigen-CAM (Muhammad & Yeasin 2020): the first principal component.

For one image, reshape the activation to M (h*w x K), factorise ``M = U S V^T`` and
project on the first right-singular vector: ``map = ReLU(M v_1)`` (= ``s_1 u_1``). No
class and no gradient: one forward pass, under ``no_grad``.

The paper projects M itself; pytorch-grad-cam first subtracts each channel's spatial mean
(``center=True`` reproduces that for the cross-check; docs/methods.md says why we follow
the paper). A singular vector's sign is arbitrary, so it is fixed here: the projection's
sum is made non-negative. For a non-negative activation (after a ReLU) ``v_1`` is then
non-negative (Perron-Frobenius), and the map is the whole projection.
"""

from __future__ import annotations

import torch

from mushcam.cam.core import MapRequest


def eigen_projection(activation: torch.Tensor, center: bool = False) -> torch.Tensor:
    """``M v_1`` per image (N x h x w, float32, signed, sign fixed), computed in float64."""
    n, k, h, w = activation.shape
    matrix = activation.reshape(n, k, h * w).transpose(1, 2).double()  # N x hw x K
    matrix = torch.nan_to_num(matrix)
    if center:
        matrix = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    projection = (matrix @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # N x hw
    sign = torch.where(projection.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(projection.dtype)
    return (projection * sign).reshape(n, h, w).float()


def eigen_cam(request: MapRequest) -> torch.Tensor:
    """Eigen-CAM map, N x h x w: ``ReLU`` of the first-component projection."""
    return torch.relu(eigen_projection(request.activation))


KPCA_COEF0 = 1.0  # scikit-learn's KernelPCA defaults, as pytorch-grad-cam's KPCA_CAM uses them
FEM_SIGMA = 2.0  # pytorch-grad-cam's FEM: k = 2 (the k-sigma rule)


def kernel_projection(activation: torch.Tensor, gamma: float | None = None) -> torch.Tensor:
    """KPCA-CAM's first kernel principal component per image (N x h x w, signed, sign fixed), float64.

    M (h*w x K) centred per channel; sigmoid kernel ``k(x, y) = tanh(gamma x.y + 1)`` with
    ``gamma = 1 / K`` by default; the kernel matrix is centred, and the projection is
    ``sqrt(lambda_1) u_1`` (its top eigenpair), as scikit-learn's ``KernelPCA.fit_transform`` gives.
    """
    n, k, h, w = activation.shape
    matrix = torch.nan_to_num(activation.reshape(n, k, h * w).transpose(1, 2).double())
    matrix = matrix - matrix.mean(dim=1, keepdim=True)
    scale = 1.0 / k if gamma is None else gamma
    kernel = torch.tanh(scale * matrix @ matrix.transpose(1, 2) + KPCA_COEF0)
    kernel = kernel - kernel.mean(dim=1, keepdim=True) - kernel.mean(dim=2, keepdim=True) \
        + kernel.mean(dim=(1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(kernel)
    projection = vectors[:, :, -1] * values[:, -1:].clamp(min=0).sqrt()
    sign = torch.where(projection.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(projection.dtype)
    return (projection * sign).reshape(n, h, w).float()


def kpca_cam(request: MapRequest) -> torch.Tensor:
    """KPCA-CAM map (Karmani 2024), N x h x w: ReLU of the first kernel principal component."""
    return torch.relu(kernel_projection(request.activation))


def fem_weights(activation: torch.Tensor, sigma: float = FEM_SIGMA) -> torch.Tensor:
    """FEM channel weights (N x K): the fraction of positions above ``mean + sigma * std`` (population std)."""
    flat = activation.flatten(2).double()
    threshold = flat.mean(dim=2, keepdim=True) + sigma * flat.std(dim=2, correction=0, keepdim=True)
    return (flat > threshold).double().mean(dim=2).float()


def fem(request: MapRequest) -> torch.Tensor:
    """FEM map (Fuad 2020), N x h x w: ``sum_k w_k A_k`` with the k-sigma weights."""
    activation = request.activation
    return torch.relu((fem_weights(activation)[:, :, None, None] * activation).sum(dim=1)).float()
