"""Faithfulness metrics on cases with known answers, and against Quantus 0.6 / pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mushcam.trust.faithfulness import (
    FaithfulnessError,
    FaithfulnessSettings,
    blurred,
    curve_auc,
    evaluate_map,
    ranking,
    saliency,
    step_counts,
)
from mushcam.trust.imputation import linear_impute

SIZE = 32
SQUARE = (slice(8, 16), slice(8, 16))  # the only pixels the network reads


class SquareReader(nn.Module):
    """Logit 0 = 4 x the mean of the square's pixels (all channels); logit 1 = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = x[:, :, SQUARE[0], SQUARE[1]].mean(dim=(1, 2, 3))
        return torch.stack([self.scale * inside, torch.zeros_like(inside)], dim=1)


def square_image(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    image = 0.3 * torch.randn(3, SIZE, SIZE, generator=generator)
    image[:, SQUARE[0], SQUARE[1]] += 1.5
    return image


def square_cam(grid: int = 4) -> torch.Tensor:
    """A coarse CAM (grid x grid) hot on the cell that holds the square."""
    cam = torch.zeros(grid, grid)
    cell = SIZE // grid
    cam[
        SQUARE[0].start // cell : (SQUARE[0].stop - 1) // cell + 1,
        SQUARE[1].start // cell : (SQUARE[1].stop - 1) // cell + 1,
    ] = 1.0
    return cam


def small_cnn(seed: int = 0, classes: int = 3, channels: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes),
    ).eval()


@pytest.mark.parametrize("baseline", ["mean", "blur"])
def test_true_map_deletes_faster_than_random_which_deletes_faster_than_inverted(baseline: str) -> None:
    settings = FaithfulnessSettings(steps=16, baseline=baseline, road_percentages=(20, 50, 80))
    aucs = {"map": [], "random": [], "inverted": []}
    insertion = {"map": [], "random": [], "inverted": []}
    road = []
    for seed in range(4):
        scores = evaluate_map(SquareReader(), square_image(seed), square_cam(), 0, settings,
                              torch.Generator().manual_seed(seed))
        for kind in aucs:
            aucs[kind].append(scores.deletion_auc(kind))
            insertion[kind].append(scores.insertion_auc(kind))
        road.append(scores.road)
    deletion = {k: float(np.mean(v)) for k, v in aucs.items()}
    inserted = {k: float(np.mean(v)) for k, v in insertion.items()}
    assert deletion["map"] < deletion["random"] < deletion["inverted"], deletion
    assert inserted["map"] > inserted["random"] > inserted["inverted"], inserted
    assert np.mean(road) > 0.05, road  # removing the square hurts more than removing the rest


def test_average_drop_of_a_perfect_mask_is_zero_and_of_its_inverse_is_not() -> None:
    mask = torch.zeros(SIZE, SIZE)
    mask[SQUARE] = 1.0  # exactly the pixels the network reads, at input resolution
    for baseline in ("mean", "blur"):
        scores = evaluate_map(
            SquareReader(), square_image(), mask, 0, FaithfulnessSettings(baseline=baseline, road_percentages=())
        )
        assert scores.average_drop["map"] == pytest.approx(0.0, abs=1e-6)
        assert scores.increase["map"] is False
        # Without the square the logit falls to 0 (mean baseline) or to the blurred square's.
        assert scores.average_drop["inverted"] > (0.4 if baseline == "mean" else 0.01)


def test_inverted_curves_are_the_real_curves_read_backwards_and_equal_a_direct_computation() -> None:
    cam = torch.rand(4, 4, generator=torch.Generator().manual_seed(3))
    model = small_cnn()
    image = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    settings = FaithfulnessSettings(steps=8, road_percentages=())
    scores = evaluate_map(model, image, cam, 1, settings, torch.Generator().manual_seed(0))
    inverted = evaluate_map(model, image, -cam, 1, settings, torch.Generator().manual_seed(0))
    # Equal up to the order inside groups of tied pixels (bilinear upsampling repeats edge values).
    np.testing.assert_allclose(scores.deletion["inverted"], inverted.deletion["map"], atol=1e-4)
    np.testing.assert_allclose(scores.insertion["inverted"], inverted.insertion["map"], atol=1e-4)


def test_step_counts_are_symmetric_and_cover_every_pixel() -> None:
    for n, steps in [(100, 20), (49, 10), (7, 3), (50176, 20)]:
        counts = step_counts(n, steps)
        assert counts[0] == 0 and counts[-1] == n
        assert np.all(np.diff(counts) >= 0)
        symmetric = counts[::-1] == n - counts
        if n % 2 and steps % 2 == 0:  # n/2 pixels cannot be: only the midpoint may differ
            symmetric[steps // 2] = True
        assert symmetric.all(), counts


def test_auc_is_the_trapezoid_on_zero_to_one() -> None:
    assert curve_auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert curve_auc(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert curve_auc(np.linspace(1, 0, 11)) == pytest.approx(0.5)


def test_saliency_scales_to_unit_range_and_a_flat_map_marks_nothing() -> None:
    maps = saliency(torch.stack([torch.tensor([[1e-15, 3e-15], [2e-15, 0.0]]), torch.zeros(2, 2)]), (8, 8))
    assert float(maps[0].max()) == pytest.approx(1.0) and float(maps[0].min()) == pytest.approx(0.0)
    assert float(maps[1].abs().max()) == 0.0


def test_ties_are_broken_at_random_not_in_raster_order() -> None:
    flat = torch.zeros(16, 16)
    ranks = ranking(flat, torch.Generator().manual_seed(0))
    first = (ranks < 64).float()  # the first quarter "deleted" of a flat map
    assert 0.1 < float(first[:8].mean()) < 0.4 and 0.1 < float(first[8:].mean()) < 0.4  # spread, not the top rows


def test_blur_keeps_a_constant_image_and_smooths_an_edge() -> None:
    constant = torch.full((3, 20, 20), 0.7)
    torch.testing.assert_close(blurred(constant), constant)
    edge = torch.zeros(1, 20, 20)
    edge[:, :, 10:] = 1.0
    out = blurred(edge)
    assert 0.0 < float(out[0, 5, 9]) < 0.5 < float(out[0, 5, 10]) < 1.0


def test_settings_are_validated() -> None:
    with pytest.raises(FaithfulnessError, match="baseline"):
        FaithfulnessSettings(baseline="zero")
    with pytest.raises(FaithfulnessError, match="ROAD"):
        FaithfulnessSettings(road_percentages=(0, 50))
    with pytest.raises(FaithfulnessError, match="steps"):
        FaithfulnessSettings(steps=1)


# ------------------------------------------------------------------- against the reference tools


def test_deletion_curve_equals_quantus_pixel_flipping() -> None:
    quantus = pytest.importorskip("quantus")
    # One channel: Quantus counts features, so a pixel is then one feature (with three
    # channels its steps would cut pixels apart).
    model = small_cnn(seed=2, channels=1)
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(3, 1, 16, 16, generator=generator)
    maps = torch.rand(3, 16, 16, generator=generator)  # distinct values: one ordering
    labels = np.array([0, 2, 1])
    steps = 16  # 256 pixels, 16 per step
    metric = quantus.PixelFlipping(features_in_step=16, perturb_baseline=0.0, normalise=False, abs=False,
                                   disable_warnings=True)
    reference = metric(model=model, x_batch=images.numpy(), y_batch=labels, a_batch=maps[:, None].numpy(),
                       channel_first=True, softmax=True, device="cpu")
    for i in range(3):
        ours = evaluate_map(model, images[i], maps[i], int(labels[i]),
                            FaithfulnessSettings(steps=steps, baseline="mean", road_percentages=()))
        np.testing.assert_allclose(ours.deletion["map"][1:], np.asarray(reference[i]), atol=1e-4)


def _banded_cams(n: int, size: int, seed: int) -> torch.Tensor:
    """Maps of 10 levels, each on exactly 10% of the pixels (whole bands of rows, shuffled).

    Every percentage 10..90 then cuts between levels, so pytorch-grad-cam's percentile
    threshold and our pixel count remove the same pixels.
    """
    rng = np.random.default_rng(seed)
    cams = np.zeros((n, size, size), dtype=np.float32)
    for i in range(n):
        levels = rng.permutation(10).astype(np.float32)
        cams[i] = np.repeat(levels, size // 10)[:, None] * np.ones((1, size), dtype=np.float32)
    return torch.from_numpy(cams)


def test_road_equals_pytorch_grad_cam_without_noise() -> None:
    pytest.importorskip("scipy")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = small_cnn(seed=4)
    images = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(7))
    cams = _banded_cams(2, 20, seed=1)
    labels = [1, 0]
    targets = [ClassifierOutputSoftmaxTarget(c) for c in labels]
    percentages = (10, 30, 50, 70, 90)
    settings = FaithfulnessSettings(steps=4, baseline="mean", road_percentages=percentages, road_noise=0.0)
    for i in range(2):
        ours = evaluate_map(model, images[i], cams[i], labels[i], settings)
        for j, p in enumerate(percentages):
            for remover, mine in (
                (RemoveMostRelevantFirst, ours.road_morf[j]),
                (RemoveLeastRelevantFirst, ours.road_lerf[j]),
            ):
                metric = PerturbationConfidenceMetric(remover(100 - p, NoisyLinearImputer(noise=0.0)))
                change = metric(images[i:i + 1], cams[i:i + 1].numpy(), targets[i:i + 1], model)
                assert mine - ours.probability == pytest.approx(float(change[0]), abs=1e-4), (p, remover.__name__)


def test_average_drop_and_increase_equal_pytorch_grad_cam_on_the_mean_baseline() -> None:
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = small_cnn(seed=6)
    generator = torch.Generator().manual_seed(11)
    images = torch.randn(6, 3, 16, 16, generator=generator)
    raw = torch.rand(6, 16, 16, generator=generator)
    cams = (raw - raw.amin(dim=(1, 2), keepdim=True)) / (
        raw.amax(dim=(1, 2), keepdim=True) - raw.amin(dim=(1, 2), keepdim=True)
    )
    labels = [0, 1, 2, 0, 1, 2]
    targets = [ClassifierOutputSoftmaxTarget(c) for c in labels]
    drops = DropInConfidence()(images, cams.numpy(), targets, model)
    increases = IncreaseInConfidence()(images, cams.numpy(), targets, model)
    settings = FaithfulnessSettings(steps=2, baseline="mean", road_percentages=())
    for i in range(6):
        ours = evaluate_map(model, images[i], cams[i], labels[i], settings)
        # pytorch-grad-cam reports the raw drop; Chattopadhay et al. divide it by p(x).
        assert ours.average_drop["map"] * ours.probability == pytest.approx(float(drops[i]), abs=1e-4)
        assert ours.increase["map"] == bool(increases[i])


def test_linear_imputation_equals_pytorch_grad_cam_solver() -> None:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    generator = torch.Generator().manual_seed(2)
    image = torch.randn(3, 24, 24, generator=generator)
    coarse = torch.rand(1, 1, 3, 3, generator=generator)
    cam = torch.nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear")[0, 0]
    removed = cam >= cam.flatten().quantile(0.4)
    reference = NoisyLinearImputer(noise=0.0)(image, (~removed).float())
    ours = linear_impute(image.unsqueeze(0), removed.unsqueeze(0))[0]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[:, ~removed], image[:, ~removed])  # kept pixels untouched
