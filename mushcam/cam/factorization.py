"""Deep Feature Factorization (Collins et al. 2018), per image, as one map for the explained class.

For one image the layer's activation, as V (K channels x h*w positions) shifted by each
channel's minimum ``o_k`` so that it is non-negative, is factorised by non-negative matrix
factorisation into ``DFF_CONCEPTS`` concepts, ``V ~ W H`` (W: K x r, H: r x h*w), as
pytorch-grad-cam's ``dff`` does (it uses scikit-learn's coordinate-descent NMF; here Lee & Seung's
multiplicative updates in float64 from a seeded random start, ``DFF_ITERATIONS`` of them). Each
H row is scaled to a maximum of 1 (W's column takes the scale), so concept j's channel vector
``a_j = W_j + o`` is the activation of a position made of concept j alone.

The single map: the concept most tied to the explained class, ``j* = argmax_j gbar . a_j`` with
``gbar = mean_ij G`` (Grad-CAM's weights: the head's linearisation at A; for a global-pool +
linear head this ranks concepts by the class logit of ``a_j``, what pytorch-grad-cam's
``run_dff_on_image`` shows with its classifier); map ``H_{j*}`` (h x w, in [0, 1]).
:func:`factorise` gives every concept's map. Cost: one capture (forward + head-only backward)
and a small NMF (K x h*w, r = 5).
"""

from __future__ import annotations

import torch

from mushcam.cam.core import MapRequest

DFF_CONCEPTS = 5
DFF_ITERATIONS = 1000
DFF_SEED = 0
_TINY = 1e-12


def nmf(matrix: torch.Tensor, rank: int, iterations: int = DFF_ITERATIONS,
        seed: int = DFF_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``V ~ W H`` (Frobenius) by multiplicative updates; V non-negative (float64), returns (W, H)."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = matrix.shape
    scale = (matrix.mean().clamp(min=_TINY) / rank).sqrt()
    w = (torch.randn(rows, rank, generator=generator, dtype=torch.float64).abs() * scale).to(matrix.device)
    h = (torch.randn(rank, cols, generator=generator, dtype=torch.float64).abs() * scale).to(matrix.device)
    for _ in range(iterations):
        h = h * (w.T @ matrix) / (w.T @ w @ h + _TINY)
        w = w * (matrix @ h.T) / (w @ (h @ h.T) + _TINY)
    return w, h


def factorise(activation: torch.Tensor, rank: int = DFF_CONCEPTS) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's concepts: (a: K x r channel vectors ``W_j + o``, maps: r x h x w, each max 1)."""
    k, h, w = activation.shape
    matrix = torch.nan_to_num(activation.reshape(k, h * w).double())
    offset = matrix.min(dim=1, keepdim=True).values
    basis, coefficients = nmf(matrix - offset, min(rank, k, h * w))
    peak = coefficients.amax(dim=1, keepdim=True).clamp(min=_TINY)
    return basis * peak.T + offset, (coefficients / peak).reshape(-1, h, w)


def deep_feature_factorization(request: MapRequest) -> torch.Tensor:
    """DFF map, N x h x w: the map of each image's concept most tied to its explained class."""
    activation, gradient = request.activation, request.gradient
    maps = []
    for n in range(activation.shape[0]):
        concepts, concept_maps = factorise(activation[n])
        relevance = gradient[n].double().mean(dim=(1, 2)) @ concepts
        maps.append(concept_maps[int(relevance.argmax())])
    return torch.stack(maps).float()
