"""Does the region a map marks drive the score? Faithfulness of one map on one image.

Every number is a softmax probability ``p(x)`` of the explained class c. The map (any CAM
method's raw h x w output) is upsampled bilinearly to the input (align_corners=False) and
min-max scaled to s in [0, 1]; its pixels are ranked from most to least relevant (equal
values in a random, seeded order, so a flat map favours no corner).

- **Deletion / insertion** (Petsiuk et al. 2018, RISE): at steps k = 0..S (fraction k/S of
  the pixels, most relevant first) deletion replaces those pixels by the baseline,
  insertion starts from the baseline and puts them back. The curve is p after each step;
  its AUC is the trapezoid rule on [0, 1]. Deletion: lower is better; insertion: higher.
- **Average Drop / Increase in Confidence** (Chattopadhay et al. 2018, Grad-CAM++): the
  explanation image E = s * x + (1 - s) * b; drop = max(0, p(x) - p(E)) / p(x) (reported as
  a mean over images, in %), increase = [p(E) > p(x)] (a share of images). With the
  ``mean`` baseline b = 0, E = s * x, exactly as torchcam and pytorch-grad-cam compute it.
- **ROAD** (Rong et al. 2022): remove the p% most relevant (MoRF) or least relevant (LeRF)
  pixels, fill them by noisy linear imputation (:mod:`mushcam.trust.imputation`), and read
  p. Reported: the mean over the percentages of each, and ROAD = (LeRF - MoRF) / 2
  (pytorch-grad-cam's ROADCombined; higher is better).

Baselines (selectable, stored with the results): ``blur`` = the input blurred with a
Gaussian (11 x 11, sigma 5: RISE's substrate for insertion), ``mean`` = 0 in the
normalised input space, i.e. the normalisation's mean colour (the dataset's mean image
for ImageNet statistics).

Floor and ceiling: beside each real map a **random map** (uniform noise on the map's own
h x w grid, upsampled the same way: a map with the same smoothness and no information) and
the **inverted map** (the real ranking reversed) are scored. The inverted map's curves are
the real map's read backwards (deleting the least relevant k% leaves the image that
inserting the most relevant (1 - k)% makes), so they cost no model call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mushcam.cam import eval_mode
from mushcam.exceptions import MushcamError
from mushcam.trust.imputation import DEFAULT_NOISE, noisy_linear_impute

BASELINES: tuple[str, ...] = ("blur", "mean")
MAP_KINDS: tuple[str, ...] = ("map", "random", "inverted")
DEFAULT_STEPS = 20
DEFAULT_ROAD_PERCENTAGES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
BLUR_KERNEL = 11
BLUR_SIGMA = 5.0


class FaithfulnessError(MushcamError):
    """A faithfulness setting is out of range (the message says which)."""


@dataclass(frozen=True)
class FaithfulnessSettings:
    """How the maps are scored; stored with every result so that numbers say how they were made."""

    steps: int = DEFAULT_STEPS
    baseline: str = "blur"
    road_percentages: tuple[int, ...] = DEFAULT_ROAD_PERCENTAGES
    road_noise: float = DEFAULT_NOISE
    batch_size: int = 32  # perturbed images per forward pass
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.steps <= 1000:
            raise FaithfulnessError(f"steps must be between 2 and 1000; got {self.steps}")
        if self.baseline not in BASELINES:
            raise FaithfulnessError(f"baseline must be one of {', '.join(BASELINES)}; got {self.baseline!r}")
        if any(not 0 < p < 100 for p in self.road_percentages):
            raise FaithfulnessError(
                f"ROAD percentages must lie strictly between 0 and 100; got {self.road_percentages}"
            )
        if not 1 <= self.batch_size <= 1024:
            raise FaithfulnessError(f"batch size must be between 1 and 1024; got {self.batch_size}")
        if self.road_noise < 0:
            raise FaithfulnessError(f"ROAD noise must be >= 0; got {self.road_noise}")

    def to_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps, "baseline": self.baseline, "road_percentages": list(self.road_percentages),
            "road_noise": self.road_noise, "batch_size": self.batch_size, "seed": self.seed,
            "score": "softmax probability of the explained class",
        }


@dataclass(frozen=True)
class ImageFaithfulness:
    """All scores of one map on one image (curves as float64 arrays of length steps + 1)."""

    class_idx: int
    probability: float  # p(x) of the explained class, unperturbed
    deletion: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> curve
    insertion: dict[str, np.ndarray] = field(default_factory=dict)
    average_drop: dict[str, float] = field(default_factory=dict)  # kind -> max(0, p(x)-p(E))/p(x)
    increase: dict[str, bool] = field(default_factory=dict)
    road_morf: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per percentage, the real map
    road_lerf: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def deletion_auc(self, kind: str = "map") -> float:
        return curve_auc(self.deletion[kind])

    def insertion_auc(self, kind: str = "map") -> float:
        return curve_auc(self.insertion[kind])

    @property
    def road(self) -> float:
        """(mean LeRF - mean MoRF) / 2; NaN when no ROAD percentage was asked for."""
        if self.road_morf.size == 0:
            return float("nan")
        return float((self.road_lerf.mean() - self.road_morf.mean()) / 2.0)


def curve_auc(curve: np.ndarray) -> float:
    """Trapezoid-rule area under a curve sampled at fractions 0, 1/S, ..., 1."""
    values = np.asarray(curve, dtype=np.float64)
    steps = values.size - 1
    if steps < 1:
        raise ValueError("a curve needs at least two points")
    return float((values.sum() - (values[0] + values[-1]) / 2.0) / steps)


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """Pixels changed after each step, symmetric so that n[S - k] = n_pixels - n[k].

    Exact for every k except the midpoint k = S/2 of an odd pixel count (half a pixel cannot
    be changed): there the inverted map's curve is off by one pixel.
    """
    k = np.arange(steps + 1)
    low = (k * n_pixels) // steps
    high = n_pixels - ((steps - k) * n_pixels) // steps
    return np.where(2 * k <= steps, low, high).astype(np.int64)


def saliency(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw maps (N, h, w) -> (N, H, W) in [0, 1]: bilinear upsampling, then min-max per map.

    A flat map (max = min, e.g. all zero) becomes all zeros: it marks nothing.
    """
    maps = cams.detach().float()
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    up = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    low = up.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = up.flatten(1).max(dim=1).values.view(-1, 1, 1)
    span = high - low
    return torch.where(span > 0, (up - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(up))


def ranking(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rank of every pixel (0 = most relevant) of an H x W map; ties in a random, seeded order."""
    flat = values.detach().flatten().cpu()
    shuffle = torch.randperm(flat.numel(), generator=generator)
    order = shuffle[torch.argsort(flat[shuffle], descending=True, stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.view(values.shape)


def blurred(image: torch.Tensor) -> torch.Tensor:
    """Gaussian blur (11 x 11, sigma 5, reflected borders) of a (C, H, W) or (N, C, H, W) tensor."""
    radius = BLUR_KERNEL // 2
    axis = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(axis**2) / (2 * BLUR_SIGMA**2))
    kernel = (kernel / kernel.sum()).to(image.device, image.dtype)
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    c = batch.shape[1]
    pad_h, pad_w = min(radius, batch.shape[2] - 1), min(radius, batch.shape[3] - 1)
    out = F.pad(batch, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w else batch
    out = F.conv2d(out, kernel[radius - pad_w: radius + pad_w + 1].view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, pad_h, pad_h), mode="reflect") if pad_h else out
    out = F.conv2d(out, kernel[radius - pad_h: radius + pad_h + 1].view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return out.squeeze(0) if image.dim() == 3 else out


def baseline_image(image: torch.Tensor, kind: str) -> torch.Tensor:
    """The substrate a removed pixel takes: the blurred image, or the mean colour (0 once normalised)."""
    if kind == "blur":
        return blurred(image)
    if kind == "mean":
        return torch.zeros_like(image)
    raise FaithfulnessError(f"baseline must be one of {', '.join(BASELINES)}; got {kind!r}")


def class_probabilities(model: nn.Module, images: torch.Tensor, class_idx: int, batch_size: int) -> np.ndarray:
    """p_c of every image, in forward passes of at most ``batch_size`` (no autograd)."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    out = []
    with eval_mode(model), torch.inference_mode():
        for first in range(0, images.shape[0], batch_size):
            logits = model(images[first:first + batch_size].to(device))
            out.append(torch.softmax(logits.float(), dim=1)[:, class_idx].cpu())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


class _Scorer:
    """Builds perturbed images lazily and scores them in batches: memory is one batch at a time."""

    def __init__(self, model: nn.Module, image: torch.Tensor, substrate: torch.Tensor, class_idx: int,
                 batch_size: int) -> None:
        self.model, self.image, self.substrate = model, image, substrate
        self.class_idx, self.batch_size = class_idx, batch_size

    def curves(self, rank: torch.Tensor, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Deletion and insertion curves of one ranking (each of len(counts))."""
        thresholds = torch.as_tensor(counts)
        deletion, insertion = [], []
        for first in range(0, len(counts), max(1, self.batch_size // 2)):
            chunk = thresholds[first:first + max(1, self.batch_size // 2)]
            changed = (rank.unsqueeze(0) < chunk.view(-1, 1, 1)).unsqueeze(1)  # (k, 1, H, W)
            deleted = torch.where(changed, self.substrate, self.image)
            inserted = torch.where(changed, self.image, self.substrate)
            scores = class_probabilities(self.model, torch.cat([deleted, inserted]), self.class_idx, self.batch_size)
            deletion.append(scores[: len(chunk)])
            insertion.append(scores[len(chunk):])
        return np.concatenate(deletion), np.concatenate(insertion)

    def blends(self, masks: torch.Tensor) -> np.ndarray:
        """p(s * x + (1 - s) * b) for soft masks s (k, H, W)."""
        images = masks.unsqueeze(1) * self.image + (1 - masks.unsqueeze(1)) * self.substrate
        return class_probabilities(self.model, images, self.class_idx, self.batch_size)

    def road(self, rank: torch.Tensor, percentages: tuple[int, ...], noise: float,
             generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """MoRF and LeRF probabilities after imputing the top / bottom p% of pixels."""
        n = rank.numel()
        morf, lerf = [], []
        for p in percentages:
            count = int(round(p / 100 * n))
            removed = torch.stack([rank < count, rank >= n - count])
            filled = noisy_linear_impute(self.image.unsqueeze(0).expand(2, -1, -1, -1), removed, noise, generator)
            scores = class_probabilities(self.model, filled, self.class_idx, self.batch_size)
            morf.append(scores[0])
            lerf.append(scores[1])
        return np.asarray(morf, dtype=np.float64), np.asarray(lerf, dtype=np.float64)


def evaluate_map(
    model: nn.Module,
    image: torch.Tensor,
    cam: torch.Tensor,
    class_idx: int,
    settings: FaithfulnessSettings = FaithfulnessSettings(),
    generator: torch.Generator | None = None,
    random_cam: torch.Tensor | None = None,
) -> ImageFaithfulness:
    """Every faithfulness score of one raw map ``cam`` (h, w) for one preprocessed ``image`` (3, H, W).

    ``generator`` seeds the tie-breaking, the random map and the ROAD noise (default:
    ``settings.seed``). ``random_cam`` replaces the drawn random map (tests use it).
    """
    if image.dim() != 3:
        raise FaithfulnessError(f"image must be 3 x H x W; got shape {tuple(image.shape)}")
    if generator is None:
        generator = torch.Generator().manual_seed(settings.seed)
    image = image.detach().float()
    height, width = image.shape[1:]
    raw = cam.detach().float().cpu()
    if random_cam is None:
        random_cam = torch.rand(raw.shape, generator=generator)
    masks = saliency(torch.stack([raw, random_cam.float().cpu()]), (height, width))
    ranks = {"map": ranking(masks[0], generator), "random": ranking(masks[1], generator)}
    scorer = _Scorer(model, image, baseline_image(image, settings.baseline), class_idx, settings.batch_size)
    probability = float(class_probabilities(model, image.unsqueeze(0), class_idx, 1)[0])

    counts = step_counts(height * width, settings.steps)
    deletion, insertion = {}, {}
    for kind, rank in ranks.items():
        deletion[kind], insertion[kind] = scorer.curves(rank, counts)
    deletion["inverted"] = insertion["map"][::-1].copy()
    insertion["inverted"] = deletion["map"][::-1].copy()

    explained = scorer.blends(torch.stack([masks[0], masks[1], 1.0 - masks[0]]))
    drops = {kind: max(0.0, probability - float(p)) / probability if probability > 0 else float("nan")
             for kind, p in zip(MAP_KINDS, explained, strict=True)}
    increases = {kind: bool(p > probability) for kind, p in zip(MAP_KINDS, explained, strict=True)}

    morf, lerf = scorer.road(ranks["map"], settings.road_percentages, settings.road_noise, generator)
    return ImageFaithfulness(
        class_idx=int(class_idx), probability=probability, deletion=deletion, insertion=insertion,
        average_drop=drops, increase=increases, road_morf=morf, road_lerf=lerf,
    )


def map_aucs(
    model: nn.Module,
    image: torch.Tensor,
    cam: torch.Tensor,
    class_idx: int,
    steps: int = 10,
    baseline: str = "blur",
    seed: int = 0,
) -> tuple[float, float]:
    """Deletion and insertion AUC of one map alone (no floor, no ROAD): 2 (steps + 1) forward passes.

    What the Compare page adds to each map's numbers; same definitions as :func:`evaluate_map`.
    """
    settings = FaithfulnessSettings(steps=steps, baseline=baseline, road_percentages=(), seed=seed)
    image = image.detach().float()
    generator = torch.Generator().manual_seed(seed)
    rank = ranking(saliency(cam.detach().float().cpu(), tuple(image.shape[1:]))[0], generator)
    scorer = _Scorer(model, image, baseline_image(image, baseline), class_idx, settings.batch_size)
    deletion, insertion = scorer.curves(rank, step_counts(rank.numel(), steps))
    return curve_auc(deletion), curve_auc(insertion)
