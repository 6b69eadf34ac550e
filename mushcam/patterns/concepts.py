"""Concepts per class: Deep Feature Factorization (Collins et al. 2018) of a layer's activations.

The target layer's activations of a class's photos are stacked into ``V`` (one row per
photo x position, one column per channel; non-negative after the ReLUs) and factorised by
non-negative matrix factorisation, ``V ~ W H`` with ``W`` (positions x k) and ``H`` (k x
channels) non-negative (Lee & Seung's multiplicative updates for the Frobenius loss, a
fixed seed). Row ``H_k`` is concept k's channel signature; column ``W_k`` reshaped per photo
is where the concept is in it (its heat map).

Contribution to the class logit, through the head (first-order, gradient x input)::

    contribution_k = (1/N) sum_photos sum_ij  dy_c/dA_ij · (W_k,ij H_k)

For a linear head after global average pooling (one Linear after the pooling, as in the
torchvision ResNet-50 and EfficientNet-B0 presets) ``dy_c/dA_ij = w_c / (h w)``
and this is exactly ``w_c · mean_ij(W_k H_k)``: the logit is ``sum_k contribution_k`` plus the
bias plus the residual ``w_c · mean_ij(V - WH)``. For a head with hidden layers (MobileNetV3's
Linear-Hardswish-Linear, a custom MLP) it is the first-order Taylor share at each photo's
own activations: it ranks the concepts but does not sum exactly to the logit.

Streamed per class: only one class's activations (and their gradients) are held at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mushcam.gradcam import eval_mode, layer_recorder, prepare_inputs, recorded_forward
from mushcam.models.layers import as_feature_map

DEFAULT_CONCEPTS = 4
ITERATIONS = 200
TOP_PHOTOS = 4
EPS = 1e-9
REPORT_EVERY = 20


def nmf(values: np.ndarray, k: int, iterations: int = ITERATIONS, seed: int = 0,
        progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``W`` (n x k), ``H`` (k x m) >= 0 with ``values ~ W @ H`` (multiplicative updates).

    Rows of ``H`` are scaled to unit length (the scale moves into ``W``) and the concepts are
    ordered by their total weight ``sum(W_k)``, largest first. ``values`` is divided by its
    maximum first (and ``W`` multiplied back): the updates' guard ``EPS`` would otherwise
    swamp the activations of a network whose values are tiny (a random one's are ~1e-11) and
    drive every factor to 0. ``progress(iterations done, iterations)`` every
    :data:`REPORT_EVERY` iterations (a class of 235 photos takes seconds; it may raise to stop).
    """
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    magnitude = float(v.max()) if v.size else 0.0
    if magnitude > 0:
        v = v / magnitude
    n, m = v.shape
    k = max(1, min(k, n, m))
    rng = np.random.default_rng(seed)
    scale = np.sqrt(max(v.mean(), EPS) / k)
    w = rng.uniform(0.1, 1.0, size=(n, k)) * scale
    h = rng.uniform(0.1, 1.0, size=(k, m)) * scale
    for step in range(iterations):
        h *= (w.T @ v) / (w.T @ w @ h + EPS)
        w *= (v @ h.T) / (w @ (h @ h.T) + EPS)
        if progress is not None and (step + 1) % REPORT_EVERY == 0:
            progress(step + 1, iterations)
    norms = np.linalg.norm(h, axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    h, w = h / norms[:, None], w * norms[None, :]
    order = np.argsort(-w.sum(axis=0), kind="stable")
    return w[:, order] * (magnitude if magnitude > 0 else 1.0), h[order]


@dataclass(frozen=True)
class Concept:
    """One concept of a class: its share of the activation, its contribution to the logit and
    the photos where it is strongest (with its h x w map in each)."""

    index: int
    share: float
    contribution: float
    top_paths: tuple[str, ...]
    top_maps: tuple[np.ndarray, ...]

    def to_dict(self) -> dict[str, object]:
        return {"concept": self.index, "share": self.share, "contribution": self.contribution,
                "top_photos": list(self.top_paths)}


@dataclass(frozen=True)
class ClassConcepts:
    class_name: str
    n_photos: int
    mean_logit: float
    concepts: tuple[Concept, ...]

    def to_dict(self) -> dict[str, object]:
        return {"class": self.class_name, "n_photos": self.n_photos, "mean_logit": self.mean_logit,
                "concepts": [c.to_dict() for c in self.concepts]}


def activations_and_gradients(model: nn.Module, inputs: torch.Tensor, layer: str,
                              class_idx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layer's activations and d logit_c / d activation (each N x h x w x C, float32) and the logits of c."""
    inputs = prepare_inputs(model, inputs)
    with eval_mode(model), layer_recorder(model, [layer]) as recorder, torch.no_grad():
        logits, _ = recorded_forward(model, inputs, [layer], recorder, class_idx)
        activation = recorder.activations[layer]
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(logits[:, class_idx].sum(), [activation])
        layout = recorder.layouts[layer]
        a = as_feature_map(activation.detach(), layout).permute(0, 2, 3, 1).float().cpu().numpy()
        g = as_feature_map(gradient, layout).permute(0, 2, 3, 1).float().cpu().numpy()
    return a, g, logits[:, class_idx].detach().float().cpu().numpy()


def class_concepts(
    model: nn.Module,
    layer: str,
    batches: Iterable[tuple[Sequence[str], torch.Tensor]],
    class_idx: int,
    class_name: str,
    k: int = DEFAULT_CONCEPTS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ClassConcepts:
    """Factorise the activations of one class's photos (given as batches of (paths, inputs));
    ``progress`` is handed to :func:`nmf`."""
    paths: list[str] = []
    acts, grads, logits = [], [], []
    for batch_paths, inputs in batches:
        a, g, y = activations_and_gradients(model, inputs, layer, class_idx)
        paths.extend(batch_paths)
        acts.append(a)
        grads.append(g)
        logits.append(y)
    if not paths:
        return ClassConcepts(class_name, 0, float("nan"), ())
    a, g = np.concatenate(acts), np.concatenate(grads)
    n, h, w, channels = a.shape
    weights, signatures = nmf(np.clip(a.reshape(-1, channels), 0.0, None), k, seed=seed, progress=progress)
    per_position = (g.reshape(-1, channels) @ signatures.T)  # (n h w) x k: dy_c/dA_p · H_k
    contribution = (weights * per_position).sum(axis=0) / n
    spatial = weights.reshape(n, h, w, -1)
    strength = spatial.mean(axis=(1, 2))  # n x k
    total = float(weights.sum())
    concepts = []
    for index in range(weights.shape[1]):
        top = np.argsort(-strength[:, index], kind="stable")[:TOP_PHOTOS]
        share = float(weights[:, index].sum() / total) if total > 0 else 0.0
        concepts.append(Concept(index, share, float(contribution[index]),
                                tuple(paths[i] for i in top),
                                tuple(spatial[i, :, :, index].astype(np.float32) for i in top)))
    return ClassConcepts(class_name, n, float(np.concatenate(logits).mean()), tuple(concepts))
