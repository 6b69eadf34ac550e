"""Classification metrics for one model on one test set, with toxicity-aware error rates.

Everything works on integer class indices (``true``, ``predicted``: 1-D arrays of equal
length) and the manifest's toxicity per class index. Plain NumPy: no scikit-learn needed.

Toxicity-aware errors (thesis 4.4.3; the dangerous direction is the one that matters):

- **dangerous error**: the true class is ``poisonous`` and the predicted class is
  ``edible``. Rate = dangerous count / number of images whose true class is poisonous.
- **benign error**: the true class is ``edible`` and the predicted class is ``poisonous``.
  Rate = benign count / number of images whose true class is edible.

Other toxicities (``mixed``, ``inedible``, ``unknown``) are neither: a poisonous genus
predicted as a ``mixed`` one, or a ``mixed`` genus predicted as edible, counts only as an
ordinary error. A rate whose denominator is zero is NaN ("not defined"), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POISONOUS = "poisonous"
EDIBLE = "edible"

# Per-row error kinds (see :func:`error_kinds`).
CORRECT = 0
DANGEROUS = 1  # poisonous -> edible
BENIGN = 2  # edible -> poisonous
OTHER_WRONG = 3  # any other misclassification


def _indices(values: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64).reshape(-1)
    return array


def _check(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> None:
    if true.shape != predicted.shape:
        raise ValueError(f"true and predicted differ in length: {true.size} vs {predicted.size}")
    for name, values in (("true", true), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} class index out of range 0..{num_classes - 1}")


def confusion_matrix(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """``C[i, j]`` = number of images of true class ``i`` predicted as ``j`` (int64, C x C)."""
    t, p = _indices(true), _indices(predicted)
    _check(t, p, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> float:
    """Fraction of images whose predicted class is the true class (NaN for no images)."""
    t, p = _indices(true), _indices(predicted)
    if t.shape != p.shape:
        raise ValueError(f"true and predicted differ in length: {t.size} vs {p.size}")
    return float((t == p).mean()) if t.size else float("nan")


@dataclass(frozen=True)
class ClassScores:
    """One class: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN).

    ``support`` is the number of images of this true class; ``predicted`` how many images
    were predicted as it. A score with a zero denominator is NaN (undefined), not 0; F1
    (equal to 2PR / (P + R) where both exist) is 0 for a class with images that is never
    predicted.
    """

    name: str
    toxicity: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def per_class_scores(confusion: np.ndarray, class_names: Sequence[str], toxicities: Sequence[str]) -> list[ClassScores]:
    """Precision, recall and F1 of every class from a confusion matrix."""
    confusion = np.asarray(confusion)
    scores = []
    for i, name in enumerate(class_names):
        tp = int(confusion[i, i])
        support = int(confusion[i, :].sum())
        predicted = int(confusion[:, i].sum())
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        f1 = _ratio(2 * tp, support + predicted)  # = 2TP / (2TP + FP + FN)
        scores.append(ClassScores(name, toxicities[i], precision, recall, f1, support, predicted))
    return scores


def _toxicity_masks(toxicities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    tox = np.asarray(list(toxicities), dtype=object)
    return tox == POISONOUS, tox == EDIBLE


def error_kinds(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, toxicities: Sequence[str]
) -> np.ndarray:
    """Per image: CORRECT, DANGEROUS (poisonous -> edible), BENIGN (edible -> poisonous) or OTHER_WRONG (int8)."""
    t, p = _indices(true), _indices(predicted)
    _check(t, p, len(toxicities))
    poisonous, edible = _toxicity_masks(toxicities)
    kinds = np.full(t.shape, OTHER_WRONG, dtype=np.int8)
    kinds[poisonous[t] & edible[p]] = DANGEROUS
    kinds[edible[t] & poisonous[p]] = BENIGN
    kinds[t == p] = CORRECT
    return kinds


def dangerous_error_count(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, toxicities: Sequence[str]
) -> int:
    """Images of a poisonous class predicted as an edible class."""
    return int((error_kinds(true, predicted, toxicities) == DANGEROUS).sum())


def dangerous_error_rate(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, toxicities: Sequence[str]
) -> float:
    """Dangerous count / number of images whose true class is poisonous (NaN if there are none)."""
    poisonous, _ = _toxicity_masks(toxicities)
    return _ratio(dangerous_error_count(true, predicted, toxicities), int(poisonous[_indices(true)].sum()))


def benign_error_count(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, toxicities: Sequence[str]
) -> int:
    """Images of an edible class predicted as a poisonous class."""
    return int((error_kinds(true, predicted, toxicities) == BENIGN).sum())


def benign_error_rate(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, toxicities: Sequence[str]
) -> float:
    """Benign count / number of images whose true class is edible (NaN if there are none)."""
    _, edible = _toxicity_masks(toxicities)
    return _ratio(benign_error_count(true, predicted, toxicities), int(edible[_indices(true)].sum()))


@dataclass(frozen=True)
class ModelMetrics:
    """Every number the report and the Errors page show for one model on one test set."""

    class_names: tuple[str, ...]
    toxicities: tuple[str, ...]
    n_images: int
    accuracy: float
    confusion: np.ndarray  # C x C, rows = true class, columns = predicted class
    classes: tuple[ClassScores, ...]
    dangerous_count: int
    poisonous_images: int
    benign_count: int
    edible_images: int

    @property
    def dangerous_rate(self) -> float:
        """Poisonous images predicted edible / poisonous images (NaN if none)."""
        return _ratio(self.dangerous_count, self.poisonous_images)

    @property
    def benign_rate(self) -> float:
        """Edible images predicted poisonous / edible images (NaN if none)."""
        return _ratio(self.benign_count, self.edible_images)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that have test images (NaN F1s are left out)."""
        values = [c.f1 for c in self.classes if c.support and not np.isnan(c.f1)]
        return float(np.mean(values)) if values else float("nan")


def compute_metrics(
    true: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    toxicities: Sequence[str],
) -> ModelMetrics:
    """Accuracy, per-class scores, confusion matrix and the toxicity-aware error counts."""
    if len(class_names) != len(toxicities):
        raise ValueError(f"{len(class_names)} class names but {len(toxicities)} toxicities")
    t, p = _indices(true), _indices(predicted)
    confusion = confusion_matrix(t, p, len(class_names))
    kinds = error_kinds(t, p, toxicities)
    poisonous, edible = _toxicity_masks(toxicities)
    return ModelMetrics(
        class_names=tuple(class_names),
        toxicities=tuple(toxicities),
        n_images=int(t.size),
        accuracy=accuracy(t, p),
        confusion=confusion,
        classes=tuple(per_class_scores(confusion, class_names, toxicities)),
        dangerous_count=int((kinds == DANGEROUS).sum()),
        poisonous_images=int(poisonous[t].sum()),
        benign_count=int((kinds == BENIGN).sum()),
        edible_images=int(edible[t].sum()),
    )


def format_rate(count: int, rate: float, denominator: int) -> str:
    """``"3 / 85 (3.5%)"``, or ``"0 / 0 (n/a)"`` where the rate is undefined."""
    shown = "n/a" if np.isnan(rate) else f"{rate:.1%}"
    return f"{count} / {denominator} ({shown})"
