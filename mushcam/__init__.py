"""MushCAM: Grad-CAM explanations for mushroom-genus classifiers (no UI code here).

The public surface, loaded lazily (PEP 562) so that ``import mushcam`` imports neither torch
nor anything else heavy; the first use of a name imports the module that defines it::

    import mushcam
    manifest = mushcam.load_manifest("checkpoints")
    model = mushcam.load_model(...)
    explanation = mushcam.explain_image(model, image, manifest.input, layer)   # one image
    result = mushcam.compute_cam(model, inputs, layer, method="gradcampp")    # a batch, any method

``mushcam.cam`` is the engine package (:mod:`mushcam.cam`: capture, registry, methods); its
entry point is ``mushcam.cam.cam``, also exported here as ``compute_cam``. The older homes
``mushcam.methods`` and ``mushcam.gradcam`` still import.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    # the CAM engine
    "compute_cam": "mushcam.cam",
    "check_method": "mushcam.cam",
    "get_method": "mushcam.cam",
    "register": "mushcam.cam",
    "Method": "mushcam.cam",
    "Column": "mushcam.cam",
    "DEFAULT_METHOD": "mushcam.cam",
    "METHODS": "mushcam.cam",
    "METHOD_LABELS": "mushcam.cam",
    "grad_cam": "mushcam.cam",
    "CamResult": "mushcam.cam",
    "GradCAMResult": "mushcam.cam",
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


_RENAMED: dict[str, str] = {"compute_cam": "cam"}  # exported name -> its name in the defining module


def __getattr__(name: str) -> Any:
    """``mushcam.NAME`` for a name of :data:`__all__`: imported from its module on first use.

    ``mushcam.cam`` itself is the engine subpackage, found by the import system, not here.
    """
    module = _LAZY.get(name)
    if module is None:
        if name == "cam":
            return importlib.import_module("mushcam.cam")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), _RENAMED.get(name, name))


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "cam", *_LAZY]
