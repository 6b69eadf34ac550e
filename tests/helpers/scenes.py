"""A toy task whose right answer is known: a red or green square (the class) on clutter, and a small CNN for it.

Used by the pointing game (a trained model's Grad-CAM peak must land on the square) and by the
sanity check (randomising a trained model's weights must change its maps). Moved here from
test_pointing_game.py so that no test module imports another.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SIZE = 48
OBJECT = 8


def make_scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """``n`` scenes: normalised images, labels (0 red, 1 green) and each object's top-left corner (x, y)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.2, 0.5, size=(n, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=n)
    corners = []
    for i in range(n):
        for _ in range(6):  # clutter: blue and grey squares of random size
            s = int(rng.integers(4, 12))
            x, y = rng.integers(0, SIZE - s, size=2)
            shade = rng.uniform(0.3, 0.8)
            images[i, y : y + s, x : x + s] = (0.2, 0.3, 0.9) if rng.random() < 0.5 else (shade, shade, shade)
        x, y = (int(v) for v in rng.integers(0, SIZE - OBJECT, size=2))
        images[i, y : y + OBJECT, x : x + OBJECT] = (0.95, 0.1, 0.1) if labels[i] == 0 else (0.1, 0.9, 0.1)
        corners.append((x, y))
    images += rng.normal(0, 0.04, size=images.shape).astype(np.float32)
    tensor = torch.from_numpy(np.clip(images, 0, 1)).permute(0, 3, 1, 2).contiguous()
    return (tensor - 0.5) / 0.25, torch.from_numpy(labels), corners


def small_cnn(seed: int) -> nn.Module:
    """Four convolutions, global pooling and a 2-class head; block ``"0"`` is the CAM layer."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 48, 3, padding=1, stride=2), nn.ReLU(),
        ),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(48, 2),
    )


def trained_small_cnn() -> nn.Module:
    """The small CNN trained for a few seconds on 512 scenes (eval mode); reused by other tests."""
    train_x, train_y, _ = make_scenes(512, seed=0)
    model = small_cnn(seed=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(8):  # epochs of 16 batches: a few seconds on 2 cores
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()
