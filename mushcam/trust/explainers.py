"""Moved: the trust metrics call :func:`mushcam.methods.cam` directly, and ``check_methods`` is in
:mod:`mushcam.trust.run`. This module is kept so that old imports keep working
(``pages/4_Trust.py`` and ``benchmarks/trust_memory_repeat.py`` use it); nothing in the library imports it.
"""

from __future__ import annotations

from mushcam.methods import DEFAULT_METHOD, METHODS, UnknownMethodError
from mushcam.methods import cam as explain_maps  # same arguments: model, inputs, layer, class_idx, method
from mushcam.trust.run import check_methods


def available_methods() -> tuple[str, ...]:
    """The CAM method names (:data:`mushcam.methods.METHODS`), default first."""
    return tuple(METHODS)


__all__ = ["DEFAULT_METHOD", "UnknownMethodError", "available_methods", "check_methods", "explain_maps"]
