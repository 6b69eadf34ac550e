"""Sanity check (cascading randomisation): Grad-CAM passes, an edge detector posing as a method fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scenes import make_scenes, small_cnn, trained_small_cnn
from torch import nn
from torch.nn import functional as F

from mushcam.trust.sanity import (
    FLAG_THRESHOLD,
    SanityError,
    method_explainer,
    randomisation_blocks,
    sanity_check,
    ssim,
)


def edge_detector(model: nn.Module, inputs: torch.Tensor, class_idx: torch.Tensor) -> torch.Tensor:
    """Not a method: the image's gradient magnitude (Sobel), whatever the model."""
    grey = inputs.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = F.conv2d(grey, kx, padding=1)
    gy = F.conv2d(grey, kx.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt().squeeze(1)


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return trained_small_cnn()


def test_grad_cam_decorrelates_and_the_edge_detector_does_not(trained: nn.Module) -> None:
    images, labels, _ = make_scenes(16, seed=5)
    weights_before = {k: v.clone() for k, v in trained.state_dict().items()}

    gradcam = sanity_check(trained, images, method_explainer("0", "gradcam"), class_idx=labels)
    edges = sanity_check(trained, images, edge_detector, class_idx=labels)

    assert gradcam.blocks == ("3", "0.6", "0.4", "0.2", "0.0")  # from the logits down
    # Once the layer above the target ("3", the head) is random, Grad-CAM's maps decorrelate.
    assert gradcam.mean_spearman[0] < 0.3, gradcam.mean_spearman
    # Deeper steps may correlate again: random convolutions respond to the image's own
    # structure (Adebayo et al. saw the same); the flag reads the whole cascade's mean.
    assert not gradcam.flagged and gradcam.score < 0.4, gradcam.mean_spearman
    np.testing.assert_allclose(edges.mean_spearman, 1.0)
    np.testing.assert_allclose(edges.mean_ssim, 1.0)
    assert edges.flagged and edges.score >= FLAG_THRESHOLD
    # The user's model is never touched.
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(value, weights_before[key], rtol=0, atol=0)


def test_the_check_is_seeded_and_leaves_the_global_random_state_alone(trained: nn.Module) -> None:
    images, labels, _ = make_scenes(4, seed=6)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = sanity_check(trained, images, method_explainer("0", "gradcam"), class_idx=labels, seed=3)
    assert torch.equal(torch.rand(1), expected_next)
    second = sanity_check(trained, images, method_explainer("0", "gradcam"), class_idx=labels, seed=3)
    np.testing.assert_array_equal(np.nan_to_num(first.spearman), np.nan_to_num(second.spearman))


def test_blocks_split_sequential_children_one_level() -> None:
    assert randomisation_blocks(small_cnn(0)) == ["0.0", "0.2", "0.4", "0.6", "3"]
    from torchvision.models import resnet18

    blocks = randomisation_blocks(resnet18(num_classes=3))
    assert blocks[:2] == ["conv1", "bn1"] and blocks[-3:] == ["layer4.0", "layer4.1", "fc"]
    with pytest.raises(SanityError, match="no parameters"):
        randomisation_blocks(nn.Sequential(nn.ReLU()))
    with pytest.raises(SanityError, match="no block named"):
        sanity_check(small_cnn(0), torch.zeros(1, 3, 48, 48), edge_detector, class_idx=0, blocks=["nope"])


def test_ssim_equals_scikit_image() -> None:
    skimage = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((40, 33))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(skimage.structural_similarity(a, b, data_range=1.0), abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
