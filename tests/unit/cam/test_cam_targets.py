"""Contrastive targets: y_A - y_B on any gradient method, and Finer-CAM against pytorch-grad-cam's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision

from mushcam.cam import cam, capture
from mushcam.cam.targets import TargetError


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=6).eval()
    with torch.no_grad():
        net.fc.weight.mul_(50)  # a random head's gradients are tiny; scale them (the map's shape is unchanged)
    return net


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def pre_relu_grad_cam(model: torch.nn.Module, batch: torch.Tensor, cls: int) -> torch.Tensor:
    captured = capture(model, batch, ["layer4"], cls)
    weights = captured.gradients["layer4"].mean(dim=(2, 3), keepdim=True)
    return (weights * captured.activations["layer4"]).sum(dim=1)


def test_versus_map_is_the_difference_of_the_two_class_maps_for_a_linear_head(model, batch):
    contrast = cam(model, batch, "layer4", 1, versus=4).cams
    expected = torch.relu(pre_relu_grad_cam(model, batch, 1) - pre_relu_grad_cam(model, batch, 4))
    assert expected.abs().max() > 1.0
    torch.testing.assert_close(contrast, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    assert not torch.allclose(contrast, cam(model, batch, "layer4", 1).cams)  # it is not the plain map


def test_versus_works_with_every_gradient_method_and_is_refused_elsewhere(model, batch):
    for method in ("gradcampp", "xgradcam", "hirescam", "layercam"):
        assert cam(model, batch, "layer4", 2, method=method, versus=0).cams.shape == (3, 2, 2)
    for method in ("eigencam", "scorecam", "finercam"):
        with pytest.raises(TargetError, match="cannot make a contrastive map"):
            cam(model, batch, "layer4", 2, method=method, versus=0)
    with pytest.raises(TargetError, match="with itself"):
        cam(model, batch, "layer4", 2, versus=2)
    with pytest.raises(TargetError, match="out of range"):
        cam(model, batch, "layer4", 2, versus=9)


def test_finer_cam_equals_pytorch_grad_cam_s(model, batch):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    # Finer-CAM subtracts near-equal logits, so its map is small and float32 rounding is a large
    # part of it (a 1e-4 relative gap on CI); compare in float64, where the two must agree exactly.
    model = copy.deepcopy(model).double()
    batch = batch.double()

    ours = cam(model, batch, "layer4", None, method="finercam").cams
    # pytorch-grad-cam's FinerCAM: targets from its own rule, then its GradCAM's raw map (before scaling).
    with torch.no_grad():
        output = model(batch).numpy()
    order = np.argsort(np.abs(output - output.max(axis=-1)[:, None]), axis=-1)
    targets = [FinerWeightedTarget(int(order[i, 0]), [int(order[i, k]) for k in (1, 2, 3)], 1.0)
               for i in range(len(batch))]
    peer = GradCAM(model=model, target_layers=[model.layer4])
    try:
        outputs = peer.activations_and_grads(batch)
        model.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
        activations = peer.activations_and_grads.activations[0].numpy()
        gradients = peer.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(peer.get_cam_image(batch, model.layer4, targets, activations, gradients, False), 0)
    finally:
        peer.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    assert raw.max() > 0
    np.testing.assert_allclose(ours.numpy(), raw, rtol=1e-5, atol=1e-5 * raw.max())
    assert not torch.allclose(ours, cam(model, batch, "layer4", None).cams)  # not plain Grad-CAM
