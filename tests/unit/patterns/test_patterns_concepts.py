"""Deep Feature Factorization on inputs with known structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mushcam.patterns.concepts import class_concepts, nmf


def _matched_cosines(found: np.ndarray, truth: np.ndarray) -> list[float]:
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(found) @ unit(truth).T
    return [float(similarity[:, j].max()) for j in range(len(truth))]


def test_known_non_negative_factors_are_recovered_up_to_order_and_scale():
    rng = np.random.default_rng(0)
    truth_h = rng.uniform(0, 1, size=(3, 40)) * (rng.random((3, 40)) < 0.4)
    truth_w = rng.uniform(0, 1, size=(300, 3)) * (rng.random((300, 3)) < 0.5)
    truth_w[:3] = np.eye(3)  # a pure sample of each factor makes the factorisation unique
    found_w, found_h = nmf(truth_w @ truth_h, 3, iterations=600)
    assert min(_matched_cosines(found_h, truth_h)) > 0.98
    assert min(_matched_cosines(found_w.T, truth_w.T)) > 0.95
    assert np.allclose(np.linalg.norm(found_h, axis=1), 1.0)
    assert np.all(np.diff(found_w.sum(axis=0)) <= 1e-9)  # ordered by weight


class Planted(nn.Module):
    """A fixed 'trunk' whose activations are known concepts at known places, then GAP + Linear."""

    def __init__(self, signatures: torch.Tensor) -> None:
        super().__init__()
        self.trunk = nn.Identity()
        self.head = nn.Linear(signatures.shape[1], 2)
        self.signatures = signatures
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]]))
            self.head.bias.fill_(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: N x k x h x w concept maps
        features = self.trunk(torch.einsum("nkhw,kc->nchw", x, self.signatures))
        return self.head(features.mean(dim=(2, 3)))


def test_concepts_contributions_through_a_linear_head_add_up_to_the_logit():
    signatures = torch.tensor([[1.0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1.0, 1.0]])
    model = Planted(signatures).eval()
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.uniform(0, 1, size=(12, 2, 5, 5)) * (rng.random((12, 2, 5, 5)) < 0.5)).float()
    batches = [([f"a/{i}.png" for i in range(6)], maps[:6]), ([f"a/{i}.png" for i in range(6, 12)], maps[6:])]
    found = class_concepts(model, "trunk", batches, 0, "A", k=2)
    assert found.n_photos == 12
    with torch.no_grad():
        logit = float(model(maps)[:, 0].mean())
    assert found.mean_logit == pytest.approx(logit, rel=1e-5)
    total = sum(c.contribution for c in found.concepts)
    assert total + 0.25 == pytest.approx(logit, rel=1e-2)  # exact for a linear head, up to NMF's residual
    # w_0 · mean_ij(map_k H_k): concept [1,0,1,0,0,0] meets w_0 = [1,0,2,0,0.5,0] as 3, [0,0,0,0,1,1] as 0.5
    expected = [float(maps[:, 1].mean() * 0.5), float(maps[:, 0].mean() * 3)]
    got = sorted(c.contribution for c in found.concepts)
    assert got == pytest.approx(expected, rel=5e-2)
    assert all(len(c.top_paths) == 4 and c.top_maps[0].shape == (5, 5) for c in found.concepts)
    assert sum(c.share for c in found.concepts) == pytest.approx(1.0)


def test_tiny_activations_are_factorised_as_well_as_their_scaled_copy():
    """A random network's activations are ~1e-11: the factors must not collapse to 0 (they did: every
    concept had a 0 % share and an empty map on the page)."""
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 1, size=(60, 3)) @ rng.uniform(0, 1, size=(3, 12))
    w_big, h_big = nmf(values, 3)
    w_tiny, h_tiny = nmf(values * 1e-11, 3)
    assert np.allclose(h_tiny, h_big, atol=1e-6)
    assert np.allclose(w_tiny, w_big * 1e-11, rtol=1e-5, atol=1e-17)
    assert w_tiny.sum() > 0 and np.allclose(w_tiny @ h_tiny, values * 1e-11, rtol=0.05, atol=1e-12)
