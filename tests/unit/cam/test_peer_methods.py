"""The methods added for issue 20 item 3, each against its peer's own implementation.

pytorch-grad-cam 1.5.7 (``eigengradcam``, ``gradcamelementwise``, ``kpcacam``, ``shapleycam``, ``fem``,
``fullgrad``, ``refinecam``, Deep Feature Factorization) and torchcam 0.5 (``cam``, ``smoothgradcampp``,
``sscam``, ``iscam``, ``legrad``). Models: tests/helpers/cam_peers.py's TinyCNN (a GAP + linear head, or
a Linear-Hardswish-Linear head with curvature) and a tiny torchvision ViT, on made inputs at 32 px.

Comparisons: against torchcam's raw maps (``normalized=False``) as they are; against pytorch-grad-cam's
``__call__`` (its only public output: min-max scaled and resized) after putting ours through the peer's
own ``scale_cam_image`` the same number of times. max |ours - theirs| / max |theirs| < 1e-5 unless a
test states another bound and why. Gradient models have their last layer scaled by 1e5, as in
test_methods.py, so that the peers' eps terms (1e-6, 1e-8) do not decide their maps.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from cam_peers import TinyCNN, grad_cam_lib_raw, pgc_scaled, pgc_scaling, tiny_vit, torchcam_maps

from mushcam.cam import METHODS, cam, capture, get_method, score_variants
from mushcam.cam.activation import eigen_projection, kernel_projection
from mushcam.cam.factorization import factorise, nmf
from mushcam.exceptions import MushcamError

LAYER = "features.5"
CLASSES = [1, 3]
SIZE = (32, 32)
HEAD_SCALE = 1e5
NEW_METHODS = ("cam", "eigengradcam", "gradcamelementwise", "fullgrad", "kpcacam", "shapleycam", "fem", "refinecam",
               "smoothgradcampp", "sscam", "iscam", "legrad", "dff")

warnings.filterwarnings("ignore", message=".*fc_layer.*")


def relative_error(ours, theirs) -> float:
    ours = torch.as_tensor(np.asarray(ours), dtype=torch.float64)
    theirs = torch.as_tensor(np.asarray(theirs), dtype=torch.float64)
    assert float(theirs.abs().max()) > 0, "a zero reference map would make the comparison vacuous"
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=[False, True], ids=["gap-linear", "mlp-head"])
def scaled(request) -> TinyCNN:
    return TinyCNN(mlp=request.param, head_scale=HEAD_SCALE)


def test_the_new_methods_are_registered_in_order():
    assert METHODS[-len(NEW_METHODS):] == NEW_METHODS
    assert [get_method(m).needs_gradient for m in NEW_METHODS] == [
        False, True, True, False, False, True, False, True, True, False, False, False, True]
    assert [m for m in NEW_METHODS if get_method(m).can_contrast] == [
        "eigengradcam", "gradcamelementwise", "shapleycam", "refinecam", "dff"]


# ---------------------------------------------------------------- pytorch-grad-cam's methods


@pytest.mark.parametrize("method", ("gradcamelementwise", "shapleycam", "fem", "fullgrad"))
def test_method_equals_pytorch_grad_cam(scaled, batch, method):
    ours = cam(scaled, batch, LAYER, CLASSES, method=method).cams
    assert float(ours.max()) > 0
    theirs = pgc_scaled(method, scaled, [scaled.features[5]], batch, CLASSES)
    times = 1 if method == "fullgrad" else 2  # FullGrad's maps are at the input size already: one scaling
    assert relative_error(pgc_scaling(ours, SIZE, times), theirs) < 1e-5


def test_fullgrad_reads_a_layer_output_before_an_inplace_activation_changes_it(batch):
    """ResNets and EfficientNets put ReLU(inplace=True) / SiLU(inplace=True) after batch norm: the
    gradient must be the one at the batch norm's output, as the peer's tensor hooks see it."""
    model = TinyCNN(head_scale=HEAD_SCALE)
    model.features[2] = torch.nn.ReLU(inplace=True)
    ours = cam(model, batch, LAYER, CLASSES, method="fullgrad").cams
    theirs = pgc_scaled("fullgrad", model, [], batch, CLASSES)
    assert relative_error(pgc_scaling(ours, SIZE, 1), theirs) < 1e-5


def test_fullgrad_is_at_the_input_size_and_not_the_gradcam_map(batch):
    model = TinyCNN(head_scale=HEAD_SCALE)
    ours = cam(model, batch, LAYER, CLASSES, method="fullgrad").cams
    assert tuple(ours.shape) == (2, *SIZE)  # every biased layer, not the target layer
    assert all(p.grad is None for p in model.parameters())  # a whole backward, but into activations only


def test_shapleycam_has_a_hessian_term_only_where_the_head_curves(batch):
    for mlp, nonzero in ((False, False), (True, True)):
        captured = capture(TinyCNN(mlp=mlp, head_scale=HEAD_SCALE), batch, LAYER, CLASSES, second_order=True)
        assert (float(captured.hessian_products[LAYER].abs().max()) > 1e-3) is nonzero


@pytest.mark.parametrize("method", ("eigengradcam", "kpcacam"))
def test_projection_methods_equal_pytorch_grad_cam_up_to_sign(scaled, batch, method):
    """The projections' sign is arbitrary (the peer leaves it so, we fix it): compared signed, up to sign.
    KPCA: the peer's scikit-learn eigensolver (ARPACK) against our dense eigh, bound 2e-5."""
    captured = capture(scaled, batch, LAYER, CLASSES)
    a, g = captured.activations[LAYER], captured.gradients[LAYER]
    ours = eigen_projection(g * a, center=True) if method == "eigengradcam" else kernel_projection(a)
    theirs = grad_cam_lib_raw(method, scaled, scaled.features[5], batch, CLASSES, signed=True)
    sign = np.sign((ours.numpy() * theirs).sum(axis=(1, 2)))[:, None, None]
    assert relative_error(ours, theirs * sign) < (1e-5 if method == "eigengradcam" else 2e-5)
    assert torch.equal(cam(scaled, batch, LAYER, CLASSES, method=method).cams, torch.relu(ours))


def test_refinecam_equals_pytorch_grad_cam_over_two_layers(scaled, batch):
    ours = cam(scaled, batch, ["features.2", LAYER], CLASSES, method="refinecam")
    theirs = pgc_scaled("refinecam", scaled, [scaled.features[2], scaled.features[5]], batch, CLASSES)
    assert relative_error(pgc_scaling(ours.cams, SIZE, 1), theirs) < 1e-5
    assert torch.equal(ours.cams_by_layer["features.2"], ours.cams_by_layer[LAYER])  # one product for all


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dff_factorises_as_well_as_pytorch_grad_cam(batch):
    """NMF has no unique solution: the peer's scikit-learn coordinate descent and our multiplicative
    updates reach different factorisations of the same quality. Stated bound: our relative
    reconstruction error is within 1% of the peer's, image by image; each concept map peaks at 1."""
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff
    from sklearn.decomposition import NMF

    activation = capture(TinyCNN(), batch, LAYER, CLASSES, gradients=False).activations[LAYER]
    for image in activation:
        matrix = image.reshape(16, -1).double()
        shifted = matrix - matrix.min(dim=1, keepdim=True).values
        w, h = nmf(shifted, 5)
        ours = float(torch.linalg.norm(shifted - w @ h) / torch.linalg.norm(shifted))
        peer = NMF(n_components=5, init="random", random_state=0)
        basis = peer.fit_transform(shifted.numpy())
        theirs = float(np.linalg.norm(shifted.numpy() - basis @ peer.components_) / np.linalg.norm(shifted.numpy()))
        assert ours < 1.01 * theirs
        concepts, maps = factorise(image)
        peer_concepts, peer_maps = dff(image[None].numpy().copy(), n_components=5)
        assert concepts.shape == peer_concepts.shape and maps.shape == peer_maps[0].shape  # K x r, r x h x w
        assert torch.allclose(maps.flatten(1).amax(dim=1), torch.ones(5, dtype=maps.dtype))


def test_dff_picks_the_concept_the_head_ranks_first(batch):
    """With a GAP + linear head, the chosen concept maximises the class logit of its channel vector."""
    model = TinyCNN()
    ours = cam(model, batch, LAYER, CLASSES, method="dff").cams
    activation = capture(model, batch, LAYER, CLASSES, gradients=False).activations[LAYER]
    for n, c in enumerate(CLASSES):
        concepts, maps = factorise(activation[n])
        logits = model.head(concepts.T.float())[:, c]
        assert torch.equal(ours[n], maps[int(logits.argmax())].float())


# ---------------------------------------------------------------- torchcam's methods


def test_cam_equals_torchcam_and_is_gradcam_times_hw(batch):
    model = TinyCNN()
    ours = cam(model, batch, LAYER, CLASSES, method="cam").cams
    assert relative_error(ours, torch.relu(torchcam_maps("cam", model, LAYER, batch, CLASSES))) < 1e-5
    gradcam = cam(model, batch, LAYER, CLASSES, method="gradcam").cams
    assert relative_error(ours, gradcam * 64) < 1e-5


@pytest.mark.parametrize("layer", ("features.2", LAYER))
def test_cam_refuses_a_layer_without_a_pooled_linear_head(layer):
    model = TinyCNN(mlp=True) if layer == LAYER else TinyCNN()
    with pytest.raises(MushcamError, match="global-average-pool \\+ linear head.*Grad-CAM"):
        cam(model, torch.zeros(1, 3, *SIZE), layer, method="cam")


@pytest.mark.parametrize("cached", (True, False), ids=["masks-kept", "masks-per-chunk"])
@pytest.mark.parametrize("method", ("sscam", "iscam"))
def test_score_variants_equal_torchcam(batch, method, cached, monkeypatch):
    """The same seed gives the same noise (SS-CAM draws it in torchcam's order); the unscaled head
    keeps the softmax over channels from being one-hot. Both mask paths: upsampled once and kept
    (when they fit MASK_CACHE_BYTES), or made again for every chunk."""
    if not cached:
        monkeypatch.setattr(score_variants, "MASK_CACHE_BYTES", 0)
    model = TinyCNN(mlp=True)
    ours = cam(model, batch, LAYER, CLASSES, method=method, batch_size=7).cams
    assert relative_error(ours, torchcam_maps(method, model, LAYER, batch, CLASSES, seed=0)) < 1e-5


def test_smoothgradcampp_matches_torchcam_noise_and_follows_the_paper(batch):
    """torchcam's SmoothGradCAMpp uses the *last* noisy sample's gradient and activation and sums
    ``D^3 A`` over positions in alpha's denominator; we follow the paper (the mean gradient, the image's
    own A, ``sum_ab A_kab D^3_kij``). The test rebuilds torchcam's formula from our captures of the
    same noisy inputs (same seed: the noise is the same) and checks it to 1e-5, then ours against
    the paper's formula."""
    model = TinyCNN(mlp=True, head_scale=HEAD_SCALE)
    generator = torch.Generator().manual_seed(0)
    grads, acts = [], []
    for _ in range(4):
        noisy = capture(model, batch + torch.randn(batch.shape, generator=generator) * 0.3, LAYER, CLASSES)
        grads.append(noisy.gradients[LAYER].double())
        acts.append(noisy.activations[LAYER].double())
    a0 = capture(model, batch, LAYER, CLASSES).activations[LAYER].double()
    g2, g3 = sum(g**2 for g in grads) / 4, sum(g**3 for g in grads) / 4
    alpha = g2 / (2 * g2 + (g3 * a0).sum(dim=(2, 3), keepdim=True) + 1e-8)
    peer_formula = torch.relu(((alpha * torch.relu(grads[-1])).sum(dim=(2, 3))[:, :, None, None] * acts[-1]).sum(1))
    theirs = torchcam_maps("smoothgradcampp", model, LAYER, batch, CLASSES, seed=0)
    assert relative_error(peer_formula, torch.relu(theirs)) < 1e-5
    alpha = g2 / (2 * g2 + a0.sum(dim=(2, 3), keepdim=True) * g3)
    weights = (alpha * torch.relu(sum(grads) / 4)).sum(dim=(2, 3))
    paper = torch.relu((weights[:, :, None, None] * a0).sum(1))
    ours = cam(model, batch, LAYER, CLASSES, method="smoothgradcampp").cams
    assert relative_error(ours, paper) < 1e-5


@pytest.mark.parametrize("block", ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"))
def test_legrad_equals_torchcam_on_a_vit(batch, block):
    model = tiny_vit()
    ours = cam(model, batch, block, CLASSES, method="legrad").cams
    assert tuple(ours.shape) == (2, 4, 4)
    assert relative_error(ours, torchcam_maps("legrad", model, block, batch, CLASSES)) < 1e-5
    assert all(p.grad is None for p in model.parameters())


def test_legrad_refuses_a_cnn_with_a_clear_message():
    with pytest.raises(MushcamError, match="LeGrad needs a Vision Transformer.*choose another method"):
        cam(TinyCNN(), torch.zeros(1, 3, *SIZE), LAYER, method="legrad")


# ---------------------------------------------------------------- progress and stopping


@pytest.mark.parametrize("method", ("smoothgradcampp", "sscam", "iscam"))
def test_long_methods_report_progress_and_stop_when_told(batch, method):
    seen: list[tuple[int, int]] = []

    def stop_at_three(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 3:
            raise KeyboardInterrupt

    model = TinyCNN(mlp=True)
    with pytest.raises(KeyboardInterrupt):
        cam(model, batch, LAYER, CLASSES, method=method, batch_size=4, progress=stop_at_three)
    assert len(seen) == 3 and all(done < total for done, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    assert hooks == 0
