"""The flat-map rule, the colour bar and the caption written from the colormap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mushcam.map_scale import FLAT_RANGE, colorbar, colormap_caption, map_range, with_colorbar
from mushcam.render import colormap_lut


def test_the_issue_s_flat_map_is_flat_and_a_focused_map_is_not():
    flat = torch.tensor([[0.0257, 0.03], [0.0334, 0.028]])
    r = map_range(flat)
    assert r.low == pytest.approx(0.0257) and r.high == pytest.approx(0.0334)
    assert r.relative_range == pytest.approx((0.0334 - 0.0257) / 0.0334)
    assert r.flat and "flat: this map does not single out a region" in r.warning
    assert "77%" in r.warning  # the weakest point holds 77 % of the strongest
    focused = torch.tensor([[0.0, 0.1], [0.9, 0.2]])
    assert not map_range(focused).flat and map_range(focused).warning is None


def test_the_threshold_is_the_stated_one_and_tiny_magnitudes_do_not_matter():
    # relative range just above / below FLAT_RANGE, at a magnitude of 1e-15 (random EfficientNet)
    above = torch.tensor([1.0 - FLAT_RANGE - 0.01, 1.0]) * 1e-15
    below = torch.tensor([1.0 - FLAT_RANGE + 0.01, 1.0]) * 1e-15
    assert not map_range(above).flat
    assert map_range(below).flat


def test_an_all_zero_map_is_empty_and_nan_is_ignored():
    assert map_range(np.zeros((3, 3))).empty
    assert "empty" in map_range(np.zeros((3, 3))).warning
    seen = np.array([[np.nan, 0.0], [1.0, np.nan]], dtype=np.float32)
    assert map_range(seen).low == 0.0 and map_range(seen).high == 1.0


def test_colorbar_follows_the_colormap_and_has_the_view_s_height():
    view = np.zeros((300, 300, 3), dtype=np.uint8)
    for name in ("jet", "viridis"):
        lut = colormap_lut(name)
        out = with_colorbar(view, lut, 0.034, "Score-CAM")
        assert out.shape[0] == 300 and out.shape[1] > 300
        bar = out[:, 300:]
        # the top colour of the strip is the LUT's last entry, the bottom its first
        colours = {tuple(c) for c in bar.reshape(-1, 3)}
        assert tuple(lut[255]) in colours and tuple(lut[0]) in colours
    jet_bar = colorbar(colormap_lut("jet"), 200, 1.0, "Grad-CAM")
    viridis_bar = colorbar(colormap_lut("viridis"), 200, 1.0, "Grad-CAM")
    assert not np.array_equal(jet_bar, viridis_bar)


def test_caption_names_the_colours_of_the_chosen_colormap():
    assert colormap_caption("jet").startswith("Dark red: regions")
    viridis = colormap_caption("viridis")
    assert viridis.startswith("Yellow:") and "dark purple: little or none" in viridis
    assert "Red" not in viridis and "blue" not in viridis


def test_a_tiny_view_is_enlarged_by_a_whole_factor_before_its_bar_is_drawn():
    tiny = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    out = with_colorbar(tiny, colormap_lut("jet"), 1.0, "Grad-CAM")
    assert out.shape[0] == 240  # 4 x 60
    assert np.array_equal(out[::4, :320:4], tiny)  # nearest neighbour: no new detail


def test_a_colour_bar_is_drawn_once_per_colormap_and_scale_and_cannot_be_changed_by_a_caller() -> None:
    from mushcam.map_scale import _colorbar
    from mushcam.render import colormap_lut

    _colorbar.cache_clear()
    lut = colormap_lut("viridis").copy()
    first = colorbar(lut, 240, 0.5, "Grad-CAM")
    again = colorbar(lut, 240, 0.5, "Grad-CAM")
    assert again is first and _colorbar.cache_info().hits == 1  # an alpha move: the same bar, not redrawn
    with pytest.raises(ValueError):
        first[0, 0] = 0  # read-only: a caller cannot spoil the kept bar
    lut[-1] = (255, 0, 255)  # a changed LUT is another bar, keyed by its bytes
    other = colorbar(lut, 240, 0.5, "Grad-CAM")
    assert other is not first and not np.array_equal(other, first)
    assert colorbar(colormap_lut("viridis"), 240, 0.25, "Grad-CAM") is not first  # another scale
