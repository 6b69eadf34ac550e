"""What a gradient method differentiates: the explained class's logit, or a contrast of logits.

A target turns the logits (N x C) and the explained class of each image (N,) into one score
per image (N,); the engine differentiates their sum with respect to the hooked activation
(images in a batch do not interact in eval mode, so each image's gradient is its own).

- :func:`class_score`: ``y_c`` (what every method explains by default);
- :func:`contrast_score`: ``y_A - y_B``: "what pushed A above B" (Grad-CAM of a difference of
  logits; for a head linear in the pooled features, its pre-ReLU map is the difference of the two
  classes' pre-ReLU maps);
- :func:`finer_score`: Finer-CAM (Zhang et al. 2025), the target logit against its most similar
  classes, weighted by their probabilities ``p_j = softmax(y)_j``::

      S = sum_j p_j (y_c - alpha * y_j) / (sum_j p_j + 1e-9)

  over the ``comparisons`` classes whose logits are nearest ``y_c`` (pytorch-grad-cam's default:
  the 1st, 2nd and 3rd nearest; the weights stay in the graph, as in the peer).

Contrastive maps are targets, not separate engines: any gradient method takes any target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mushcam.exceptions import MushcamError

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits N x C, classes (N,)) -> scores (N,)
FINER_COMPARISONS = (1, 2, 3)  # ranks by logit distance to the target (rank 0 is the target itself)


class TargetError(MushcamError):
    """A contrast that cannot be made (a class out of range, or a class against itself)."""


def class_score(logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``y_{n, c_n}`` for each image."""
    return logits.gather(1, chosen.view(-1, 1)).squeeze(1)


def _versus_indices(versus: int | Sequence[int] | torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    n, num_classes = logits.shape
    if isinstance(versus, int) and not isinstance(versus, bool):
        other = torch.full((n,), int(versus), dtype=torch.long, device=logits.device)
    else:
        other = torch.as_tensor(versus, dtype=torch.long, device=logits.device).flatten()
        if other.numel() != n:
            raise TargetError(f"versus has {other.numel()} entries for a batch of {n} images")
    if bool(((other < 0) | (other >= num_classes)).any()):
        raise TargetError(f"versus class {int(other[(other < 0) | (other >= num_classes)][0])} is out of range: "
                          f"the model has {num_classes} classes")
    return other


def contrast_score(versus: int | Sequence[int] | torch.Tensor) -> Score:
    """The target ``y_A - y_B`` with B = ``versus`` (one class for all images, or one per image)."""

    def score(logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        other = _versus_indices(versus, logits)
        if bool((other == chosen).any()):
            raise TargetError("a class cannot be contrasted with itself: choose another 'versus' class")
        return class_score(logits, chosen) - logits.gather(1, other.view(-1, 1)).squeeze(1)

    return score


def finer_score(alpha: float = 1.0, comparisons: Sequence[int] = FINER_COMPARISONS) -> Score:
    """Finer-CAM's target (see the module): ``y_c`` against its nearest classes by logit."""

    def score(logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        ranks = [r for r in comparisons if r < num_classes]
        if not ranks:
            return class_score(logits, chosen)
        main = class_score(logits, chosen)
        distance = (logits.detach() - main.detach()[:, None]).abs()
        distance.scatter_(1, chosen.view(-1, 1), -1.0)  # the target itself ranks first
        order = distance.argsort(dim=1, stable=True)
        others = order[:, ranks]  # N x R
        probabilities = torch.softmax(logits, dim=1)
        weights = probabilities.gather(1, others)
        values = logits.gather(1, others)
        numerator = (weights * (main[:, None] - alpha * values)).sum(dim=1)
        return numerator / (weights.sum(dim=1) + 1e-9)

    return score
