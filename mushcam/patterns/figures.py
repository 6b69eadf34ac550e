"""The pictures of the patterns: a cluster's mean map, a photo with a map over it, a concept's regions.

Every map is drawn with its colour bar beside it (:func:`mushcam.map_scale.with_colorbar`): the
top of the bar is the raw value the map was divided by (its own maximum), and a map that does
not single out a region (the flat-map rule of :mod:`mushcam.map_scale`) says "flat" on its bar
and in its caption. The page (``ui/patterns_support.py``) and the HTML report draw the same
pictures through these functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mushcam.data import crop_box, decode_image, read_bytes
from mushcam.manifest import InputSpec
from mushcam.map_scale import MapRange, map_range, with_colorbar
from mushcam.patterns.concepts import Concept
from mushcam.patterns.strategies import StrategyCluster
from mushcam.render import DEFAULT_COLORMAP, colorize, colormap_lut, fit_within, overlay, upsample_cam

THUMB = 160
MEAN_MAP_LABEL = "mean map (share per cell)"


def flat_note(scale: MapRange) -> str:
    """" · flat map" for a map that does not single out a region ("" otherwise): the captions' mark."""
    if scale.empty:
        return " · empty map"
    return " · flat map" if scale.flat else ""


def mean_map_picture(cluster: StrategyCluster, side: int = THUMB,
                     colormap: str = DEFAULT_COLORMAP) -> tuple[np.ndarray, MapRange]:
    """The cluster's mean map (each member's map divided by its sum, then averaged), coloured and
    drawn to its own maximum, with its colour bar; and its range (for the flat mark)."""
    mean = np.asarray(cluster.mean_map, dtype=np.float32)
    scale = map_range(mean)
    heat = upsample_cam(mean, (side, side))
    picture = with_colorbar(colorize(heat, colormap), colormap_lut(colormap), scale.high, MEAN_MAP_LABEL,
                            scale.flat)
    return picture, scale


def map_picture(path: Path, cam: np.ndarray, spec: InputSpec, label: str, side: int = THUMB,
                colormap: str = DEFAULT_COLORMAP) -> tuple[np.ndarray, MapRange]:
    """The photo at ``path`` (at most ``side`` px) with ``cam`` over it (on the centre crop the network
    saw) and the colour bar of ``label``; and the map's range."""
    image = fit_within(decode_image(read_bytes(path)), side).convert("RGB")
    scale = map_range(cam)
    heat = upsample_cam(cam, image.size, crop_box(image.size, spec))
    picture = with_colorbar(overlay(image, heat, colormap=colormap), colormap_lut(colormap), scale.high, label,
                            scale.flat)
    return picture, scale


def concept_pictures(data_root: Path, concept: Concept, spec: InputSpec,
                     side: int = THUMB) -> list[tuple[str, np.ndarray, MapRange]]:
    """Concept k as the regions of the photos where it is strongest: (path, picture, range) for each of
    its top photos, the map being the concept's weight ``W_k`` at each position of the layer."""
    return [(path, *map_picture(data_root / path, cam, spec, f"concept {concept.index}", side))
            for path, cam in zip(concept.top_paths, concept.top_maps, strict=True)]
