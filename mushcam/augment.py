"""Training-time photo augmentation: random resized crop, horizontal flip, colour jitter.

Why its own module: the training loop should not care how a batch is made, and the
evaluation path must stay exactly :func:`mushcam.data.preprocess` (the ``squash`` input
spec). To keep the two consistent, every training photo is decoded once and squashed to a
square of side ``round(margin * size)`` (:func:`prepare_image`); a random resized crop of
that square with scale 1 and ratio 1 is then the evaluation view, and smaller crops zoom in
around it. Randomness comes only from the ``torch.Generator`` passed in: the same seed
gives the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mushcam.manifest import InputSpec

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale uses.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the training augmentation (torchvision's usual names and meanings).

    ``scale``: range of the crop's area as a fraction of the squared photo; ``ratio``: range
    of its aspect ratio (w / h); ``flip``: probability of a horizontal flip; ``brightness``,
    ``contrast``, ``saturation``: each factor is drawn from [1 - j, 1 + j].
    """

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    margin: float = 1.25


def prepare_image(image: Image.Image, size: int, margin: float = 1.25) -> torch.Tensor:
    """A decoded photo squashed to a ``3 x L x L`` uint8 tensor, ``L = round(margin * size)``.

    Done once per training photo before the epochs, so that decoding and downscaling a large
    JPEG is never repeated. Uses the same resampling as :func:`mushcam.data.preprocess`.
    """
    side = max(int(round(margin * size)), size)
    resized = image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR, reducing_gap=None)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def crop_params(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop with area fraction in ``scale`` and aspect in ``ratio``.

    torchvision's RandomResizedCrop rule (10 tries, then the largest centred crop that fits
    the ratio range), drawing from ``generator`` instead of the global RNG.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _normalise(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=batch.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=batch.dtype).view(1, 3, 1, 1)
    return (batch - mean) / std


def _jitter(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation factors per image, on values in [0, 1] (clamped)."""
    n = batch.shape[0]

    def factors(j: float) -> torch.Tensor:
        return (1 - j + 2 * j * torch.rand(n, generator=generator)).view(n, 1, 1, 1)

    luma = torch.tensor(_LUMA, dtype=batch.dtype).view(1, 3, 1, 1)
    if config.brightness > 0:
        batch = (batch * factors(config.brightness)).clamp_(0, 1)
    if config.contrast > 0:
        mean_gray = (batch * luma).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        batch = ((batch - mean_gray) * factors(config.contrast) + mean_gray).clamp_(0, 1)
    if config.saturation > 0:
        gray = (batch * luma).sum(1, keepdim=True)
        batch = ((batch - gray) * factors(config.saturation) + gray).clamp_(0, 1)
    return batch


def augment_batch(
    images: Sequence[torch.Tensor],
    spec: InputSpec,
    generator: torch.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> torch.Tensor:
    """Normalised ``N x 3 x size x size`` float batch of augmented views of uint8 images.

    Per image: random resized crop (bilinear, antialiased) to ``spec.size``, horizontal flip
    with probability ``config.flip``; then per-image colour jitter; then (x - mean) / std.
    """
    size = spec.size
    views = []
    for image in images:
        _, height, width = image.shape
        top, left, h, w = crop_params(height, width, config.scale, config.ratio, generator)
        crop = image[:, top : top + h, left : left + w].unsqueeze(0).float().div_(255.0)
        view = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if float(torch.rand(1, generator=generator)) < config.flip:
            view = view.flip(-1)
        views.append(view)
    batch = torch.cat(views).clamp_(0, 1)
    return _normalise(_jitter(batch, config, generator), spec)
