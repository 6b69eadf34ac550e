"""Agreement and focus measures on maps whose answers are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mushcam.metrics.agreement import (
    Focus,
    average_ranks,
    focus,
    half_mass_area,
    normalised_entropy,
    pairwise_agreement,
    spearman,
    summarise,
    top_region,
    top_region_iou,
)

N = 10  # maps are N x N: 100 pixels, top-20% region = 20 pixels


def ramp() -> np.ndarray:
    """Every pixel a different value: 0, 1, ..., 99 in raster order."""
    return np.arange(N * N, dtype=np.float64).reshape(N, N)


def columns(first: int, last: int, value: float = 1.0) -> np.ndarray:
    heat = np.zeros((N, N))
    heat[:, first : last + 1] = value
    return heat


def hot_pixel(row: int, col: int, value: float = 3.0) -> np.ndarray:
    heat = np.zeros((N, N))
    heat[row, col] = value
    return heat


# --- identical maps -------------------------------------------------------------------

def test_identical_maps_agree_fully() -> None:
    a = ramp()
    assert top_region_iou(a, a.copy()) == 1.0
    assert spearman(a, a.copy()) == pytest.approx(1.0, abs=1e-12)


def test_measures_ignore_scale() -> None:
    """Per-image or shared normalisation cannot change a number: every measure is scale-free."""
    a = ramp() ** 2
    b = np.flipud(ramp())
    assert top_region_iou(a, b) == top_region_iou(a * 1e-15, b * 7.0)
    assert spearman(a, b) == pytest.approx(spearman(a * 1e-15, b * 7.0), abs=1e-12)
    assert focus(a) == pytest.approx(focus(a * 1e-15))


def test_reversed_ramp_is_perfectly_anticorrelated() -> None:
    a = ramp()
    b = a.max() - a
    assert spearman(a, b) == pytest.approx(-1.0, abs=1e-12)
    # top 20 of a are pixels 80..99, top 20 of b (positive only) are 0..19: no overlap
    assert top_region_iou(a, b) == 0.0


# --- disjoint maps --------------------------------------------------------------------

def test_disjoint_maps() -> None:
    a = columns(0, 1)  # 20 hot pixels on the left
    b = columns(8, 9)  # 20 hot pixels on the right
    assert top_region_iou(a, b) == 0.0
    # Two disjoint indicators with share 0.2 each: r = (0 - 0.04) / 0.16 = -0.25 exactly.
    assert spearman(a, b) == pytest.approx(-0.25, abs=1e-12)


def test_half_overlapping_regions() -> None:
    a = columns(0, 1)
    b = columns(1, 2)  # shares column 1: 10 of 30 pixels
    assert top_region_iou(a, b) == pytest.approx(10 / 30)


# --- a single hot pixel ---------------------------------------------------------------

def test_single_hot_pixel_focus() -> None:
    heat = hot_pixel(4, 6)
    assert half_mass_area(heat) == 1 / 100
    assert normalised_entropy(heat) == 0.0
    mask = top_region(heat)
    assert mask is not None and mask.sum() == 1 and mask[4, 6]  # zeros never join the region


def test_single_hot_pixels_agreement() -> None:
    same = top_region_iou(hot_pixel(2, 3), hot_pixel(2, 3, value=0.5))
    apart = top_region_iou(hot_pixel(2, 3), hot_pixel(7, 7))
    assert same == 1.0
    assert apart == 0.0
    # Two indicators of share 1/n on different pixels: r = -1 / (n - 1).
    assert spearman(hot_pixel(2, 3), hot_pixel(7, 7)) == pytest.approx(-1 / 99, abs=1e-12)


# --- uniform and all-zero maps --------------------------------------------------------

def test_uniform_map() -> None:
    uniform = np.full((N, N), 0.25)
    assert half_mass_area(uniform) == 0.5
    assert normalised_entropy(uniform) == pytest.approx(1.0, abs=1e-12)
    assert top_region(uniform) is None
    assert math.isnan(top_region_iou(uniform, ramp()))
    assert math.isnan(spearman(uniform, ramp()))
    odd = np.ones((3, 3))
    assert half_mass_area(odd) == 5 / 9  # ceil(n/2)/n for odd n


def test_all_zero_map() -> None:
    zero = np.zeros((N, N))
    assert math.isnan(half_mass_area(zero))
    assert math.isnan(normalised_entropy(zero))
    assert math.isnan(top_region_iou(zero, ramp()))
    assert math.isnan(spearman(ramp(), zero))
    assert math.isnan(normalised_entropy(np.ones((1, 1))))
    assert half_mass_area(np.ones((1, 1))) == 1.0


# --- exact counts, ties, unseen pixels --------------------------------------------------

def test_top_region_has_exact_pixel_count_with_raster_order_ties() -> None:
    heat = np.zeros((N, N))
    heat[:5, :] = 1.0  # 50 tied pixels, region takes 20: the first two rows
    mask = top_region(heat)
    assert mask is not None
    assert mask.sum() == 20
    assert mask[:2, :].all() and not mask[2:, :].any()
    assert top_region(heat, fraction=0.05).sum() == 5


def test_fewer_positive_pixels_than_the_region() -> None:
    heat = np.zeros((N, N))
    heat[0, :7] = np.arange(1, 8)
    mask = top_region(heat)
    assert mask is not None and mask.sum() == 7


def test_nan_pixels_are_left_out() -> None:
    heat = np.full((N, N), np.nan)
    heat[:, 2:8] = 0.0
    heat[5, 5] = 1.0  # one hot pixel among 60 seen
    assert half_mass_area(heat) == pytest.approx(1 / 60)
    assert normalised_entropy(heat) == 0.0
    spread = np.where(np.isnan(heat), np.nan, 1.0)
    assert normalised_entropy(spread) == pytest.approx(1.0)
    assert half_mass_area(spread) == 0.5
    other = np.where(np.isnan(heat), np.nan, 0.0)
    other[5, 5] = 2.0
    assert top_region_iou(heat, other) == 1.0


def test_average_ranks_share_ties() -> None:
    assert average_ranks(np.array([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_entropy_of_two_equal_pixels() -> None:
    heat = np.zeros((2, 2))
    heat[0, 0] = heat[1, 1] = 1.0
    # H = log 2, n = 4: H / log n = 0.5
    assert normalised_entropy(heat) == pytest.approx(0.5, abs=1e-12)
    assert half_mass_area(heat) == 0.25


def test_bad_maps_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="negative"):
        focus(-np.ones((3, 3)))
    with pytest.raises(ValueError, match="same grid"):
        spearman(np.ones((3, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="2-D"):
        focus(np.ones(5))
    with pytest.raises(ValueError, match="fraction"):
        top_region(ramp(), fraction=0.0)


def test_pairwise_and_summary() -> None:
    maps = {"a": columns(0, 1), "b": columns(8, 9), "c": columns(0, 1, value=5.0)}
    pairs = pairwise_agreement(maps)
    assert [(p.first, p.second) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [p.iou for p in pairs] == [0.0, 1.0, 0.0]
    summary = summarise([p.iou for p in pairs] + [math.nan])
    assert summary.mean == pytest.approx(1 / 3)
    assert summary.median == 0.0
    assert (summary.n, summary.undefined) == (3, 1)
    empty = summarise([math.nan])
    assert math.isnan(empty.mean) and empty.n == 0 and empty.undefined == 1
    assert focus(hot_pixel(0, 0)) == Focus(0.01, 0.0)


def _pairs_one_by_one(maps: dict[str, np.ndarray]) -> list[tuple[float, float]]:
    names = list(maps)
    return [(top_region_iou(maps[a], maps[b]), spearman(maps[a], maps[b]))
            for i, a in enumerate(names) for b in names[i + 1:]]


def _same(got: list[tuple[float, float]], want: list[tuple[float, float]]) -> bool:
    """Equal bit for bit, NaN where NaN."""
    return all((x == y) or (math.isnan(x) and math.isnan(y)) for g, w in zip(got, want, strict=True)
               for x, y in zip(g, w, strict=True))


def test_pairwise_agreement_prepared_once_equals_each_pair_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    maps = {
        "smooth": rng.random((17, 23)),
        "ties": np.round(rng.random((17, 23)) * 4),  # many tied values: average ranks, raster-order cut
        "sparse": np.where(rng.random((17, 23)) > 0.9, rng.random((17, 23)), 0.0),  # fewer positives than k
        "flat": np.full((17, 23), 0.3),
        "zero": np.zeros((17, 23)),
        "hot": np.pad(np.ones((1, 1)), ((4, 12), (5, 17))),  # one hot pixel
    }
    got = [(p.iou, p.spearman) for p in pairwise_agreement(maps)]
    want = _pairs_one_by_one(maps)
    assert len(got) == 15 and _same(got, want)
    assert sum(math.isnan(iou) for iou, _ in got) == 9  # every pair with the flat or the zero map
    # the same pixels unseen in every map (a centre crop's NaN border): still the shortcut, same numbers
    cropped = {name: np.where(np.arange(23)[None, :] < 3, np.nan, heat) for name, heat in maps.items()}
    assert _same([(p.iou, p.spearman) for p in pairwise_agreement(cropped)], _pairs_one_by_one(cropped))


def test_pairwise_agreement_with_different_unseen_pixels_compares_each_pair_on_its_common_pixels() -> None:
    rng = np.random.default_rng(4)
    a, b, c = rng.random((9, 9)), rng.random((9, 9)), rng.random((9, 9))
    b[0, :] = np.nan  # b did not see its first row: a-b and b-c are compared without it, a-c with it
    maps = {"a": a, "b": b, "c": c}
    assert _same([(p.iou, p.spearman) for p in pairwise_agreement(maps)], _pairs_one_by_one(maps))
    with pytest.raises(ValueError, match="negative"):
        pairwise_agreement({"a": a, "bad": -c})
