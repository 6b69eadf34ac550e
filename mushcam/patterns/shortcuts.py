"""Shortcut flags: a cluster whose maps put most of their mass where a shortcut lives.

Every map is resized to a ``GRID x GRID`` frame (the network's input: the crop it saw) and
divided by its own sum, so it is a distribution of mass; a cluster's measures are taken on
the mean of its members' distributions. Three flags, each with the reason in words:

- **border / corner**: the mass in a border band (the outer ``BAND`` = 12 % of the frame on
  one side) or a corner square (the outer ``CORNER`` = 25 % x 25 %) is at least
  ``MASS_THRESHOLD`` = 50 %. A uniform map would put 12 % in a band and 6.25 % in a corner.
- **outside the object** (when object regions are known for at least half the members): the
  mean share of mass inside the object is at most half of what a uniform map would get (the
  object's share of the frame): the maps look away from the object, not merely at chance.
- **same location**: every member puts most of its mass on the same small place, the
  hottest ``SPOT`` = 10 % of the mean map's cells: the mean over members of their mass
  there is at least ``SAME_THRESHOLD`` = 60 %, while a uniform map would put 10 % there.
  Objects photographed at different places cannot do that; a watermark or a ruler can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

GRID = 64
BAND = 0.12
CORNER = 0.25
MASS_THRESHOLD = 0.5
SPOT = 0.10
SAME_THRESHOLD = 0.6
OUTSIDE_FACTOR = 0.5  # outside-object flag: at most half of what a flat map puts on the object
MIN_MEMBERS = 3  # a flag needs at least this many photos (one photo is not a strategy)


@dataclass(frozen=True)
class Flag:
    """``kind``: "border", "corner", "outside_object" or "same_location"; ``value``: the share
    measured; ``reason``: the sentence shown."""

    kind: str
    value: float
    reason: str


def mass_distribution(cam: np.ndarray, grid: int = GRID) -> np.ndarray:
    """The map on a ``grid x grid`` frame, divided by its sum (zeros for an all-zero map)."""
    resized = cv2.resize(np.asarray(cam, dtype=np.float32), (grid, grid), interpolation=cv2.INTER_LINEAR)
    resized = np.clip(resized.astype(np.float64), 0.0, None)
    total = resized.sum()
    return resized / total if total > 0 else resized


def region_masses(mean: np.ndarray) -> dict[str, float]:
    """Mass of a distribution in each border band and corner square, by name."""
    g = mean.shape[0]
    b, c = max(1, round(BAND * g)), max(1, round(CORNER * g))
    return {
        "top": float(mean[:b].sum()), "bottom": float(mean[-b:].sum()),
        "left": float(mean[:, :b].sum()), "right": float(mean[:, -b:].sum()),
        "top-left": float(mean[:c, :c].sum()), "top-right": float(mean[:c, -c:].sum()),
        "bottom-left": float(mean[-c:, :c].sum()), "bottom-right": float(mean[-c:, -c:].sum()),
    }


def same_location_share(distributions: np.ndarray) -> float:
    """Mean over members of their mass on the hottest ``SPOT`` of the cells of the mean map."""
    mean = distributions.mean(axis=0).ravel()
    count = max(1, int(round(SPOT * mean.size)))
    spot = np.argsort(mean)[::-1][:count]
    return float(distributions.reshape(len(distributions), -1)[:, spot].sum(axis=1).mean())


def called_phrase(predicted: Sequence[str]) -> str:
    """'9 of its 11 photos are called Gyromitra' (the most common prediction)."""
    names, counts = np.unique(np.asarray(predicted, dtype=object), return_counts=True)
    top = int(np.argmax(counts))
    return f"{int(counts[top])} of its {len(predicted)} photos are called {names[top]}"


def cluster_flags(
    distributions: np.ndarray,
    predicted: Sequence[str],
    inside_object: Sequence[float | None] = (),
    object_share: Sequence[float | None] = (),
) -> list[Flag]:
    """The flags of one cluster: ``distributions`` (m x GRID x GRID, each summing to 1),
    the members' predicted class names and, when known, each member's mass inside its object
    and the object's share of the frame (None: no region for that photo)."""
    if len(distributions) < MIN_MEMBERS:
        return []
    mean = distributions.mean(axis=0)
    called = called_phrase(predicted)
    flags = _frame_flags(mean, called)
    same = same_location_share(distributions)
    if same >= SAME_THRESHOLD:
        flags.append(Flag("same_location", same, f"{same:.0%} of each map's mass lies on the same {SPOT:.0%} of the "
                          f"frame in every photo (a uniform map: {SPOT:.0%}); {called}"))
    known = [(m, s) for m, s in zip(inside_object, object_share, strict=True) if m is not None and s is not None]
    if known and len(known) * 2 >= len(distributions):
        inside = float(np.mean([m for m, _ in known]))
        uniform = float(np.mean([s for _, s in known]))
        if inside <= OUTSIDE_FACTOR * uniform:
            flags.append(Flag("outside_object", 1.0 - inside,
                              f"{1 - inside:.0%} of this cluster's map mass lies outside the object (a uniform map: "
                              f"{1 - uniform:.0%}), on {len(known)} photos with a region; {called}"))
    return flags


def _frame_flags(mean: np.ndarray, called: str) -> list[Flag]:
    masses = region_masses(mean)
    corners = {k: v for k, v in masses.items() if "-" in k}
    bands = {k: v for k, v in masses.items() if "-" not in k}
    flags = []
    corner, corner_mass = max(corners.items(), key=lambda item: item[1])
    if corner_mass >= MASS_THRESHOLD:
        flags.append(Flag("corner", corner_mass, f"{corner_mass:.0%} of this cluster's map mass lies in the {corner} "
                          f"corner ({CORNER:.0%} x {CORNER:.0%} of the frame); {called}"))
    band, band_mass = max(bands.items(), key=lambda item: item[1])
    if band_mass >= MASS_THRESHOLD:
        flags.append(Flag("border", band_mass, f"{band_mass:.0%} of this cluster's map mass lies in the {band} "
                          f"{BAND:.0%} of the frame; {called}"))
    return flags
