"""MushCAM: Grad-CAM explanations for mushroom-genus classifiers (no UI code here).

The public surface, loaded lazily (PEP 562) so that ``import mushcam`` imports neither torch
nor anything else heavy; the first use of a name imports the module that defines it::

    import mushcam
    manifest = mushcam.load_manifest("checkpoints")
    model = mushcam.load_model(...)
    explanation = mushcam.explain_image(model, image, manifest.input, layer)   # one image
    result = mushcam.cam(model, inputs, layer, method="gradcampp")            # a batch, any method

The CAM engine names (``cam``, ``grad_cam``, ``METHODS``, ...) point at :mod:`mushcam.methods`
and :mod:`mushcam.gradcam`, their home today.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    # the CAM engine
    "cam": "mushcam.methods",
    "check_method": "mushcam.methods",
    "DEFAULT_METHOD": "mushcam.methods",
    "METHODS": "mushcam.methods",
    "METHOD_LABELS": "mushcam.methods",
    "grad_cam": "mushcam.gradcam",
    "GradCAMResult": "mushcam.gradcam",
    # one image, end to end
    "explain_image": "mushcam.explain",
    "render_explanation": "mushcam.explain",
    "Explanation": "mushcam.explain",
    "load_image": "mushcam.data",
    "preprocess": "mushcam.data",
    # models and their manifest
    "load_manifest": "mushcam.manifest",
    "Manifest": "mushcam.manifest",
    "load_model": "mushcam.models",
    # the error family
    "MushcamError": "mushcam.exceptions",
    "UsageError": "mushcam.exceptions",
}


def __getattr__(name: str) -> Any:
    """``mushcam.NAME`` for a name of :data:`__all__`: imported from its module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
