"""Non-finite numbers from a model are an error, never a silent ``nan%``.

A network with a NaN or infinite weight (a damaged checkpoint, an overflowing half-precision
export) returns NaN logits; softmax, argmax and JSON then go wrong quietly (``Amanita
(nan%)``, a ``prediction.json`` that is not JSON, a database constraint failing at the end
of a long run). The engine and the evaluation check what comes back and raise
:class:`NonFiniteOutputError`; whoever knows the model's name wraps the call in
:func:`naming_model` so that the message says which model it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mushcam.exceptions import MushcamError

_UNNAMED = "the model"


class NonFiniteOutputError(MushcamError):
    """A model returned NaN or infinite numbers (logits, probabilities or maps)."""

    def __init__(self, what: str, model: str | None = None) -> None:
        self.what = what
        self.model = model
        super().__init__(
            f"{model or _UNNAMED} returned non-finite {what} (NaN or infinity): its weights are probably "
            "damaged (NaN/Inf in the checkpoint, or an overflowing half-precision export); "
            "re-export or retrain it. Nothing was written for it."
        )


def require_finite(values: torch.Tensor, what: str, model: str | None = None) -> None:
    """Raise :class:`NonFiniteOutputError` unless every element of ``values`` is finite."""
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise NonFiniteOutputError(what, model)


@contextlib.contextmanager
def naming_model(name: str) -> Iterator[None]:
    """Inside this block, a :class:`NonFiniteOutputError` without a model name gets ``name``."""
    try:
        yield
    except NonFiniteOutputError as exc:
        if exc.model is not None:
            raise
        raise NonFiniteOutputError(exc.what, name) from None


__all__ = ["NonFiniteOutputError", "naming_model", "require_finite"]
