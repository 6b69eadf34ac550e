"""Checkpoints whose predictions are known in advance, for the Compare page and browser tests.

Random-weight backbones whose head bias is pushed towards one class (``ALWAYS``): MobileNetV3-Large
always says Boletus (edible), EfficientNet-B0 always says Amanita. Moved here from
test_compare_page.py so that no test module imports another.
"""

from __future__ import annotations

from pathlib import Path

import torch
from factories import CLASSES

from mushcam.models import build_model

TWO = ("efficientnet_b0", "mobilenet_v3_large")
ALWAYS = {"efficientnet_b0": ("Amanita", "classifier.1.bias"), "mobilenet_v3_large": ("Boletus", "classifier.3.bias")}
NAMES = [name for name, _ in CLASSES]


def write_biased_checkpoint(path: Path, backbone: str) -> None:
    """Random weights, but the head's bias makes one class win whatever the image."""
    torch.manual_seed(0)
    state = build_model(backbone, len(CLASSES)).state_dict()
    winner, key = ALWAYS[backbone]
    state[key] = torch.zeros(len(CLASSES))
    state[key][NAMES.index(winner)] = 50.0
    torch.save(state, path)
