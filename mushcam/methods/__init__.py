"""Moved to :mod:`mushcam.cam` (the methods' registry is :mod:`mushcam.cam.registry`).

This package re-exports the old names so that ``from mushcam.methods import cam, METHODS``
and the old sub-modules (``mushcam.methods.core``, ``.gradient``, ``.eigen``, ``.ablation``,
``.score``) keep working. ``METHODS``, ``METHOD_LABELS`` and ``COSTS`` are live read-only
views of the registry.
"""

from mushcam.cam.core import GradCAMResult, capture, eval_mode, layer_names
from mushcam.cam.engine import cam, grad_cam
from mushcam.cam.registry import (
    COSTS,
    DEFAULT_METHOD,
    METHOD_LABELS,
    METHODS,
    UnknownMethodError,
    check_method,
)

__all__ = [
    "COSTS",
    "DEFAULT_METHOD",
    "METHODS",
    "METHOD_LABELS",
    "GradCAMResult",
    "UnknownMethodError",
    "cam",
    "capture",
    "check_method",
    "eval_mode",
    "grad_cam",
    "layer_names",
]
