"""Metrics: classification (:mod:`mushcam.metrics.classification`: accuracy, per class,
confusion, dangerous-error rate) and map agreement and focus (:mod:`mushcam.metrics.agreement`).

Faithfulness and sanity live in :mod:`mushcam.trust`. Every classification name is
importable from here as before (``from mushcam.metrics import compute_metrics``).
"""

from mushcam.metrics.classification import (
    BENIGN,
    CORRECT,
    DANGEROUS,
    EDIBLE,
    OTHER_WRONG,
    POISONOUS,
    ClassScores,
    ModelMetrics,
    accuracy,
    benign_error_count,
    benign_error_rate,
    compute_metrics,
    confusion_matrix,
    dangerous_error_count,
    dangerous_error_rate,
    error_kinds,
    format_rate,
    per_class_scores,
)

__all__ = [
    "BENIGN",
    "CORRECT",
    "DANGEROUS",
    "EDIBLE",
    "OTHER_WRONG",
    "POISONOUS",
    "ClassScores",
    "ModelMetrics",
    "accuracy",
    "benign_error_count",
    "benign_error_rate",
    "compute_metrics",
    "confusion_matrix",
    "dangerous_error_count",
    "dangerous_error_rate",
    "error_kinds",
    "format_rate",
    "per_class_scores",
]
