"""How much each class counts and how a model is judged: the loss weights (poisonous genera
count more) and the weighted loss, accuracy and dangerous-error rate of a split."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mushcam import metrics as classification
from mushcam.exceptions import MushcamError
from mushcam.toxicity import Toxicity

POISONOUS = Toxicity.POISONOUS  # kept for ``from mushcam.train import POISONOUS``
EDIBLE = Toxicity.EDIBLE


def class_weights(
    counts: Sequence[int],
    toxicities: Sequence[str],
    poisonous_weight: float = 4.0,
    inverse_frequency: bool = False,
) -> torch.Tensor:
    """Loss weight of each class: ``w_c = f_c * p_c``.

    ``f_c = N / (C * n_c)`` (N images, C classes, n_c images of class c) when
    ``inverse_frequency``, else 1; ``p_c = poisonous_weight`` for a class whose toxicity is
    ``poisonous`` (the thesis used 4), else 1. ``mixed``, ``inedible`` and ``unknown`` classes
    are not up-weighted: the dangerous error is defined on ``poisonous`` alone.
    """
    if len(counts) != len(toxicities):
        raise MushcamError(f"{len(counts)} class counts but {len(toxicities)} toxicities")
    if not counts:
        raise MushcamError("no classes")
    if not poisonous_weight > 0 or not math.isfinite(poisonous_weight):
        raise MushcamError(f"the poisonous weight must be a positive number; got {poisonous_weight}")
    if any(int(n) < 0 for n in counts):
        raise MushcamError(f"class counts cannot be negative: {list(counts)}")
    weights = torch.ones(len(counts), dtype=torch.float64)
    if inverse_frequency:
        if any(int(n) == 0 for n in counts):
            raise MushcamError("inverse-frequency weights need at least one image of every class")
        total = float(sum(int(n) for n in counts))
        weights = torch.tensor([total / (len(counts) * int(n)) for n in counts], dtype=torch.float64)
    for i, toxicity in enumerate(toxicities):
        if toxicity == Toxicity.POISONOUS:
            weights[i] *= float(poisonous_weight)
    return weights.float()


def dangerous_error_rate(true_idx: torch.Tensor, pred_idx: torch.Tensor, toxicities: Sequence[str]) -> float:
    """(# poisonous images predicted as an edible class) / (# poisonous images); NaN if none.

    The tensor form of :func:`mushcam.metrics.dangerous_error_rate` (one definition).
    """
    true, predicted = true_idx.long().cpu().numpy(), pred_idx.long().cpu().numpy()
    return classification.dangerous_error_rate(true, predicted, toxicities)


@dataclass(frozen=True)
class SplitMetrics:
    """Weighted cross-entropy, accuracy and dangerous-error rate of a model on one split."""

    loss: float
    accuracy: float
    dangerous_error_rate: float
    images: int


def evaluate_tensors(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    toxicities: Sequence[str],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> SplitMetrics:
    """Metrics of ``model`` (in eval mode) on preprocessed ``inputs``.

    loss = sum_i w_{y_i} CE_i / sum_i w_{y_i} (what ``nn.CrossEntropyLoss(weight=w)`` gives
    for the whole split at once).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    weights = weights.to(device)
    loss_sum, weight_sum = 0.0, 0.0
    predictions = []
    try:
        with torch.inference_mode():
            for start in range(0, len(labels), batch_size):
                x = inputs[start : start + batch_size].to(device)
                y = labels[start : start + batch_size].to(device)
                logits = model(x).float()
                per_image = nn.functional.cross_entropy(logits, y, reduction="none")
                loss_sum += float((per_image * weights[y]).sum())
                weight_sum += float(weights[y].sum())
                predictions.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    if not predictions:
        return SplitMetrics(float("nan"), float("nan"), float("nan"), 0)
    predicted = torch.cat(predictions)
    return SplitMetrics(
        loss=loss_sum / weight_sum if weight_sum > 0 else float("nan"),
        accuracy=float((predicted == labels.cpu()).float().mean()),
        dangerous_error_rate=dangerous_error_rate(labels, predicted, toxicities),
        images=len(labels),
    )
