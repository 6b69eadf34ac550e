"""How much two CAM maps agree, and how concentrated one map is: pure functions on maps.

A map is a 2-D array of non-negative values (any scale: every measure here is unchanged
when a map is multiplied by a positive number, so per-image or shared normalisation gives
the same numbers). NaN marks a pixel the network did not see (outside a centre crop); it
is left out. Two maps compared must be on the same grid (upsample them first).

Agreement of two maps a, b:

- ``top_region_iou``: IoU = |A ∩ B| / |A ∪ B| of their top regions, where the top region
  of a map is its k = max(1, round(fraction * n)) highest pixels (n = pixels seen;
  fraction = 0.2 by default), ties at the cut broken by raster order (row-major, first
  wins), and zero-valued pixels never included (a map with fewer than k positive pixels
  has just those as its region).
- ``spearman``: Spearman's rank correlation, i.e. Pearson's r of the two maps' ranks
  (tied values share their average rank).

Focus of one map, with p = map / sum(map):

- ``half_mass_area``: the smallest share of the seen area that holds half of the map's
  mass (sort p descending; k = the fewest pixels whose p sums to >= 0.5; result k / n).
  One hot pixel: 1/n; a uniform map: ceil(n/2)/n (0.5 for even n). Smaller = more focused.
- ``normalised_entropy``: H(p) / log(n) with H(p) = -sum p log p (0 log 0 = 0). One hot
  pixel: 0; a uniform map: 1. Larger = more diffuse.

Degenerate cases, defined explicitly (NaN means "undefined", never a silent 0):

- An all-zero map has no mass: both focus measures are NaN, and so are its IoU and
  Spearman with any map.
- A flat map (every seen pixel equal, e.g. uniform) has no top region (IoU NaN) and no
  ranking (Spearman NaN); its focus is defined: half-mass area 0.5 (even n), entropy 1.
- A map of one pixel has entropy NaN (log 1 = 0); its half-mass area is 1.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

TOP_FRACTION = 0.2
HALF = 0.5


def _as_map(heat: np.ndarray | Iterable[float], name: str = "map") -> np.ndarray:
    """A float64 2-D copy of ``heat``; refuses negative or infinite values."""
    values = np.asarray(heat, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map, got shape {values.shape}")
    if np.isinf(values).any():
        raise ValueError(f"{name} holds infinite values")
    if (values < 0).any():
        raise ValueError(f"{name} holds negative values; Grad-CAM maps are non-negative (ReLU)")
    return values


def _seen_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both maps' values on the pixels seen in both, and that mask."""
    a = _as_map(a, "first map")
    b = _as_map(b, "second map")
    if a.shape != b.shape:
        raise ValueError(f"maps must be on the same grid to be compared: {a.shape} vs {b.shape}")
    seen = np.isfinite(a) & np.isfinite(b)
    return a[seen], b[seen], seen


def _is_flat(values: np.ndarray) -> bool:
    return values.size == 0 or float(values.max()) == float(values.min())


def top_region(heat: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray | None:
    """Boolean mask of the map's top ``fraction`` of seen pixels (see module doc); None if flat.

    Exactly k = max(1, round(fraction * n)) pixels unless fewer are positive; ties at the
    cut are broken by raster order, so the result is deterministic.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    values = _as_map(heat)
    seen = np.isfinite(values)
    flat_seen = values[seen]
    if _is_flat(flat_seen):
        return None
    k = max(1, int(round(fraction * flat_seen.size)))
    # Stable sort of -value: highest first, equal values keep raster order.
    order = np.argsort(-flat_seen, kind="stable")[:k]
    order = order[flat_seen[order] > 0]
    chosen = np.zeros(flat_seen.size, dtype=bool)
    chosen[order] = True
    mask = np.zeros(values.shape, dtype=bool)
    mask[seen] = chosen
    return mask


def top_region_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the two maps' top regions, on pixels seen in both; NaN if either map is flat."""
    va, vb, seen = _seen_pair(a, b)
    if _is_flat(va) or _is_flat(vb):
        return math.nan
    # Compare on the common seen pixels only (as 1-row maps: raster order is preserved).
    ra = top_region(va[None, :], fraction)
    rb = top_region(vb[None, :], fraction)
    assert ra is not None and rb is not None
    union = int((ra | rb).sum())
    return float((ra & rb).sum()) / union


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a flat array; tied values share their average rank."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], flat.size]
    mean_rank = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (pixels seen in both); NaN if either is flat."""
    va, vb, _ = _seen_pair(a, b)
    if _is_flat(va) or _is_flat(vb):
        return math.nan
    ra = average_ranks(va)
    rb = average_ranks(vb)
    ra -= ra.mean()
    rb -= rb.mean()
    r = float((ra * rb).sum() / math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum())))
    return max(-1.0, min(1.0, r))


def half_mass_area(heat: np.ndarray, mass: float = HALF) -> float:
    """Smallest share of the seen area holding ``mass`` of the map's total; NaN for an all-zero map."""
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    values = _as_map(heat)
    values = values[np.isfinite(values)]
    total = float(values.sum())
    if values.size == 0 or total <= 0.0:
        return math.nan
    cumulative = np.cumsum(np.sort(values)[::-1])
    # A relative tolerance keeps float round-off from adding one pixel (uniform maps).
    k = int(np.searchsorted(cumulative, mass * total * (1.0 - 1e-12), side="left")) + 1
    return min(k, values.size) / values.size


def normalised_entropy(heat: np.ndarray) -> float:
    """H(p) / log(n) of p = map / sum(map); 0 = one hot pixel, 1 = uniform; NaN if undefined."""
    values = _as_map(heat)
    values = values[np.isfinite(values)]
    total = float(values.sum())
    if values.size < 2 or total <= 0.0:
        return math.nan
    p = values[values > 0] / total
    entropy = float(-(p * np.log(p)).sum())
    return max(0.0, min(1.0, entropy / math.log(values.size)))


@dataclass(frozen=True)
class Focus:
    """How concentrated one map is: half-mass area share (smaller = focused), entropy (0..1)."""

    half_mass_area: float
    entropy: float


def focus(heat: np.ndarray) -> Focus:
    """Both focus measures of one map."""
    return Focus(half_mass_area(heat), normalised_entropy(heat))


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two models' maps of one image."""

    first: str
    second: str
    iou: float
    spearman: float

    @property
    def label(self) -> str:
        return f"{self.first} vs {self.second}"


@dataclass(frozen=True, eq=False)
class PreparedMap:
    """What the pairwise measures need from one map, computed once (:func:`prepare_map`).

    ``region``: its top region over the seen pixels (None if flat); ``centred_ranks``: its
    average ranks minus their mean, float32 (exact: they are multiples of 0.5 below 2**23);
    ``seen``: a digest of the seen-pixel mask, so two prepared maps are known to be compared
    on the same pixels.
    """

    shape: tuple[int, ...]
    seen: bytes
    region: np.ndarray | None
    centred_ranks: np.ndarray | None
    rank_norm: float  # sum of the centred ranks squared (float64)


def prepare_map(heat: np.ndarray, fraction: float = TOP_FRACTION) -> PreparedMap:
    """One map's top region and centred ranks (what :func:`top_region_iou` and :func:`spearman`
    compute for each side of every pair): n maps cost n sorts, not n(n-1)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    values = _as_map(heat)
    mask = np.isfinite(values)
    seen = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
    flat_seen = values[mask]
    if _is_flat(flat_seen):
        return PreparedMap(values.shape, seen, None, None, math.nan)
    ranks = average_ranks(flat_seen)
    ranks -= ranks.mean()
    region, centred = top_region(flat_seen[None, :], fraction), ranks.astype(np.float32)
    region.flags.writeable = centred.flags.writeable = False  # a prepared map may be shared (a memo)
    return PreparedMap(values.shape, seen, region, centred, float((ranks * ranks).sum()))


def prepared_agreement(a: PreparedMap, b: PreparedMap) -> tuple[float, float] | None:
    """IoU and Spearman of two prepared maps, the same bit for bit as the two-map functions;
    None when they do not see the same pixels (compare the maps themselves then)."""
    if a.shape != b.shape or a.seen != b.seen:
        return None
    if a.region is None or b.region is None or a.centred_ranks is None or b.centred_ranks is None:
        return math.nan, math.nan
    iou = float((a.region & b.region).sum()) / int((a.region | b.region).sum())
    ra, rb = a.centred_ranks.astype(np.float64), b.centred_ranks.astype(np.float64)
    r = float((ra * rb).sum() / math.sqrt(a.rank_norm * b.rank_norm))
    return iou, max(-1.0, min(1.0, r))


def pairwise_prepared(prepared: Mapping[str, PreparedMap]) -> list[PairAgreement] | None:
    """Every pair's agreement from prepared maps, in the mapping's order; None unless all of
    them see the same pixels (then compare the maps with :func:`pairwise_agreement`)."""
    if len({(p.shape, p.seen) for p in prepared.values()}) > 1:
        return None
    pairs = []
    for a, b in itertools.combinations(list(prepared), 2):
        values = prepared_agreement(prepared[a], prepared[b])
        assert values is not None  # same shape and seen pixels, checked above
        pairs.append(PairAgreement(a, b, *values))
    return pairs


def pairwise_agreement(maps: Mapping[str, np.ndarray], fraction: float = TOP_FRACTION) -> list[PairAgreement]:
    """Top-region IoU and Spearman for every pair of maps, in the mapping's order.

    Each map is prepared once (:func:`prepare_map`); a pair whose maps do not see the same
    pixels is compared on the pixels both see, with :func:`top_region_iou` and :func:`spearman`.
    """
    names = list(maps)
    ready = {name: prepare_map(maps[name], fraction) for name in names}
    pairs = []
    for a, b in itertools.combinations(names, 2):
        values = prepared_agreement(ready[a], ready[b])
        if values is None:
            values = top_region_iou(maps[a], maps[b], fraction), spearman(maps[a], maps[b])
        pairs.append(PairAgreement(a, b, *values))
    return pairs


@dataclass(frozen=True)
class Summary:
    """Mean and median over the defined (non-NaN) values; ``n`` counts them, ``undefined`` the rest."""

    mean: float
    median: float
    n: int
    undefined: int


def summarise(values: Iterable[float]) -> Summary:
    """Summary of a measure over a sample, leaving undefined (NaN) values out and counting them."""
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    defined = array[np.isfinite(array)]
    if defined.size == 0:
        return Summary(math.nan, math.nan, 0, int(array.size))
    return Summary(float(defined.mean()), float(np.median(defined)), int(defined.size), int(array.size - defined.size))
