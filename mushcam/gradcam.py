"""Moved to :mod:`mushcam.cam` (the engine: :mod:`mushcam.cam.core`, :func:`mushcam.cam.grad_cam`).

This module re-exports the old names so that ``from mushcam.gradcam import grad_cam`` and
the rest keep working.
"""

from mushcam.cam.core import (
    CamResult,
    GradCAMError,
    GradCAMResult,
    LayerRecorder,
    eval_mode,
    layer_names,
    layer_recorder,
    predicted_classes,
    prepare_inputs,
    recorded_forward,
)
from mushcam.cam.engine import grad_cam

__all__ = [
    "CamResult",
    "GradCAMError",
    "GradCAMResult",
    "LayerRecorder",
    "eval_mode",
    "grad_cam",
    "layer_names",
    "layer_recorder",
    "predicted_classes",
    "prepare_inputs",
    "recorded_forward",
]
