"""Turning a raw CAM map (Grad-CAM or another method) into pictures: upsample, normalise, colour, blend, export.

Rendering is separate from the engine so that moving an alpha slider or picking another
colormap only reruns this module, never the model. On a 1024-px image the steps cost a few
milliseconds each (see ``benchmarks/``).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mushcam.map_scale import colorbar, readable

COLORMAPS: tuple[str, ...] = ("jet", "viridis", "hot", "inferno", "magma", "plasma", "turbo", "gray")
DEFAULT_ALPHA = 0.45
DEFAULT_COLORMAP = "jet"
VIEWS: tuple[str, ...] = ("Original", "Heatmap", "Overlay", "Combined")
OUTSIDE_GREY = 128  # heatmap colour where the network saw nothing (outside a centre crop)
MAX_VIEW_SIDE = 2048  # views are for people: longer sides are drawn scaled down (memory stays bounded)


@functools.cache
def colormap_lut(name: str) -> np.ndarray:
    """A 256 x 3 uint8 lookup table for a matplotlib colormap (built once per name)."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}")
    from matplotlib import colormaps  # imported lazily: only the first LUT pays for it

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    lut = np.rint(rgba[:, :3] * 255.0).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def cam_scale(cams: torch.Tensor | np.ndarray) -> float:
    """The scale a map (or several maps, for a shared scale) is normalised by: its maximum."""
    values = torch.as_tensor(cams)
    return float(values.max()) if values.numel() else 0.0


def upsample_cam(
    cam: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    box: tuple[int, int, int, int] | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """The raw map resized onto the original image, in [0, 1], as float32 H x W.

    ``image_size`` is (width, height). ``box`` is the region the network saw (the centre
    crop); outside it the result is NaN, meaning "not seen". The map is divided by
    ``scale`` (default: its own maximum, so a map of magnitude 1e-15 renders like one of
    magnitude 1; pass a shared scale to compare models honestly). An all-zero map stays 0.
    """
    width, height = image_size
    left, top, right, bottom = box if box is not None else (0, 0, width, height)
    raw = torch.as_tensor(cam).detach().cpu().float().numpy()
    if raw.ndim != 2:
        raise ValueError(f"expected one h x w map, got shape {tuple(raw.shape)}")
    scale = cam_scale(raw) if scale is None else float(scale)
    if scale > 0:
        # Bilinear with half-pixel centres (as torch's align_corners=False), 10x faster.
        resized = cv2.resize(raw / np.float32(scale), (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        np.clip(resized, 0.0, 1.0, out=resized)
    else:
        resized = np.zeros((bottom - top, right - left), dtype=np.float32)
    if (left, top, right, bottom) == (0, 0, width, height):
        return resized
    full = np.full((height, width), np.nan, dtype=np.float32)
    full[top:bottom, left:right] = resized
    return full


def colorize(heat: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """H x W values in [0, 1] (NaN = not seen) to an H x W x 3 uint8 image via a 256-entry LUT."""
    lut = colormap_lut(colormap)
    unseen = np.isnan(heat)
    any_unseen = bool(unseen.any())
    scaled = np.nan_to_num(heat, nan=0.0) if any_unseen else heat
    index = cv2.convertScaleAbs(scaled, alpha=255.0)  # round(heat * 255) as uint8, saturating
    rgb = cv2.LUT(cv2.merge([index, index, index]), lut.reshape(256, 1, 3))
    if any_unseen:
        rgb[unseen] = OUTSIDE_GREY
    return rgb


def blend(image: np.ndarray, heat_rgb: np.ndarray, alpha: float, heat: np.ndarray | None = None) -> np.ndarray:
    """``(1 - alpha) * image + alpha * heat_rgb`` in uint8; pixels not seen keep the image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    out = cv2.addWeighted(np.ascontiguousarray(image, dtype=np.uint8), 1.0 - alpha, heat_rgb, alpha, 0.0)
    if heat is not None:
        unseen = np.isnan(heat)
        if unseen.any():
            out[unseen] = image[unseen]
    return out


def overlay(
    image: Image.Image | np.ndarray,
    heat: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    colormap: str = DEFAULT_COLORMAP,
) -> np.ndarray:
    """The image with the coloured heat map blended over it (H x W x 3 uint8)."""
    pixels = np.asarray(image, dtype=np.uint8)
    return blend(pixels, colorize(heat, colormap), alpha, heat)


@dataclass(frozen=True)
class Views:
    """The thesis's four views as RGB uint8 arrays."""

    original: np.ndarray
    heatmap: np.ndarray
    overlay: np.ndarray
    combined: np.ndarray
    scaled_from: tuple[int, int] | None = None  # (width, height) of the image when the views were drawn smaller

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(VIEWS, (self.original, self.heatmap, self.overlay, self.combined), strict=True))


def render_views(
    image: Image.Image,
    heat: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    colormap: str = DEFAULT_COLORMAP,
    title: str = "",
    max_side: int = MAX_VIEW_SIDE,
    map_label: str = "Grad-CAM",
    scale: float = 1.0,
    flat: bool = False,
) -> Views:
    """Original | Heatmap | Overlay, and Combined (the three side by side under a title, with
    the colour bar of ``colormap`` beside them).

    ``heat`` comes from :func:`upsample_cam` for this image. An image longer than
    ``max_side`` is drawn scaled down to it (``Views.scaled_from`` says so): the combined
    figure is then at most about 3 x ``max_side`` wide, whatever the photo's size.
    ``map_label`` names the method on the heatmap panel and the colour bar; ``scale`` is the
    raw value the top of the bar stands for (the map was divided by it); ``flat`` marks a map
    that does not single out a region (:mod:`mushcam.map_scale`) on the bar.
    """
    if heat.shape != (image.size[1], image.size[0]):
        raise ValueError(f"heat map {heat.shape} does not match the image {(image.size[1], image.size[0])}")
    scaled_from = None
    if max(image.size) > max_side:
        scaled_from = image.size
        image = fit_within(image, max_side)
        heat = cv2.resize(heat, image.size, interpolation=cv2.INTER_NEAREST)  # NaN ("not seen") survives
    original = np.asarray(image.convert("RGB"), dtype=np.uint8)
    heat_rgb = colorize(heat, colormap)
    blended = blend(original, heat_rgb, alpha, heat)
    panels = [readable(p) for p in (original, heat_rgb, blended)]  # tiny photos: enlarged for the figure only
    bar = colorbar(colormap_lut(colormap), panels[0].shape[0], scale, map_label, flat)
    combined = combine_panels([*panels, bar], ["Original", f"{map_label} heatmap", "Overlay", ""], title)
    return Views(original, heat_rgb, blended, combined, scaled_from)


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def combine_panels(panels: list[np.ndarray], labels: list[str], title: str = "") -> np.ndarray:
    """Panels side by side on white, each labelled, under an optional title line."""
    height = max(p.shape[0] for p in panels)
    gap = max(8, height // 60)
    font_size = max(12, height // 22)
    label_h = font_size + gap
    title_h = (font_size + 2 * gap) if title else 0
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) + 1)
    top = title_h + label_h
    canvas = np.full((top + height + gap, width, 3), 255, dtype=np.uint8)
    # Text is drawn on the small header strip only; the panels are copied in with numpy.
    header = Image.new("RGB", (width, top), "white")
    draw = ImageDraw.Draw(header)
    if title:
        draw.text((width // 2, gap + font_size // 2), title, fill="black", font=_font(font_size), anchor="mm")
    x = gap
    for panel, label in zip(panels, labels, strict=True):
        centre = (x + panel.shape[1] // 2, title_h + label_h // 2)
        draw.text(centre, label, fill=(60, 60, 60), font=_font(font_size), anchor="mm")
        canvas[top : top + panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    canvas[:top] = np.asarray(header)
    return canvas


def to_png(image: np.ndarray | Image.Image, compress_level: int = 6) -> bytes:
    """PNG bytes of an RGB array or PIL image (for downloads and files)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def to_jpeg(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB array or PIL image (for pictures shown on a page: photos and overlays)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """A copy no larger than ``max_side`` on its longer side (for display and speed)."""
    if max(image.size) <= max_side:
        return image
    ratio = max_side / max(image.size)
    size = (max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio)))
    return image.resize(size, Image.Resampling.LANCZOS)
