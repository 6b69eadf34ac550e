"""How long a map will take, said before it starts: the layer's channels times the measured forward.

Methods differ by orders of magnitude: Grad-CAM costs about one forward pass, Score-CAM one
forward pass per channel at the layer (2,048 for ResNet-50's ``layer4``: minutes on a CPU).
The registry gives each method's ``passes(K)``; a probe measures the model's forward time on
the image's own input and reads K at the layer, so::

    seconds ~ passes(K) * forward_seconds

A method whose estimate is over :data:`LONG_SECONDS` is "long": the pages show the estimate and
start it only when the user asks, with progress and a way to stop it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from mushcam.cam.core import capture, eval_mode
from mushcam.cam.registry import get_method

LONG_SECONDS = 2.0  # over this, a map is started by the user only, with progress and Stop
LONG_PASSES = 8.0  # and so is any method costing more than this many forward passes


@dataclass(frozen=True)
class LayerProbe:
    """What one image costs through one model: K channels at the layer, seconds per forward pass."""

    channels: int
    forward_seconds: float


@dataclass(frozen=True)
class CostEstimate:
    """What one method would cost on one image."""

    method: str
    label: str
    passes: float
    seconds: float

    @property
    def long(self) -> bool:
        """True when the page must not start it without the user's say-so."""
        return self.seconds > LONG_SECONDS or self.passes > LONG_PASSES


def probe_layer(model: nn.Module, inputs: torch.Tensor, layer: str, repeats: int = 2) -> LayerProbe:
    """K at ``layer`` and the fastest of ``repeats`` timed forward passes on ``inputs`` (1 x 3 x H x W)."""
    best = float("inf")
    channels = 0
    with eval_mode(model):
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            captured = capture(model, inputs, [layer], None, gradients=False)
            best = min(best, time.perf_counter() - start)
            channels = int(captured.activations[layer].shape[1])
    return LayerProbe(channels, best)


def estimate_cost(method: str, probe: LayerProbe) -> CostEstimate:
    """``passes(K)`` of the registered method and the seconds they would take at the probed speed."""
    entry = get_method(method)
    passes = entry.estimated_passes(probe.channels)
    return CostEstimate(method, entry.label, passes, passes * probe.forward_seconds)
