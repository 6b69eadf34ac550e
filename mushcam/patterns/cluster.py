"""Strategy clusters (SpRAy, Lapuschkin et al. 2019): spectral clustering of a class's maps.

Each map is resized to ``side x side`` (area averaging) and scaled to unit length, so two
maps are close when they put their mass in the same places, whatever their magnitude.
Affinity with local scaling (Zelnik-Manor & Perona 2004)::

    A_ij = exp(-d_ij^2 / (s_i s_j)),   s_i = distance from i to its 7th nearest neighbour

Normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` with eigenvalues ``l_0 <= l_1 <= ...``.
The number of clusters is the eigengap choice ``k = argmax_{2<=k<=max_k} (l_k - l_{k-1})``
among the splits with ``l_{k-1} <= 0.3`` (by Cheeger's inequality a small ``l_{k-1}`` means
``k`` groups with few ties between them), and ``k = 1`` when no split qualifies: maps that
vary smoothly around one pattern give a larger ``l_1`` (about 0.5 for one template with
noise) and stay one strategy. Labels are k-means (k-means++
seeds, fixed seed) of the first ``k`` eigenvectors, rows scaled to unit length
(Ng, Jordan & Weiss 2001). The 2-D embedding shown on the page is the spectral embedding:
the first two non-trivial eigenvectors, ``D^-1/2 u_1`` and ``D^-1/2 u_2``.

Only numpy and scipy: scikit-learn is not a runtime dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh

DEFAULT_SIDE = 16
DEFAULT_MAX_K = 6
NEIGHBOUR = 7  # local-scaling neighbour (Zelnik-Manor & Perona's choice)
MAX_CUT = 0.3  # a split into k clusters needs l_{k-1} at most this
DENSE_UP_TO = 300  # a full eigen-decomposition below this many maps; Lanczos (eigsh) above


@dataclass(frozen=True)
class Clustering:
    """``labels`` (n,) in 0..k-1, the chosen ``k``, the Laplacian's smallest eigenvalues and
    the 2-D ``embedding`` (n x 2)."""

    labels: np.ndarray
    k: int
    eigenvalues: np.ndarray
    embedding: np.ndarray


def map_vectors(cams: Sequence[np.ndarray], side: int = DEFAULT_SIDE) -> np.ndarray:
    """Maps (any h x w each) as unit-length vectors of ``side * side`` (an all-zero map stays zero)."""
    rows = np.zeros((len(cams), side * side), dtype=np.float64)
    for i, cam in enumerate(cams):
        small = cv2.resize(np.asarray(cam, dtype=np.float32), (side, side), interpolation=cv2.INTER_AREA)
        vector = np.clip(small.astype(np.float64).ravel(), 0.0, None)
        norm = np.linalg.norm(vector)
        rows[i] = vector / norm if norm > 0 else vector
    return rows


def affinity(vectors: np.ndarray) -> np.ndarray:
    """The locally scaled Gaussian affinity (n x n, zero diagonal)."""
    squared = np.sum(vectors**2, axis=1)
    d2 = np.clip(squared[:, None] + squared[None, :] - 2.0 * vectors @ vectors.T, 0.0, None)
    distances = np.sqrt(d2)
    neighbour = min(NEIGHBOUR, len(vectors) - 1)
    scale = np.sort(distances, axis=1)[:, neighbour]
    scale = np.where(scale > 0, scale, max(float(scale.max()), 1e-6))
    weights = np.exp(-d2 / (scale[:, None] * scale[None, :]))
    np.fill_diagonal(weights, 0.0)
    return weights


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = 100, restarts: int = 4) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeds; the best of ``restarts`` (lowest inertia); labels (n,)."""
    rng = np.random.default_rng(seed)
    best, best_inertia = np.zeros(len(points), dtype=np.int64), np.inf
    for _ in range(restarts):
        centres = _plus_plus(points, k, rng)
        labels = np.zeros(len(points), dtype=np.int64)
        for step in range(iterations):
            distance = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
            new = distance.argmin(axis=1)
            if step > 0 and np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = points[labels == j]
                centres[j] = members.mean(axis=0) if len(members) else points[rng.integers(len(points))]
        inertia = float(((points - centres[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    return _relabel_by_size(best)


def _plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        distance = np.min([((points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = distance.sum()
        index = rng.choice(len(points), p=distance / total) if total > 0 else rng.integers(len(points))
        centres.append(points[index])
    return np.array(centres, dtype=np.float64)


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest (ties: first seen), so labels do not depend on k-means' order."""
    ids, counts = np.unique(labels, return_counts=True)
    order = sorted(ids, key=lambda i: (-counts[ids == i][0], int(np.argmax(labels == i))))
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)


def choose_k(eigenvalues: np.ndarray, max_k: int) -> int:
    """The eigengap choice among the splits that cut few ties: the k in 2..max_k with
    ``l_{k-1} <= MAX_CUT`` whose gap ``l_k - l_{k-1}`` is largest; 1 when none qualifies."""
    gaps = np.diff(eigenvalues[: max_k + 1])
    best, best_gap = 1, -1.0
    for k in range(2, len(gaps) + 1):
        if eigenvalues[k - 1] <= MAX_CUT and gaps[k - 1] > best_gap:
            best, best_gap = k, float(gaps[k - 1])
    return best


def smallest_eigenpairs(normalised: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues (ascending) and eigenvectors of ``L = I - M`` for the
    normalised affinity ``M = D^-1/2 A D^-1/2``: a dense solver for small n, else Lanczos on the
    largest eigenvalues of ``M`` (seconds instead of minutes at 1,000 maps; same values)."""
    n = len(normalised)
    if n <= DENSE_UP_TO or count >= n - 1:
        return eigh(np.eye(n) - normalised, subset_by_index=[0, count - 1])
    mu, vectors = eigsh(normalised, k=count, which="LA", v0=np.ones(n), tol=1e-8)
    order = np.argsort(-mu)
    return 1.0 - mu[order], vectors[:, order]


def spectral_clusters(vectors: np.ndarray, max_k: int = DEFAULT_MAX_K, seed: int = 0) -> Clustering:
    """Cluster map vectors (n x d) by spectral clustering with the eigengap choice of k."""
    n = len(vectors)
    if n < 3:
        return Clustering(np.zeros(n, dtype=np.int64), 1, np.zeros(n), np.zeros((n, 2)))
    weights = affinity(vectors)
    degree = weights.sum(axis=1)
    inverse_root = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    count = min(max_k + 1, n)
    values, vectors_u = smallest_eigenpairs(inverse_root[:, None] * weights * inverse_root[None, :], count)
    values = np.clip(values, 0.0, None)
    k = choose_k(values, min(max_k, n - 1))
    embedding = inverse_root[:, None] * vectors_u[:, 1:3] if count >= 3 else np.zeros((n, 2))
    if k == 1:
        return Clustering(np.zeros(n, dtype=np.int64), 1, values, embedding)
    rows = vectors_u[:, :k]
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return Clustering(kmeans(rows, k, seed), k, values, embedding)
