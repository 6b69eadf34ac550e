"""Pointing game: Grad-CAM of a trained model points at the object that decides the label.

The task is built here: a small red or green square (the class) at a random position on a
cluttered background of blue and grey squares and noise. A small CNN trained for a few
seconds must put its Grad-CAM peak inside the object on >= 90% of held-out images; the same
network re-initialised at random must not.
"""

from __future__ import annotations

import numpy as np
import torch
from scenes import OBJECT, SIZE, make_scenes, small_cnn, trained_small_cnn
from torch import nn

from mushcam.cam import grad_cam
from mushcam.render import upsample_cam

TOLERANCE = 2  # pixels around the object that still count as a hit


def pointing_rate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, corners: list[tuple[int, int]]
) -> float:
    cams = grad_cam(model, images, "0", class_idx=labels).cams
    hits = 0
    for cam, (x, y) in zip(cams, corners, strict=True):
        heat = upsample_cam(cam, (SIZE, SIZE))
        py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hits += (x - TOLERANCE <= px < x + OBJECT + TOLERANCE) and (y - TOLERANCE <= py < y + OBJECT + TOLERANCE)
    return hits / len(corners)


def test_trained_model_points_at_the_object_and_a_random_one_does_not():
    test_x, test_y, test_corners = make_scenes(120, seed=1)
    model = trained_small_cnn()
    with torch.inference_mode():
        accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    assert accuracy >= 0.95, f"the toy model did not learn the task (accuracy {accuracy:.2f})"

    trained = pointing_rate(model, test_x, test_y, test_corners)
    assert trained >= 0.90, f"trained model's Grad-CAM hit the object on only {trained:.0%}"

    random_rates = [pointing_rate(small_cnn(seed=s).eval(), test_x, test_y, test_corners) for s in (11, 12, 13)]
    print(f"pointing game: trained {trained:.1%}, random {[float(r) for r in random_rates]}, accuracy {accuracy:.1%}")
    assert max(random_rates) < 0.5, f"random networks hit the object too often: {random_rates}"
