"""Every registered CAM method through the Trust page's numbers: faithfulness and the sanity check.

A tiny CNN with a global-average-pool + linear head (so CAM applies) at 32 px, and a tiny ViT for
LeGrad (the one method that needs one). The numbers must be finite and in their ranges: AUCs and
Average Drop in [0, 1], ROAD in [-0.5, 0.5], Spearman and SSIM in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cam_peers import TinyCNN, tiny_vit

from mushcam.cam import METHODS, cam
from mushcam.trust.faithfulness import FaithfulnessSettings, evaluate_map
from mushcam.trust.sanity import method_explainer, sanity_check

SETTINGS = FaithfulnessSettings(steps=4, road_percentages=(50,), batch_size=16)


def model_and_layer(method: str) -> tuple[torch.nn.Module, str]:
    if method == "legrad":
        return tiny_vit(), "encoder.layers.encoder_layer_1"
    return TinyCNN(), "features.5"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_finite_faithfulness_and_sanity_numbers(method):
    model, layer = model_and_layer(method)
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = cam(model, image.unsqueeze(0), layer, 1, method=method, batch_size=16)
    assert torch.isfinite(result.cams).all() and float(result.cams.min()) >= 0
    scores = evaluate_map(model, image, result.cams[0], 1, SETTINGS)
    for kind in ("map", "random", "inverted"):
        assert 0.0 <= scores.deletion_auc(kind) <= 1.0 and 0.0 <= scores.insertion_auc(kind) <= 1.0
    assert all(0.0 <= drop <= 1.0 for drop in scores.average_drop.values())
    assert np.isfinite(scores.road) and -0.5 <= scores.road <= 0.5
    sanity = sanity_check(model, image.unsqueeze(0), method_explainer(layer, method), class_idx=1)
    assert len(sanity.blocks) >= 1 and sanity.spearman.shape == (1, len(sanity.blocks))
    assert np.all(np.abs(sanity.mean_spearman) <= 1.0)
    ssim = sanity.ssim[np.isfinite(sanity.ssim)]
    assert np.all(np.abs(ssim) <= 1.0 + 1e-9)
