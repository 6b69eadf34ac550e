"""The CAM engine: one capture path (:mod:`mushcam.cam.core`), a registry of methods
(:mod:`mushcam.cam.registry`) and :func:`cam`, which runs any of them.

The methods live by kind: :mod:`mushcam.cam.gradient` (Grad-CAM, Grad-CAM++, XGrad-CAM,
HiResCAM, LayerCAM) and :mod:`mushcam.cam.gradient_more` (CAM, EigenGrad-CAM, element-wise
Grad-CAM, ShapleyCAM, RefineCAM, Smooth Grad-CAM++), :mod:`mushcam.cam.activation` (Eigen-CAM,
KPCA-CAM, FEM), :mod:`mushcam.cam.factorization` (Deep Feature Factorization),
:mod:`mushcam.cam.fullgrad` (FullGrad: the one method with a whole-network backward),
:mod:`mushcam.cam.legrad` (LeGrad, for Vision Transformers), and the perturbation methods
:mod:`mushcam.cam.ablation`, :mod:`mushcam.cam.score` and :mod:`mushcam.cam.score_variants`
(Ablation-CAM, Score-CAM, SS-CAM, IS-CAM); :mod:`mushcam.cam.cost` says how long a method will
take before it starts.
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
    contrast_labels,
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
    "contrast_labels",
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
