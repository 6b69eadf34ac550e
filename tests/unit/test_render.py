"""Rendering: colormap tables, upsampling and normalisation, blending, the four views."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mushcam.render import (
    COLORMAPS,
    blend,
    cam_scale,
    colorize,
    colormap_lut,
    render_views,
    to_jpeg,
    to_png,
    upsample_cam,
)


@pytest.mark.parametrize("name", ["jet", "viridis", "hot", "inferno", "magma", "plasma", "turbo"])
def test_colormap_tables_have_256_entries(name):
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert name in COLORMAPS


def test_jet_runs_from_blue_to_red_and_unknown_names_fail():
    lut = colormap_lut("jet")
    assert lut[0].tolist() == [0, 0, 128] and lut[255].tolist() == [128, 0, 0]
    with pytest.raises(ValueError, match="unknown colormap 'rainbowish'"):
        colormap_lut("rainbowish")


def test_tiny_maps_are_normalised_by_their_own_scale():
    cam = torch.tensor([[0.0, 1e-15], [5e-16, 0.0]])
    heat = upsample_cam(cam, (2, 2))
    np.testing.assert_allclose(heat, [[0.0, 1.0], [0.5, 0.0]], rtol=1e-6)
    assert np.all(upsample_cam(torch.zeros(3, 3), (5, 4)) == 0)


def test_shared_scale_keeps_relative_intensity():
    weak, strong = torch.full((2, 2), 0.2), torch.full((2, 2), 1.0)
    scale = cam_scale(torch.stack([weak, strong]))
    assert scale == pytest.approx(1.0)
    assert upsample_cam(weak, (4, 4), scale=scale).max() == pytest.approx(0.2)
    assert upsample_cam(weak, (4, 4)).max() == pytest.approx(1.0)


def test_upsampling_keeps_the_hot_spot_in_place():
    cam = torch.zeros(7, 7)
    cam[1, 5] = 1.0  # top right
    heat = upsample_cam(cam, (700, 350))
    assert heat.shape == (350, 700)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert 500 <= x <= 600 and 25 <= y <= 75


def test_center_crop_maps_onto_the_cropped_region_only():
    heat = upsample_cam(torch.ones(2, 2), (30, 10), box=(10, 0, 20, 10))
    assert np.isnan(heat[:, :10]).all() and np.isnan(heat[:, 20:]).all()
    np.testing.assert_allclose(heat[:, 10:20], 1.0, rtol=1e-6)
    rgb = colorize(heat, "jet")
    assert (rgb[:, :10] == 128).all()  # grey where the network saw nothing
    image = np.full((10, 30, 3), 7, np.uint8)
    out = blend(image, rgb, 0.5, heat)
    assert (out[:, :10] == 7).all() and not (out[:, 10:20] == 7).all()


def test_blend_endpoints_and_bounds():
    image = np.full((2, 2, 3), 100, np.uint8)
    heat = np.full((2, 2, 3), 200, np.uint8)
    assert (blend(image, heat, 0.0) == 100).all()
    assert (blend(image, heat, 1.0) == 200).all()
    assert (blend(image, heat, 0.45) == 145).all()
    with pytest.raises(ValueError, match="alpha"):
        blend(image, heat, 1.5)


def test_four_views_at_the_image_size_and_png_export():
    image = Image.new("RGB", (120, 80), (10, 120, 10))
    heat = upsample_cam(torch.rand(7, 7), image.size)
    views = render_views(image, heat, alpha=0.45, colormap="viridis", title="ResNet-50: predicted Amanita (91.2%)")
    assert views.original.shape == views.heatmap.shape == views.overlay.shape == (80, 120, 3)
    assert views.combined.shape[1] > 3 * 120 and views.combined.shape[0] > 80
    assert list(views.as_dict()) == ["Original", "Heatmap", "Overlay", "Combined"]
    decoded = Image.open(io.BytesIO(to_png(views.combined)))
    assert decoded.format == "PNG" and decoded.size == (views.combined.shape[1], views.combined.shape[0])
    changed = render_views(image, heat, alpha=0.9, colormap="viridis")
    assert not np.array_equal(changed.overlay, views.overlay)


def test_to_jpeg_encodes_an_array_or_a_picture_as_rgb_jpeg() -> None:
    array = np.zeros((20, 30, 3), dtype=np.uint8)
    array[:, 15:] = (200, 40, 40)
    for source in (array, Image.fromarray(array).convert("RGBA")):
        decoded = Image.open(io.BytesIO(to_jpeg(source)))
        assert decoded.format == "JPEG" and decoded.mode == "RGB" and decoded.size == (30, 20)
        pixels = np.asarray(decoded).astype(int)
        assert np.abs(pixels[:, :12] - 0).max() < 12 and np.abs(pixels[:, 18:] - (200, 40, 40)).max() < 12
