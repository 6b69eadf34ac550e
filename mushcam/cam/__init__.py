"""The CAM engine: one capture path (:mod:`mushcam.cam.core`), a registry of methods
(:mod:`mushcam.cam.registry`) and :func:`cam`, which runs any of them.

The methods live by kind: :mod:`mushcam.cam.gradient` (Grad-CAM, Grad-CAM++, XGrad-CAM,
HiResCAM, LayerCAM), :mod:`mushcam.cam.activation` (Eigen-CAM), :mod:`mushcam.cam.ablation`
and :mod:`mushcam.cam.score` (the perturbation methods Ablation-CAM and Score-CAM);
:mod:`mushcam.cam.cost` says how long a method will take before it starts.
"""

from mushcam.cam.core import (
    CamResult,
    Capture,
    GradCAMError,
    GradCAMResult,
    LayerRecorder,
    MapRequest,
    capture,
    eval_mode,
    layer_names,
    layer_recorder,
    predicted_classes,
    prepare_inputs,
    recorded_forward,
    weighted_sum,
)
from mushcam.cam.cost import CostEstimate, LayerProbe, estimate_cost, probe_layer
from mushcam.cam.engine import cam, grad_cam
from mushcam.cam.registry import (
    COSTS,
    DEFAULT_METHOD,
    METHOD_LABELS,
    METHODS,
    Column,
    Method,
    UnknownMethodError,
    check_method,
    get_method,
    method_help,
    method_label,
    method_names,
    register,
    registered,
    unregister,
)

__all__ = [
    "COSTS",
    "DEFAULT_METHOD",
    "METHODS",
    "METHOD_LABELS",
    "CamResult",
    "Capture",
    "Column",
    "CostEstimate",
    "GradCAMError",
    "GradCAMResult",
    "LayerProbe",
    "LayerRecorder",
    "MapRequest",
    "Method",
    "UnknownMethodError",
    "cam",
    "capture",
    "check_method",
    "estimate_cost",
    "eval_mode",
    "get_method",
    "grad_cam",
    "layer_names",
    "layer_recorder",
    "method_help",
    "method_label",
    "method_names",
    "predicted_classes",
    "probe_layer",
    "prepare_inputs",
    "recorded_forward",
    "register",
    "registered",
    "unregister",
    "weighted_sum",
]
