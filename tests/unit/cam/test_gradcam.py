"""The Grad-CAM engine: equal to the peers, cheap, and leaving no trace on the model."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch
from torch import nn

from mushcam.cam import GradCAMError, eval_mode, grad_cam
from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model, get_layer


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    theirs = torch.as_tensor(theirs, dtype=torch.float64)
    return float((ours.double() - theirs).abs().max() / theirs.abs().max())


@pytest.fixture(scope="module")
def backbones() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name, 5).eval() for name in BACKBONES}


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 96, 96)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_equals_pytorch_grad_cam(backbones, batch, backbone):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = backbones[backbone]
    layer = get_layer(model, DEFAULT_LAYERS[backbone])
    ours = grad_cam(model, batch, DEFAULT_LAYERS[backbone], class_idx=[1, 3])
    assert ours.cams.shape == (2, 3, 3)
    assert float(ours.cams.max()) > 0  # a real map, not a trivially equal zero

    # Their unnormalised map: the peer's own activations, gradients and weighting, then ReLU
    # (its __call__ would min-max normalise and resize, which we compare separately).
    cam = GradCAM(model=model, target_layers=[layer])
    try:
        targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(3)]
        outputs = cam.activations_and_grads(batch)
        model.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
        activations = cam.activations_and_grads.activations[0].cpu().numpy()
        gradients = cam.activations_and_grads.gradients[0].cpu().numpy()
        theirs = np.maximum(cam.get_cam_image(batch, layer, targets, activations, gradients, False), 0)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    assert relative_error(ours.cams, theirs) < 1e-5


@pytest.mark.parametrize("backbone", BACKBONES)
def test_equals_captum_layer_grad_cam(backbones, batch, backbone):
    from captum.attr import LayerGradCam

    model = backbones[backbone]
    ours = grad_cam(model, batch, DEFAULT_LAYERS[backbone])
    predicted = torch.softmax(model(batch), 1).argmax(1)
    assert torch.equal(ours.class_idx, predicted)
    theirs = LayerGradCam(model, get_layer(model, DEFAULT_LAYERS[backbone])).attribute(
        batch, target=predicted, relu_attributions=True
    )
    assert float(ours.cams.max()) > 0
    assert relative_error(ours.cams, theirs[:, 0].detach()) < 1e-5


def test_logits_and_probabilities_match_plain_forward(backbones, batch):
    model = backbones["resnet50"]
    with torch.inference_mode():
        expected = model(batch)
    result = grad_cam(model, batch, "layer4")
    torch.testing.assert_close(result.logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(2))
    assert torch.equal(result.predicted, torch.softmax(expected, 1).argmax(1))


def test_class_choice_none_int_and_per_image(backbones, batch):
    model = backbones["mobilenet_v3_large"]
    predicted = grad_cam(model, batch, "features.16")
    assert torch.equal(predicted.class_idx, predicted.probabilities.argmax(1))
    all_two = grad_cam(model, batch, "features.16", class_idx=2)
    assert all_two.class_idx.tolist() == [2, 2]
    mixed = grad_cam(model, batch, "features.16", class_idx=[2, 4])
    assert mixed.class_idx.tolist() == [2, 4]
    # A batch is the same as its images one by one (eval mode: images are independent).
    assert relative_error(mixed.cams[0], grad_cam(model, batch[:1], "features.16", 2).cams[0]) < 1e-5
    assert relative_error(mixed.cams[1], grad_cam(model, batch[1:], "features.16", 4).cams[0]) < 1e-5
    # Different classes give different maps.
    assert (
        relative_error(grad_cam(model, batch, "features.16", 0).cams, grad_cam(model, batch, "features.16", 1).cams)
        > 0.1
    )


def test_several_layers_in_one_call_equal_separate_calls(backbones, batch):
    model = backbones["resnet50"]
    both = grad_cam(model, batch, ["layer3", "layer4"], class_idx=1)
    assert both.cams_by_layer["layer3"].shape == (2, 6, 6)
    assert both.cams_by_layer["layer4"].shape == (2, 3, 3)
    for layer in ("layer3", "layer4"):
        alone = grad_cam(model, batch, layer, class_idx=1).cams
        assert relative_error(both.cams_by_layer[layer], alone) < 1e-5
    torch.testing.assert_close(both.cams, both.cams_by_layer["layer3"])


def test_inner_layer_followed_by_in_place_ops(backbones, batch):
    """bn3's output is modified in place (out += identity) right after the hook."""
    from captum.attr import LayerGradCam

    model = backbones["resnet50"]
    ours = grad_cam(model, batch, "layer4.2.bn3", class_idx=0)
    theirs = LayerGradCam(model, get_layer(model, "layer4.2.bn3")).attribute(batch, target=0, relu_attributions=True)
    assert relative_error(ours.cams, theirs[:, 0].detach()) < 1e-5


def test_leaves_no_trace_on_the_model(batch):
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_large", 5)
    model.train()
    model.features[3].eval()  # a mixed state must come back exactly
    model.classifier[0].weight.requires_grad_(False)
    training_before = [m.training for m in model.modules()]
    requires_before = [p.requires_grad for p in model.parameters()]
    state_before = {k: v.clone() for k, v in model.state_dict().items()}

    result = grad_cam(model, batch, "features.16")

    assert [m.training for m in model.modules()] == training_before
    assert [p.requires_grad for p in model.parameters()] == requires_before
    assert all(p.grad is None for p in model.parameters())
    assert hook_count(model) == 0
    for key, value in model.state_dict().items():  # eval mode: BN running stats untouched
        assert torch.equal(value, state_before[key]), key
    assert not result.cams.requires_grad and not result.logits.requires_grad
    assert torch.is_grad_enabled()


def test_eval_mode_restores_on_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    model.train()
    model[1].eval()
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, False, True]


class Unreached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.spare = nn.Conv2d(4, 4, 1)  # never called
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


class Detached(Unreached):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).detach().mean((2, 3)))


def test_unreached_layer_is_explained_in_plain_words_and_hooks_removed():
    model = Unreached()
    with pytest.raises(GradCAMError, match="never reached in the forward pass"):
        grad_cam(model, torch.randn(1, 3, 16, 16), "spare")
    assert hook_count(model) == 0


def test_no_gradient_is_explained_in_plain_words():
    model = Detached()
    with pytest.raises(GradCAMError, match="no gradient flows"):
        grad_cam(model, torch.randn(1, 3, 16, 16), "conv")
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_are_clear_errors_and_leave_no_hooks(backbones, batch):
    model = backbones["mobilenet_v3_large"]
    with pytest.raises(ValueError, match="valid names under 'features': features.0, features.1,"):
        grad_cam(model, batch, "features.99")
    with pytest.raises(ValueError, match="valid names at the top level: features, avgpool, classifier"):
        grad_cam(model, batch, "layer4")
    with pytest.raises(GradCAMError, match="out of range: the model has 5 classes"):
        grad_cam(model, batch, "features.16", class_idx=7)
    with pytest.raises(GradCAMError, match="3 entries for a batch of 2"):
        grad_cam(model, batch, "features.16", class_idx=[0, 1, 2])
    with pytest.raises(GradCAMError, match="4-D feature map"):
        grad_cam(model, batch, "classifier.0")
    assert hook_count(model) == 0


def test_exception_inside_forward_removes_hooks():
    class Exploding(Unreached):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise RuntimeError("forward failed")

    model = Exploding()
    with pytest.raises(RuntimeError, match="forward failed"):
        grad_cam(model, torch.randn(1, 3, 16, 16), "conv")
    assert hook_count(model) == 0
    assert torch.is_grad_enabled()


def test_concurrent_calls_on_a_shared_model_do_not_mix(backbones):
    """A Streamlit server shares one model between sessions (threads)."""
    model = backbones["mobilenet_v3_large"]
    torch.manual_seed(5)
    images = [torch.randn(1, 3, 64, 64) for _ in range(4)]
    expected = [grad_cam(model, x, "features.16", class_idx=i % 5).cams for i, x in enumerate(images)]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                results[i] = grad_cam(model, images[i], "features.16", class_idx=i % 5).cams
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        assert relative_error(results[i], expected[i]) < 1e-6
    assert hook_count(model) == 0


def vm_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_500_calls_leave_no_hooks_no_grad_and_flat_memory():
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_large", 5).eval()
    x = torch.randn(1, 3, 64, 64)
    for _ in range(30):  # warm-up: allocator pools settle
        grad_cam(model, x, "features.16")
    gc.collect()
    before = vm_rss_mb()
    for i in range(500):
        grad_cam(model, x, "features.16", class_idx=i % 5)
    gc.collect()
    growth = vm_rss_mb() - before
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert growth < 20, f"memory grew by {growth:.1f} MB over 500 calls"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (CI runs on CPU)")
def test_cuda_matches_cpu(backbones, batch):
    model = backbones["resnet50"]
    cpu = grad_cam(model, batch, "layer4", class_idx=1)
    gpu_model = build_model("resnet50", 5)
    gpu_model.load_state_dict(model.state_dict())
    gpu_model = gpu_model.cuda().eval()
    gpu = grad_cam(gpu_model, batch.cuda(), "layer4", class_idx=1)
    assert gpu.cams.is_cuda
    assert relative_error(gpu.cams.cpu(), cpu.cams) < 1e-3  # cuDNN's conv sums in another order
