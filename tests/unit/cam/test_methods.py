"""CAM methods (mushcam.methods): equal to pytorch-grad-cam / torchcam and to the papers.

The networks are the three presets, randomly initialised and then *calibrated*: their
batch-norm statistics are set from a few made images (one forward pass in training mode,
no parameter changes), so activations have a trained network's scale instead of 1e-13,
and the last linear layer is scaled by 1e5, so gradients are far above the peers' eps
terms (1e-6 in pytorch-grad-cam's Grad-CAM++, 1e-7 in its XGrad-CAM). Without this the
peers' eps, not the method, decides their maps (NOTES.md). Comparisons are before any
normalisation: max |ours - theirs| / max |theirs| < 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cam_peers import grad_cam_lib_raw, torchcam_raw
from factories import make_image
from torch import nn

from mushcam.cam import METHODS, UnknownMethodError, cam, capture, grad_cam
from mushcam.cam.activation import eigen_projection
from mushcam.data import load_image, preprocess, scan_image_folder
from mushcam.exceptions import MushcamError
from mushcam.manifest import InputSpec
from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model, get_layer

GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam")
HEAD_SCALE = 1e5
U32 = 2.0**-24  # float32 unit round-off


def relative_error(ours: torch.Tensor, theirs) -> float:
    theirs = torch.as_tensor(np.asarray(theirs), dtype=torch.float64)
    assert float(theirs.abs().max()) > 0, "a zero reference map would make the comparison vacuous"
    return float((ours.double() - theirs).abs().max() / theirs.abs().max())


def calibrated(backbone: str, size: int = 96, seed: int = 0, head_scale: float = HEAD_SCALE) -> nn.Module:
    """A random preset with batch-norm statistics from made images and a scaled head."""
    torch.manual_seed(seed)
    model = build_model(backbone, 5)
    spec = InputSpec(size=size)
    images = torch.stack([preprocess(make_image(size, size, seed=s), spec) for s in range(10, 16)])
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(images)
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.mul_(head_scale)
        head.bias.mul_(head_scale)
    return model.eval()


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: calibrated(name) for name in BACKBONES}


class PlainHeads(dict):
    """Calibrated presets with their heads unscaled, built on first use.

    Score-CAM takes a softmax over logits: a head scaled by 1e5 makes it one-hot (one
    channel wins), which would hide differences; it needs no gradient, so no scaling.
    """

    def __missing__(self, backbone: str) -> nn.Module:
        self[backbone] = calibrated(backbone, head_scale=1.0)
        return self[backbone]


@pytest.fixture(scope="module")
def plain_models() -> PlainHeads:
    return PlainHeads()


@pytest.fixture(scope="module")
def made_batch() -> torch.Tensor:
    spec = InputSpec(size=96)
    return torch.stack([preprocess(make_image(96, 96, seed=s), spec) for s in (0, 1)])


@pytest.fixture
def photo_batch(real_data) -> torch.Tensor:
    """Two real photos (the first and a middle one of the shared test split) at 224 px."""
    items = scan_image_folder(real_data / "test")
    chosen = [items[0], items[len(items) // 2]]
    return torch.stack([preprocess(load_image(item.path), InputSpec(size=224)) for item in chosen])


def predicted(model: nn.Module, batch: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return model(batch).argmax(1).tolist()


# ---------------------------------------------------------------- the public entry


def test_method_names_are_the_contract():
    assert METHODS == (
        "gradcam",
        "gradcampp",
        "xgradcam",
        "hirescam",
        "layercam",
        "eigencam",
        "ablationcam",
        "scorecam",
        "finercam",
        "cam",
        "eigengradcam",
        "gradcamelementwise",
        "fullgrad",
        "kpcacam",
        "shapleycam",
        "fem",
        "refinecam",
        "smoothgradcampp",
        "sscam",
        "iscam",
        "legrad",
        "dff",
    )


def test_unknown_method_is_a_mushcam_error_listing_the_names(models, made_batch):
    with pytest.raises(UnknownMethodError) as caught:
        cam(models["resnet50"], made_batch, "layer4", method="gradcam+")
    assert isinstance(caught.value, MushcamError)
    for name in METHODS:
        assert name in str(caught.value)


def test_gradcam_is_exactly_the_engine(models, made_batch):
    model = models["efficientnet_b0"]
    ours = cam(model, made_batch, "features.7", class_idx=[1, 2])
    engine = grad_cam(model, made_batch, "features.7", class_idx=[1, 2])
    assert torch.equal(ours.cams, engine.cams)
    assert torch.equal(ours.logits, engine.logits)
    assert torch.equal(ours.class_idx, engine.class_idx)


@pytest.mark.parametrize("method", ("gradcampp", "eigencam", "ablationcam"))
def test_result_shape_class_and_logits(models, made_batch, method):
    model = models["mobilenet_v3_large"]
    result = cam(model, made_batch, "features.16", class_idx=None, method=method)
    engine = grad_cam(model, made_batch, "features.16")
    assert result.cams.shape == engine.cams.shape and result.cams.dtype == torch.float32
    assert torch.equal(result.class_idx, engine.class_idx)
    torch.testing.assert_close(result.logits, engine.logits)
    assert float(result.cams.min()) >= 0 and float(result.cams.max()) > 0
    assert set(result.cams_by_layer) == {"features.16"}


# ---------------------------------------------------------------- gradient methods


def xgrad_bound(activation: torch.Tensor, gradient: torch.Tensor, peer_eps: float = 1e-7) -> float:
    """The relative error XGrad-CAM can show between two float32 implementations.

    ``w_k = sum(A G) / sum(A)``: summing h*w float32 terms costs up to ``h*w*u`` of the
    absolute sum, and the peer adds 1e-7 to the denominator. A channel whose signed
    activations nearly cancel (``|sum A| << sum |A|``) amplifies both, so the bound on the
    map is ``sum_k dw_k |A_k|`` over the map's maximum, with
    ``dw_k = (h*w*u*(sum|AG| + |w_k| sum|A|) + eps |w_k|) / |sum A|``.
    """
    a, g = activation.double(), gradient.double()
    n = a.shape[2] * a.shape[3]
    total = a.sum((2, 3))
    safe = torch.where(total != 0, total, torch.ones_like(total))  # all-zero channels: 0 in both
    w = torch.where(total != 0, (a * g).sum((2, 3)) / safe, 0.0)
    dw = (n * U32 * ((a * g).abs().sum((2, 3)) + w.abs() * a.abs().sum((2, 3))) + peer_eps * w.abs()) / safe.abs()
    spread = (dw[:, :, None, None] * a.abs()).sum(1)
    reference = torch.relu((w[:, :, None, None] * a).sum(1))
    return float(spread.max() / reference.max())


def grad_cam_pp_bound(activation: torch.Tensor, gradient: torch.Tensor, peer_eps: float = 1e-6) -> float:
    """The relative error Grad-CAM++ can show between float32 implementations.

    ``alpha = G^2 / d`` with ``d = 2 G^2 + (sum A) G^3``: float32 rounds each term (a few
    ``u``) and the spatial sum (``h*w*u*sum|A|``), and the peer adds 1e-6 to ``d``. With
    signed activations ``2 + G sum A`` can come near 0, which amplifies all three by
    ``1 / |d|``; the map's bound is ``sum_k dw_k |A_k|`` over its maximum.
    """
    a, g = activation.double(), gradient.double()
    n = a.shape[2] * a.shape[3]
    total = a.sum((2, 3), keepdim=True)
    d = 2 * g**2 + total * g**3
    safe = torch.where(d != 0, d, torch.ones_like(d))
    alpha = torch.where(d != 0, g**2 / safe, 0.0)
    error = (4 * U32 * (2 * g**2 + (total * g**3).abs()) + n * U32 * a.abs().sum((2, 3), keepdim=True) * g.abs() ** 3
             + peer_eps) / safe.abs()
    w = (alpha * torch.relu(g)).sum((2, 3))
    dw = (error * alpha * torch.relu(g)).sum((2, 3))
    spread = (dw[:, :, None, None] * a.abs()).sum(1)
    reference = torch.relu((w[:, :, None, None] * a).sum(1))
    return float(spread.max() / reference.max())


def peer_tolerance(method: str, activation: torch.Tensor, gradient: torch.Tensor) -> float:
    """1e-5, or the stated float32 bound where a near-zero denominator makes it larger."""
    if method == "xgradcam":
        return max(1e-5, xgrad_bound(activation, gradient))
    if method == "gradcampp":
        return max(1e-5, grad_cam_pp_bound(activation, gradient))
    return 1e-5


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_methods_equal_pytorch_grad_cam_on_made_images(models, made_batch, backbone, method):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    classes = predicted(model, made_batch)
    ours = cam(model, made_batch, layer, class_idx=classes, method=method).cams
    theirs = grad_cam_lib_raw(method, model, get_layer(model, layer), made_batch, classes)
    captured = capture(model, made_batch, layer, classes)
    assert relative_error(ours, theirs) < peer_tolerance(method, captured.activations[layer], captured.gradients[layer])


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", ("gradcam", "xgradcam", "layercam"))
def test_gradient_methods_equal_torchcam(models, made_batch, backbone, method):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    classes = predicted(model, made_batch)
    ours = cam(model, made_batch, layer, class_idx=classes, method=method).cams
    theirs = torch.relu(torchcam_raw(method, model, layer, made_batch, classes))
    tolerance = 1e-5
    if method == "xgradcam":
        captured = capture(model, made_batch, layer, classes)
        tolerance = max(tolerance, xgrad_bound(captured.activations[layer], captured.gradients[layer], 1e-8))
    assert relative_error(ours, theirs) < tolerance


def test_torchcam_grad_cam_pp_departs_from_the_paper_where_docs_say(models, made_batch):
    """torchcam 0.5 divides a copy: ``alpha[mask].div_(...)`` indexes with a boolean mask,
    which copies, so its alpha stays ``G^2`` and its weights are ``sum_ij G^2 ReLU(G)``."""
    model, layer = models["resnet50"], "layer4"
    classes = predicted(model, made_batch)
    captured = capture(model, made_batch, layer, classes)
    a, g = captured.activations[layer].double(), captured.gradients[layer].double()
    torchcam_formula = torch.relu(((g**2 * torch.relu(g)).sum((2, 3))[:, :, None, None] * a).sum(1))
    theirs = torch.relu(torchcam_raw("gradcampp", model, layer, made_batch, classes))
    assert relative_error(theirs, torchcam_formula) < 1e-5
    ours = cam(model, made_batch, layer, class_idx=classes, method="gradcampp").cams
    assert relative_error(ours / ours.max(), torchcam_formula / torchcam_formula.max()) > 0.01  # not just a scale


def paper_map(method: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The papers' formulas in float64 numpy, written out position by position."""
    n, k = a.shape[:2]
    maps = np.zeros((n, a.shape[2], a.shape[3]))
    for i in range(n):
        for c in range(k):
            A, G = a[i, c], g[i, c]
            if method == "gradcam":
                maps[i] += G.mean() * A
            elif method == "gradcampp":
                den = 2 * G**2 + A.sum() * G**3
                alpha = np.divide(G**2, den, out=np.zeros_like(G), where=den != 0)
                maps[i] += (alpha * np.maximum(G, 0)).sum() * A
            elif method == "xgradcam":
                maps[i] += ((A * G).sum() / A.sum() if A.sum() != 0 else 0.0) * A
            elif method == "hirescam":
                maps[i] += G * A
            elif method == "layercam":
                maps[i] += np.maximum(G, 0) * A
    return np.maximum(maps, 0)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_methods_equal_the_papers_formulas(models, made_batch, backbone, method):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    captured = capture(model, made_batch, layer, None)
    a, g = captured.activations[layer], captured.gradients[layer]
    reference = paper_map(method, a.double().numpy(), g.double().numpy())
    ours = cam(model, made_batch, layer, method=method).cams
    assert relative_error(ours, reference) < 1e-5  # ours computes these weights in float64


def test_grad_cam_pp_matches_the_peer_only_where_gradients_dwarf_its_eps(made_batch):
    """Unscaled head: gradients ~1e-3, so the peer's 1e-6 in the denominator rules its map."""
    model = calibrated("resnet50")
    head = model.fc
    with torch.no_grad():
        head.weight.div_(HEAD_SCALE)
        head.bias.div_(HEAD_SCALE)
    classes = predicted(model, made_batch)
    captured = capture(model, made_batch, "layer4", classes)
    assert float(captured.gradients["layer4"].abs().max()) < 0.01
    ours = cam(model, made_batch, "layer4", class_idx=classes, method="gradcampp").cams
    reference = paper_map("gradcampp", captured.activations["layer4"].double().numpy(),
                          captured.gradients["layer4"].double().numpy())
    assert relative_error(ours, reference) < 1e-5
    theirs = grad_cam_lib_raw("gradcampp", model, model.layer4, made_batch, classes)
    assert relative_error(torch.from_numpy(theirs), reference) > 1e-3


# ---------------------------------------------------------------- Eigen-CAM


@pytest.mark.parametrize("backbone", BACKBONES)
def test_eigen_cam_is_the_papers_projection(models, made_batch, backbone):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    activation = capture(model, made_batch, layer, gradients=False).activations[layer]
    ours = cam(model, made_batch, layer, method="eigencam").cams
    a = activation.double().numpy()
    reference = []
    for image in a:
        matrix = image.reshape(image.shape[0], -1).T  # hw x K, not centred (the paper)
        _, _, vt = np.linalg.svd(matrix, full_matrices=False)
        projection = matrix @ vt[0]
        projection = projection if projection.sum() >= 0 else -projection
        reference.append(np.maximum(projection, 0).reshape(image.shape[1:]))
    assert relative_error(ours, np.stack(reference)) < 1e-5


@pytest.mark.parametrize("backbone", BACKBONES)
def test_eigen_cam_centred_equals_pytorch_grad_cam_up_to_sign(models, made_batch, backbone):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    activation = capture(model, made_batch, layer, gradients=False).activations[layer]
    ours = eigen_projection(activation, center=True)
    theirs = grad_cam_lib_raw("eigencam", model, get_layer(model, layer), made_batch, [0, 0], signed=True)
    sign = np.sign((ours.numpy() * theirs).sum(axis=(1, 2)))[:, None, None]  # SVD's sign is arbitrary
    assert relative_error(ours, theirs * sign) < 1e-5


def test_eigen_cam_of_non_negative_activations_is_non_negative(models, made_batch):
    activation = capture(models["resnet50"], made_batch, "layer4", gradients=False).activations["layer4"]
    assert float(activation.min()) >= 0
    projection = eigen_projection(activation)
    assert float(projection.min()) >= -1e-6 * float(projection.max())


# ---------------------------------------------------------------- Ablation-CAM


class ZeroAblation:
    """pytorch-grad-cam's AblationLayer, ablating to 0 always (the paper's definition)."""

    def __new__(cls):
        from pytorch_grad_cam.ablation_layer import AblationLayer

        class _Zero(AblationLayer):
            def __call__(self, x):
                output = self.activations
                for i in range(output.size(0)):
                    output[i, self.indices[i], :] = 0
                return output

        return _Zero()


@pytest.mark.parametrize("backbone", ("efficientnet_b0", "mobilenet_v3_large"))
def test_ablation_cam_equals_pytorch_grad_cam_ablating_to_zero(models, backbone):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    batch = torch.stack([preprocess(make_image(64, 64, seed=4), InputSpec(size=64))])
    classes = predicted(model, batch)
    ours = cam(model, batch, layer, class_idx=classes, method="ablationcam").cams
    theirs = grad_cam_lib_raw("ablationcam", model, get_layer(model, layer), batch, classes,
                              ablation_layer=ZeroAblation(), batch_size=64)
    assert relative_error(ours, theirs) < 1e-5


@pytest.mark.slow
def test_ablation_cam_equals_pytorch_grad_cam_on_resnet50(models):
    """layer4 is post-ReLU (min 0): the peer's own ablation is the paper's zeroing."""
    model = models["resnet50"]
    batch = torch.stack([preprocess(make_image(64, 64, seed=4), InputSpec(size=64))])
    classes = predicted(model, batch)
    ours = cam(model, batch, "layer4", class_idx=classes, method="ablationcam").cams
    theirs = grad_cam_lib_raw("ablationcam", model, model.layer4, batch, classes, batch_size=64)
    assert relative_error(ours, theirs) < 1e-5


class SkipNet(nn.Module):
    """A head that meets a tensor from before the target layer: by add or by concatenation."""

    def __init__(self, concat: bool) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.concat = concat
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.target = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12 if concat else 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        early = self.stem(x)
        late = self.target(early)
        mixed = torch.cat([late, early], 1) if self.concat else late + early
        return self.fc(self.pool(mixed).flatten(1))


def brute_force_ablation(model: nn.Module, image: torch.Tensor, layer: str, c: int) -> torch.Tensor:
    """Every channel zeroed in turn, the whole model re-run each time (the definition)."""
    activation = capture(model, image, layer, gradients=False).activations[layer]
    original = float(model(image)[0, c])
    weights = []
    for k in range(activation.shape[1]):
        ablated = activation.clone()
        ablated[:, k] = 0
        handle = get_layer(model, layer).register_forward_hook(lambda m, i, o, a=ablated: a)
        try:
            with torch.no_grad():
                weights.append((original - float(model(image)[0, c])) / original)
        finally:
            handle.remove()
    return torch.relu((torch.tensor(weights)[:, None, None] * activation[0]).sum(0))


@pytest.mark.parametrize("concat", (False, True))
def test_ablation_cam_replay_is_exact_with_skip_connections(concat):
    model = SkipNet(concat).eval()
    image = torch.randn(1, 3, 12, 12)
    result = cam(model, image, "target", class_idx=2, method="ablationcam", batch_size=4)
    reference = brute_force_ablation(model, image, "target", 2)
    assert float(reference.max()) > 0
    torch.testing.assert_close(result.cams[0], reference, rtol=1e-5, atol=1e-6 * float(reference.max()))


def test_ablation_cam_chunking_does_not_change_the_map(models, made_batch):
    model = models["efficientnet_b0"]
    one = cam(model, made_batch, "features.7", method="ablationcam", batch_size=320).cams
    many = cam(model, made_batch, "features.7", method="ablationcam", batch_size=7).cams
    assert relative_error(many, one) < 1e-5


# ---------------------------------------------------------------- Score-CAM


def test_score_cam_equals_pytorch_grad_cam_on_efficientnet(plain_models):
    """Score-CAM needs no gradient: the head is left unscaled so the softmax is not one-hot."""
    model = plain_models["efficientnet_b0"]
    batch = torch.stack([preprocess(make_image(64, 64, seed=4), InputSpec(size=64))])
    classes = predicted(model, batch)
    ours = cam(model, batch, "features.7", class_idx=classes, method="scorecam", batch_size=64).cams
    theirs = grad_cam_lib_raw("scorecam", model, model.features[7], batch, classes)
    assert relative_error(ours, theirs) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ("resnet50", "mobilenet_v3_large"))
def test_score_cam_equals_pytorch_grad_cam(plain_models, backbone):
    model, layer = plain_models[backbone], DEFAULT_LAYERS[backbone]
    batch = torch.stack([preprocess(make_image(64, 64, seed=4), InputSpec(size=64))])
    classes = predicted(model, batch)
    ours = cam(model, batch, layer, class_idx=classes, method="scorecam", batch_size=64).cams
    theirs = grad_cam_lib_raw("scorecam", model, get_layer(model, layer), batch, classes)
    assert relative_error(ours, theirs) < 1e-5


def test_score_cam_batch_size_does_not_change_the_map(plain_models):
    model = plain_models["efficientnet_b0"]
    batch = torch.stack([preprocess(make_image(64, 64, seed=4), InputSpec(size=64))])
    big = cam(model, batch, "features.7", method="scorecam", batch_size=320).cams
    small = cam(model, batch, "features.7", method="scorecam", batch_size=9).cams
    assert relative_error(small, big) < 1e-5


# ---------------------------------------------------------------- no trace, errors


REFUSE_SKIPNET = ("cam", "legrad")  # the methods that refuse SkipNet (with a message), leaving no trace either


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_leaves_no_trace(method):
    model = SkipNet(concat=True)
    model.train()
    model.fc.eval()  # the user's own mixed flags must come back as they were
    before = [m.training for m in model.modules()]
    try:
        cam(model, torch.randn(2, 3, 10, 10), "target", method=method, batch_size=3)
    except MushcamError as refused:  # CAM needs a pooled linear head on these channels, LeGrad a ViT
        assert method in REFUSE_SKIPNET, refused
    else:
        assert method not in REFUSE_SKIPNET
    assert [m.training for m in model.modules()] == before
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", ("ablationcam", "scorecam"))
def test_bad_batch_size_is_a_clear_error(method):
    with pytest.raises(MushcamError, match="batch_size"):
        cam(SkipNet(False).eval(), torch.randn(1, 3, 8, 8), "target", method=method, batch_size=0)


def test_a_wrong_layer_is_a_mushcam_error(models, made_batch):
    with pytest.raises(ValueError, match="no module named"):
        cam(models["resnet50"], made_batch, "layer9", method="hirescam")


# ---------------------------------------------------------------- real photos


@pytest.mark.parametrize("backbone", BACKBONES)
def test_methods_equal_pytorch_grad_cam_on_real_photos(models, photo_batch, backbone):
    model, layer = models[backbone], DEFAULT_LAYERS[backbone]
    classes = predicted(model, photo_batch)
    captured = capture(model, photo_batch, layer, classes)
    for method in GRADIENT_METHODS:
        ours = cam(model, photo_batch, layer, class_idx=classes, method=method).cams
        theirs = grad_cam_lib_raw(method, model, get_layer(model, layer), photo_batch, classes)
        tolerance = peer_tolerance(method, captured.activations[layer], captured.gradients[layer])
        assert relative_error(ours, theirs) < tolerance, method
    ours = eigen_projection(captured.activations[layer], center=True)
    theirs = grad_cam_lib_raw("eigencam", model, get_layer(model, layer), photo_batch, classes, signed=True)
    sign = np.sign((ours.numpy() * theirs).sum(axis=(1, 2)))[:, None, None]
    assert relative_error(ours, theirs * sign) < 1e-5


@pytest.mark.slow
def test_ablation_and_score_cam_equal_pytorch_grad_cam_on_a_real_photo(models, plain_models, photo_batch):
    model = models["efficientnet_b0"]
    photo = photo_batch[:1]
    classes = predicted(model, photo)
    ours = cam(model, photo, "features.7", class_idx=classes, method="ablationcam").cams
    theirs = grad_cam_lib_raw("ablationcam", model, model.features[7], photo, classes, ablation_layer=ZeroAblation())
    assert relative_error(ours, theirs) < 1e-5
    model = plain_models["efficientnet_b0"]
    classes = predicted(model, photo)
    ours = cam(model, photo, "features.7", class_idx=classes, method="scorecam").cams
    theirs = grad_cam_lib_raw("scorecam", model, model.features[7], photo, classes)
    assert relative_error(ours, theirs) < 1e-5


class TokenNet(nn.Module):
    """A tiny transformer-shaped model: a class token plus a 4 x 4 grid of tokens."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.patch = nn.Conv2d(3, 6, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.block = nn.Sequential(nn.Linear(6, 6), nn.GELU())
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1))
        return self.fc(torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1))


def test_ablation_cam_on_a_token_grid_zeroes_grid_channels_only():
    model = TokenNet().eval()
    image = torch.randn(1, 3, 16, 16)
    result = cam(model, image, "block", class_idx=1, method="ablationcam", batch_size=4)
    raw = capture(model, image, "block", gradients=False).raw["block"]  # 1 x 17 x 6
    original = float(model(image)[0, 1])
    weights = []
    for k in range(6):
        ablated = raw.clone()
        ablated[:, 1:, k] = 0  # the grid's tokens; the class token is not part of the map
        handle = model.block.register_forward_hook(lambda m, i, o, a=ablated: a)
        try:
            with torch.no_grad():
                weights.append((original - float(model(image)[0, 1])) / original)
        finally:
            handle.remove()
    grid = raw[0, 1:].T.reshape(6, 4, 4)
    reference = torch.relu((torch.tensor(weights)[:, None, None] * grid).sum(0))
    assert float(reference.max()) > 0
    torch.testing.assert_close(result.cams[0], reference, rtol=1e-5, atol=1e-6 * float(reference.max()))
