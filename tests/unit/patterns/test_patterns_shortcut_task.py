"""A made task with a planted shortcut: the strategy clusters find it and flag it.

Two made-up classes: A is a red square, B a green one, on a cluttered background. Half of
class A carries no red square at all but a watermark patch (white with a black bar) in the
bottom-right corner, so a small CNN trained in seconds must learn "watermark means A".
The clusters of the photos called A must contain one whose maps sit in that corner,
flagged with the reason; the other clusters (maps on the red squares) must not be flagged.
Then the pointing-game numbers on made boxes are checked against a hand computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scenes import small_cnn  # the shared four-convolution CNN (tests/helpers/scenes.py)
from torch import nn

from mushcam.gradcam import grad_cam
from mushcam.manifest import InputSpec
from mushcam.patterns.focus import bootstrap_interval, focus_of_heat, focus_of_map, summarise_focus
from mushcam.patterns.maps import ModelMaps, PhotoMap
from mushcam.patterns.strategies import class_strategies
from mushcam.render import upsample_cam

SIZE = 48
OBJECT = 8
MARK = 9
CLASSES = ["Alpha", "Beta"]


def make_scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, list[tuple[int, int]]]:
    """Images, labels, whether each carries the watermark, and each object's top-left corner."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.2, 0.5, size=(n, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=n)
    marked = (labels == 0) & (rng.random(n) < 0.5)
    corners = []
    for i in range(n):
        for _ in range(4):
            s = int(rng.integers(4, 10))
            x, y = rng.integers(4, SIZE - s - 4, size=2)
            shade = rng.uniform(0.3, 0.8)
            images[i, y:y + s, x:x + s] = (0.2, 0.3, 0.9) if rng.random() < 0.5 else (shade, shade, shade)
        x, y = (int(v) for v in rng.integers(10, SIZE - OBJECT - 10, size=2))
        corners.append((x, y))
        if marked[i]:
            images[i, -MARK - 1:-1, -MARK - 1:-1] = 1.0
            images[i, -MARK // 2 - 2:-MARK // 2, -MARK - 1:-1] = 0.0
        else:
            images[i, y:y + OBJECT, x:x + OBJECT] = (0.95, 0.1, 0.1) if labels[i] == 0 else (0.1, 0.9, 0.1)
    images += rng.normal(0, 0.03, size=images.shape).astype(np.float32)
    tensor = torch.from_numpy(np.clip(images, 0, 1)).permute(0, 3, 1, 2).contiguous()
    return (tensor - 0.5) / 0.25, torch.from_numpy(labels), marked, corners


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    train_x, train_y, _, _ = make_scenes(512, seed=0)
    model = small_cnn(seed=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(8):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def model_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> ModelMaps:
    result = grad_cam(model, images, "0")
    probabilities = torch.softmax(result.logits, dim=1)
    maps = tuple(
        PhotoMap(f"{CLASSES[int(labels[i])]}/{i:03d}.png", f"{i:064x}", int(labels[i]), int(probabilities[i].argmax()),
                 float(probabilities[i].max()), result.cams[i].numpy())
        for i in range(len(images))
    )
    return ModelMaps("toy", "gradcam", "0", "0" * 64, maps, (), len(maps))


def test_the_watermark_cluster_is_found_and_flagged_and_the_others_are_not(trained):
    test_x, test_y, marked, _ = make_scenes(160, seed=1)
    with torch.inference_mode():
        predicted = trained(test_x).argmax(1)
    assert float((predicted == test_y).float().mean()) >= 0.9, "the toy model did not learn the task"

    maps = model_maps(trained, test_x, test_y)
    found = class_strategies(maps, CLASSES, 0, group_by="predicted")
    is_marked = {m.relpath: bool(marked[i]) for i, m in enumerate(maps.maps)}
    flagged = [c for c in found.clusters if c.flags]
    assert flagged, f"no cluster flagged among {[(c.size, c.flags) for c in found.clusters]}"
    for cluster in found.clusters:
        share_marked = np.mean([is_marked[p] for p in cluster.paths])
        print(cluster.index, cluster.size, f"{share_marked:.0%} marked", [f.reason for f in cluster.flags])
        if cluster.flags:
            assert share_marked >= 0.9, f"a flagged cluster is not the watermark photos: {share_marked:.0%}"
            kinds = {f.kind for f in cluster.flags}
            assert kinds & {"corner", "same_location"}, kinds
            corner = next(f for f in cluster.flags if f.kind in ("corner", "same_location"))
            assert "of its" in corner.reason and "called Alpha" in corner.reason
        else:
            assert share_marked <= 0.1, f"an unflagged cluster holds watermark photos: {share_marked:.0%}"
    corner_flags = [f for c in flagged for f in c.flags if f.kind == "corner"]
    assert any("bottom-right" in f.reason for f in corner_flags), [f.reason for f in corner_flags]
    assert sum(c.size for c in flagged) >= 0.8 * marked[predicted.numpy() == 0].sum()


def test_pointing_game_on_made_boxes_matches_a_hand_computation(trained):
    test_x, test_y, marked, corners = make_scenes(40, seed=2)
    result = grad_cam(trained, test_x, "0")
    spec = InputSpec(size=SIZE, resize="squash", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    photos = []
    for i, (x, y) in enumerate(corners):
        box = (x, y, x + OBJECT, y + OBJECT)
        got = focus_of_map(result.cams[i].numpy(), (SIZE, SIZE), spec, box)
        heat = upsample_cam(result.cams[i], (SIZE, SIZE))
        total = heat.sum()
        energy = heat[y:y + OBJECT, x:x + OBJECT].sum() / total if total > 0 else 0.0
        py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
        pointing = float(x <= px < x + OBJECT and y <= py < y + OBJECT) if total > 0 else 0.0
        assert got.energy == pytest.approx(energy, abs=1e-6)
        assert got.pointing == pointing
        assert got.uniform == pytest.approx(OBJECT * OBJECT / SIZE**2)
        photos.append(got)
    summary = summarise_focus(photos)
    energies = np.array([p.energy for p in photos])
    assert summary.energy.mean == pytest.approx(energies.mean())
    assert summary.energy.low <= summary.energy.mean <= summary.energy.high
    unmarked = ~marked
    assert np.mean(energies[unmarked]) > 3 * summary.uniform, "the maps of real objects should beat a flat map"


def test_energy_and_pointing_by_hand_on_a_tiny_map():
    heat = np.array([[0, 1, 0, 0], [0, 3, 2, 0], [0, 0, 0, 0], [4, 0, 0, 0]], dtype=np.float32)
    got = focus_of_heat(heat, (1, 0, 3, 2))  # columns 1-2, rows 0-1: 1 + 3 + 2 of 10
    assert got.energy == pytest.approx(0.6)
    assert got.pointing == 0.0  # the maximum (4) is at the bottom-left
    assert got.uniform == pytest.approx(4 / 16)
    unseen = heat.copy()
    unseen[3, :] = np.nan  # the crop did not see the last row
    got = focus_of_heat(unseen, (1, 0, 3, 2))
    assert (got.energy, got.pointing, got.uniform) == (pytest.approx(1.0), 1.0, pytest.approx(4 / 12))
    interval = bootstrap_interval([1.0, 1.0, 1.0])
    assert (interval.mean, interval.low, interval.high) == (1.0, 1.0, 1.0)
