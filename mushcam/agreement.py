"""Moved to :mod:`mushcam.metrics.agreement` (map agreement and focus); the names are re-exported here."""

from mushcam.metrics.agreement import (
    HALF,
    TOP_FRACTION,
    Focus,
    PairAgreement,
    Summary,
    average_ranks,
    focus,
    half_mass_area,
    normalised_entropy,
    pairwise_agreement,
    spearman,
    summarise,
    top_region,
    top_region_iou,
)

__all__ = [
    "HALF",
    "TOP_FRACTION",
    "Focus",
    "PairAgreement",
    "Summary",
    "average_ranks",
    "focus",
    "half_mass_area",
    "normalised_entropy",
    "pairwise_agreement",
    "spearman",
    "summarise",
    "top_region",
    "top_region_iou",
]
