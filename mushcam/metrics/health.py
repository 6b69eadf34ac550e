"""Is this model degenerate? Chance-level accuracy and predictions collapsed onto few classes.

A map of a model that has learned nothing looks as convincing as any other; these checks say
in words when the numbers behind the model do not support reading its maps.

- **Chance**: with K classes, guessing is right with probability ``1 / K``. The accuracy is
  "at chance" when the Wilson 95 % interval of ``correct / n`` contains ``1 / K``::

      p = correct / n,  z = 1.96
      centre = (p + z^2 / 2n) / (1 + z^2 / n)
      half   = z * sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)

- **Collapse**: with K >= 4 classes and n >= 10 predictions, the model is "collapsed" when its
  one or two most frequent predicted classes take at least ``COLLAPSE_SHARE`` (90 %) of all
  predictions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

COLLAPSE_SHARE = 0.9
Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95 % by default); (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class ChanceCheck:
    accuracy: float
    chance: float
    interval: tuple[float, float]
    n: int

    @property
    def at_chance(self) -> bool:
        """True when the accuracy's 95 % interval reaches down to (or below) chance (never with no labelled photo)."""
        return self.n > 0 and self.interval[0] <= self.chance

    @property
    def warning(self) -> str | None:
        if not self.at_chance:
            return None
        low, high = self.interval
        return (f"accuracy {self.accuracy:.1%} (95 % interval {low:.1%}–{high:.1%}, n = {self.n}) is not above "
                f"chance ({self.chance:.1%} for {round(1 / self.chance)} classes): read its maps as those of a "
                "model that has not learned the task")


def chance_check(correct: int, n: int, num_classes: int) -> ChanceCheck:
    """Accuracy against the chance level ``1 / num_classes``."""
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1")
    accuracy = correct / n if n else 0.0
    return ChanceCheck(accuracy, 1.0 / num_classes, wilson_interval(correct, n), n)


@dataclass(frozen=True)
class CollapseCheck:
    top: tuple[tuple[str, int], ...]  # (class, count) of the one or two classes that dominate
    n: int
    num_classes: int

    @property
    def share(self) -> float:
        return sum(count for _, count in self.top) / self.n if self.n else 0.0

    @property
    def collapsed(self) -> bool:
        return self.num_classes >= 4 and self.n >= 10 and self.share >= COLLAPSE_SHARE

    @property
    def warning(self) -> str | None:
        if not self.collapsed:
            return None
        names = " and ".join(name for name, _ in self.top)
        return (f"the model's predictions collapse onto {names}: {self.share:.0%} of {self.n} photos are called "
                f"{'one of these' if len(self.top) > 1 else 'this'} (of {self.num_classes} classes)")


def collapse_check(predicted: Sequence[str], num_classes: int) -> CollapseCheck:
    """How much of ``predicted`` (one class name per photo) the one or two most frequent classes take.

    One class is named when it alone reaches the share; otherwise the two most frequent.
    """
    counts = Counter(predicted).most_common(2)
    n = len(predicted)
    if counts and n and counts[0][1] / n >= COLLAPSE_SHARE:
        counts = counts[:1]
    return CollapseCheck(tuple(counts), n, num_classes)


@dataclass(frozen=True)
class ModelHealth:
    """Both checks on one evaluated run, and the warnings they give (empty for a healthy model)."""

    chance: ChanceCheck
    collapse: CollapseCheck

    @property
    def warnings(self) -> list[str]:
        return [w for w in (self.collapse.warning, self.chance.warning) if w is not None]


def model_health(true_idx: Sequence[int], pred_idx: Sequence[int], class_names: Sequence[str]) -> ModelHealth:
    """Chance and collapse checks of one run's predictions (rows whose true class is unknown, -1, are
    left out of the accuracy but counted in the collapse check)."""
    pairs = list(zip((int(t) for t in true_idx), (int(p) for p in pred_idx), strict=True))
    known = [(t, p) for t, p in pairs if t >= 0]
    correct = sum(1 for t, p in known if t == p)
    names = [class_names[p] if 0 <= p < len(class_names) else str(p) for _, p in pairs]
    return ModelHealth(chance_check(correct, len(known), len(class_names)), collapse_check(names, len(class_names)))
