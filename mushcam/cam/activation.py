"""Activation-only CAM methods. Eigen-CAM (Muhammad & Yeasin 2020): the first principal component.

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
