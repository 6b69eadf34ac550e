"""What a run is asked to do (:class:`PipelineConfig` and its defaults) and what one model's
pass reports (:class:`ModelReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mushcam.cache import CamCache
from mushcam.cam import DEFAULT_METHOD
from mushcam.data import DISPLAY_MAX_SIDE
from mushcam.manifest import Manifest
from mushcam.render import DEFAULT_ALPHA, DEFAULT_COLORMAP

VIEW_NAMES: tuple[str, ...] = ("original", "heatmap", "overlay", "combined")
DEFAULT_VIEWS: tuple[str, ...] = ("overlay", "heatmap", "combined")
DEFAULT_MAX_SIDE = DISPLAY_MAX_SIDE  # views are rendered at most this large (as in the app)
MAX_MAX_SIDE = 8192  # the largest --max-side: a combined figure is then at most ~25,000 px wide
DEFAULT_PNG_LEVEL = 1  # zlib level: PNG encoding is the costliest step after the model (see README)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs besides the image list."""

    manifest: Manifest
    out: Path
    cache: CamCache
    backbones: tuple[str, ...]
    target: str | int = "predicted"  # "predicted", "true" or a class index
    batch_size: int = 1
    views: tuple[str, ...] = DEFAULT_VIEWS
    alpha: float = DEFAULT_ALPHA
    colormap: str = DEFAULT_COLORMAP
    device: torch.device = torch.device("cpu")
    force: bool = False
    max_side: int = DEFAULT_MAX_SIDE
    png_level: int = DEFAULT_PNG_LEVEL
    shard: tuple[int, int] | None = None
    method: str = DEFAULT_METHOD  # a registered CAM method's name (mushcam.cam.method_names())


@dataclass
class ModelReport:
    """What one model's pass did and cost."""

    backbone: str  # the model's manifest name
    images: int = 0
    computed: int = 0  # maps computed by the model
    cached: int = 0  # maps served by the cache
    skipped: int = 0  # images whose map and files were all there already
    failed: list[str] = field(default_factory=list)  # "relpath: reason"
    seconds: float = 0.0
    model_loaded: bool = False
    rss_start_bytes: int | None = None
    peak_rss_bytes: int | None = None  # VmHWM during this model's pass (process-wide if it could not be reset)
    peak_is_per_model: bool = False
    rss_after_load_bytes: int | None = None  # resident memory with the model loaded
    load_peak_rss_bytes: int | None = None  # high-water mark up to the end of loading (weights read + model built)
    work_peak_rss_bytes: int | None = None  # high-water mark after loading: images, Grad-CAM, rendering
    cuda_max_allocated_bytes: int | None = None
    label: str = ""  # the model's display name
    arch: str = ""

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0
