"""Long methods report progress after every batch, stop when the caller says so, and say what they will cost."""

from __future__ import annotations

import pytest
import torch
import torchvision

from mushcam.cam import cam, estimate_cost, probe_layer
from mushcam.cam.cost import LONG_PASSES, LayerProbe


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4).eval()


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_progress_counts_channels_over_the_batch(model, method):
    seen: list[tuple[int, int]] = []
    cam(model, torch.randn(2, 3, 64, 64), "layer4", method=method, batch_size=200,
        progress=lambda d, t: seen.append((d, t)))
    assert seen == [(200, 1024), (400, 1024), (512, 1024), (712, 1024), (912, 1024), (1024, 1024)]


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_raising_from_progress_stops_and_leaves_no_trace(model, method):
    model.train()
    calls = []

    def stop_after_two(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        cam(model, torch.randn(1, 3, 64, 64), "layer4", method=method, batch_size=64, progress=stop_after_two)
    assert calls == [64, 128]  # stopped at once: no third batch
    assert all(not m._forward_hooks for m in model.modules())
    assert all(m.training for m in model.modules())  # training mode restored module by module
    model.eval()


def test_estimates_multiply_the_registry_s_passes_by_the_measured_forward(model):
    probe = probe_layer(model, torch.zeros(1, 3, 64, 64), "layer4")
    assert probe.channels == 512 and probe.forward_seconds > 0
    fake = LayerProbe(channels=2048, forward_seconds=0.032)  # ResNet-50 layer4 at 224 px on this CPU
    score = estimate_cost("scorecam", fake)
    assert score.passes == 2049 and score.seconds == pytest.approx(2049 * 0.032) and score.long
    ablation = estimate_cost("ablationcam", fake)
    assert ablation.passes == 1 + 2048 / 16 and ablation.long
    grad = estimate_cost("gradcam", fake)
    assert grad.passes == 1 and not grad.long and grad.passes <= LONG_PASSES
