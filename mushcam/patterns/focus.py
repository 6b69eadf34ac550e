"""Focus on the object: the energy-based pointing game and the pointing game, with intervals.

For one photo with an object box ``B`` and a map upsampled onto the photo (``heat``, NaN
where the network did not look: outside the centre crop)::

    energy   = sum_{p in B} heat+(p) / sum_p heat+(p)      (Wang et al. 2020, Score-CAM)
    pointing = 1 if argmax_p heat(p) lies in B else 0       (Zhang et al. 2016)
    uniform  = |B ∩ seen| / |seen|                          (what a flat map gets: box area / image area
                                                             when the network sees the whole photo)

Over a test set each is averaged, with a bootstrap 95 % interval (2,000 resamples of the
photos, percentile method, fixed seed). An all-zero map scores 0 on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mushcam.data import crop_box
from mushcam.manifest import InputSpec
from mushcam.render import upsample_cam

BOOTSTRAP = 2000
MAX_SIDE = 256  # the map is upsampled onto the photo scaled to this long side (the box with it)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels


@dataclass(frozen=True)
class PhotoFocus:
    energy: float
    pointing: float
    uniform: float


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap 95 % interval."""

    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class FocusSummary:
    """One model x method over the photos that have a region."""

    n_photos: int
    energy: Interval
    pointing: Interval
    uniform: float

    def to_dict(self) -> dict[str, object]:
        return {"n_photos": self.n_photos, "energy": self.energy.to_dict(), "pointing": self.pointing.to_dict(),
                "uniform": self.uniform}


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """Boolean H x W mask of the pixels whose centres lie in ``box`` (x0 <= x + 0.5 < x1)."""
    height, width = shape
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    x0, y0, x1, y1 = box
    return ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]


def focus_of_heat(heat: np.ndarray, box: Box) -> PhotoFocus:
    """The three numbers for a heat map already on the photo's pixel grid (NaN = not seen)."""
    seen = np.isfinite(heat)
    inside = box_mask(heat.shape, box)
    positive = np.where(seen, np.clip(heat, 0.0, None), 0.0)
    total = float(positive.sum())
    uniform = float((inside & seen).sum() / max(int(seen.sum()), 1))
    if total <= 0:
        return PhotoFocus(0.0, 0.0, uniform)
    energy = float(positive[inside].sum() / total)
    peak = np.unravel_index(int(np.argmax(np.where(seen, heat, -np.inf))), heat.shape)
    return PhotoFocus(energy, float(inside[peak]), uniform)


def focus_of_map(cam: np.ndarray, image_size: tuple[int, int], spec: InputSpec, box: Box) -> PhotoFocus:
    """The numbers for a raw map on a photo of ``image_size`` (width, height) seen through ``spec``."""
    width, height = image_size
    factor = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    heat = upsample_cam(cam, size, crop_box(size, spec))
    fx, fy = size[0] / width, size[1] / height
    return focus_of_heat(heat, (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy))


def bootstrap_interval(values: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP) -> Interval:
    """Mean of ``values`` and its percentile bootstrap 95 % interval (NaNs for no values)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(data.mean()), float(low), float(high))


def summarise_focus(photos: Sequence[PhotoFocus], seed: int = 0) -> FocusSummary:
    """Means and intervals over photos."""
    return FocusSummary(
        len(photos),
        bootstrap_interval([p.energy for p in photos], seed),
        bootstrap_interval([p.pointing for p in photos], seed + 1),
        float(np.mean([p.uniform for p in photos])) if photos else float("nan"),
    )
