"""Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018).

A map that explains the model must change when the model's learnt parameters are
destroyed. Starting from the logits, the network's blocks are re-initialised one at a
time, cumulatively (the head, then the head and the block below it, ...), on a deep copy
(the caller's model is never touched), and after each step the map of the same image and
class is compared with the trained model's map:

- Spearman's rank correlation of the two maps (:func:`mushcam.metrics.agreement.spearman`);
- SSIM (Wang et al. 2004) with a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, data range 1
  and sample covariances (scikit-image's ``structural_similarity`` defaults), averaged over
  the positions where the window fits.

Both are computed on the maps upsampled to the input and min-max scaled, at most
``COMPARE_SIDE`` pixels on a side. A map that the randomised network leaves empty (all
zero) has no ranking: its Spearman is NaN and counts as 0 (no agreement) in the summary.

A method/model pair is **flagged** when the mean Spearman over the whole cascade is at
least ``FLAG_THRESHOLD`` (0.5): on average the maps of a network with random parameters
still rank the pixels like the trained network's, so the map shows the image more than the
model. An edge detector posing as a method (no model at all) is flagged; Grad-CAM of a
trained network is not (tested).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mushcam.cam import cam as explain_maps  # same arguments: model, inputs, layer, class_idx, method
from mushcam.cam import eval_mode, predicted_classes
from mushcam.exceptions import MushcamError
from mushcam.metrics.agreement import spearman
from mushcam.trust.faithfulness import saliency

FLAG_THRESHOLD = 0.5
COMPARE_SIDE = 64
SSIM_WINDOW = 7

# (model, inputs N x C x H x W, class indices (N,)) -> raw maps N x h x w
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
# (maps done, maps in all): called after each map of the cascade
Progress = Callable[[int, int], None]


def _silent(done: int, total: int) -> None:
    """The progress callback of a caller who wants none."""


class SanityError(MushcamError):
    """The sanity check cannot run on this model (the message says why)."""


def method_explainer(layer: str, method: str) -> Explainer:
    """An :data:`Explainer` for a CAM method at ``layer``."""

    def explain(model: nn.Module, inputs: torch.Tensor, class_idx: torch.Tensor) -> torch.Tensor:
        return explain_maps(model, inputs, layer, class_idx, method).cams

    return explain


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def randomisation_blocks(model: nn.Module) -> list[str]:
    """The blocks re-initialised by the cascade, input to output.

    The model's top-level children that hold parameters; a child that is a ``Sequential``
    or ``ModuleList`` of several parameterised parts (ResNet's ``layer4``, EfficientNet's
    ``features``) is split into those parts, one level down.
    """
    blocks: list[str] = []
    for name, child in model.named_children():
        if not _has_parameters(child):
            continue
        parts = [(f"{name}.{sub}", grand) for sub, grand in child.named_children() if _has_parameters(grand)]
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(parts) > 1:
            blocks.extend(part for part, _ in parts)
        else:
            blocks.append(name)
    if not blocks:
        raise SanityError("the model has no parameters to randomise")
    return blocks


def reinitialise(module: nn.Module) -> None:
    """Re-draw every parameter of ``module``: each layer's own ``reset_parameters`` where it has one
    (BatchNorm: unit scale, zero shift, fresh running statistics), else N(0, std of the old values)."""
    for sub in module.modules():
        if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
            sub.reset_parameters()
        else:
            for parameter in sub.parameters(recurse=False):
                with torch.no_grad():
                    std = float(parameter.std()) if parameter.numel() > 1 else 0.02
                    parameter.normal_(0.0, std if math.isfinite(std) and std > 0 else 0.02)


def ssim(a: np.ndarray, b: np.ndarray, window: int = SSIM_WINDOW) -> float:
    """Mean SSIM of two maps in [0, 1] of the same shape (scikit-image's default definition)."""
    x = torch.as_tensor(np.asarray(a, dtype=np.float64))[None, None]
    y = torch.as_tensor(np.asarray(b, dtype=np.float64))[None, None]
    if x.shape != y.shape:
        raise ValueError(f"maps must have the same shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"maps must be at least {window} x {window} for SSIM")

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, stride=1)

    count = window * window
    covariance = count / (count - 1)
    c1, c2 = 0.01**2, 0.03**2
    ux, uy = mean(x), mean(y)
    vx = covariance * (mean(x * x) - ux * ux)
    vy = covariance * (mean(y * y) - uy * uy)
    vxy = covariance * (mean(x * y) - ux * uy)
    value = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(value.mean())


def _compare_grid(inputs: torch.Tensor) -> tuple[int, int]:
    height, width = inputs.shape[-2:]
    scale = min(1.0, COMPARE_SIDE / max(height, width))
    return max(SSIM_WINDOW, round(height * scale)), max(SSIM_WINDOW, round(width * scale))


@dataclass(frozen=True)
class SanityResult:
    """Per image and cascade step: Spearman and SSIM between the trained and randomised maps.

    ``blocks``: the blocks in the order they were randomised (the one nearest the logits
    first); step t has ``blocks[:t + 1]`` random. ``spearman`` / ``ssim``: N x steps.
    """

    blocks: tuple[str, ...]
    spearman: np.ndarray
    ssim: np.ndarray

    @property
    def mean_spearman(self) -> np.ndarray:
        """Per step, over images; an empty randomised map (NaN) counts as 0."""
        return np.nan_to_num(self.spearman, nan=0.0).mean(axis=0)

    @property
    def mean_ssim(self) -> np.ndarray:
        return self.ssim.mean(axis=0)

    @property
    def score(self) -> float:
        """Mean Spearman over the whole cascade (what the flag reads)."""
        return float(self.mean_spearman.mean())

    @property
    def flagged(self) -> bool:
        return self.score >= FLAG_THRESHOLD


def sanity_check(
    model: nn.Module,
    inputs: torch.Tensor,
    explainer: Explainer,
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SanityResult:
    """Cascading randomisation of a deep copy of ``model`` for a batch ``inputs`` (N x C x H x W).

    ``class_idx``: the class explained in every step (default: the trained model's
    prediction). ``blocks`` (input to output, default :func:`randomisation_blocks`) are
    randomised from the last one down. Random draws come from ``seed`` without touching the
    global random state. ``progress(done, total)`` is called after each of the
    ``len(blocks) + 1`` maps (the trained model's, then one per step), so a slow method
    (Score-CAM: one forward pass per channel, per map) says how far it is.
    """
    if inputs.dim() == 3:
        inputs = inputs.unsqueeze(0)
    chosen = list(blocks) if blocks is not None else randomisation_blocks(model)
    if class_idx is None:
        with eval_mode(model), torch.no_grad():
            classes = predicted_classes(model(inputs))
    elif isinstance(class_idx, int):
        classes = torch.full((inputs.shape[0],), class_idx, dtype=torch.long)
    else:
        classes = torch.as_tensor(class_idx, dtype=torch.long).flatten()
    grid = _compare_grid(inputs)
    report = progress if progress is not None else _silent
    original = saliency(explainer(model, inputs, classes), grid).double().numpy()
    report(1, len(chosen) + 1)

    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    for name in chosen:
        if name not in modules:
            raise SanityError(f"no block named {name!r} in the model")
    rho = np.full((inputs.shape[0], len(chosen)), np.nan)
    similarity = np.full((inputs.shape[0], len(chosen)), np.nan)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step, name in enumerate(reversed(chosen)):
            reinitialise(modules[name])
            maps = saliency(explainer(randomised, inputs, classes), grid).double().numpy()
            for i in range(inputs.shape[0]):
                rho[i, step] = spearman(original[i], maps[i])
                similarity[i, step] = ssim(original[i], maps[i])
            report(step + 2, len(chosen) + 1)
    return SanityResult(tuple(reversed(chosen)), rho, similarity)
