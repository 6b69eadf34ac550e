"""The maps of every test photo of one model, from the on-disk CAM cache.

Each photo's map explains the class the model predicts for it (the cache's "predicted"
alias entry, which also holds the probabilities). A hit costs no model call; the model is
loaded only at the first miss, and a missing map is computed and stored through
:func:`mushcam.cache.cached_explanation`, so the pages and ``python -m mushcam gradcam`` find it
too. Maps are small (h x w floats at the layer's resolution), so memory grows by a few kB a photo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mushcam.cache import CamCache, cached_explanation, cam_key, entry_fits
from mushcam.catalog import LoadedModel, cache_digest, cam_layer, entry_fingerprint, load_catalog_entry
from mushcam.data import ImageLoadError, decode_image, image_sha256, read_bytes
from mushcam.evaluate import TestImage
from mushcam.exceptions import MushcamError
from mushcam.manifest import Manifest
from mushcam.methods import DEFAULT_METHOD
from mushcam.models.checkpoint import what_is_there


@dataclass(frozen=True)
class PhotoMap:
    """One photo's map (float32 h x w, the cache's stored form) and the model's call on it."""

    relpath: str
    image_sha256: str
    true_idx: int
    predicted_idx: int
    confidence: float
    cam: np.ndarray

    @property
    def correct(self) -> bool:
        return self.true_idx == self.predicted_idx


@dataclass(frozen=True)
class ModelMaps:
    """Every readable photo's map for one model x method, and the photos that were skipped."""

    model: str
    method: str
    layer: str
    checkpoint_sha256: str
    maps: tuple[PhotoMap, ...]
    skipped: tuple[str, ...]
    computed: int  # maps that were not in the cache


class _Maps:
    """The model, loaded at the first cache miss (a warm cache never loads it)."""

    def __init__(self, manifest: Manifest, name: str, cache: CamCache, method: str) -> None:
        self.manifest, self.name, self.cache, self.method = manifest, name, cache, method
        path = manifest.checkpoint_path(name)
        if not path.is_file():
            raise MushcamError(what_is_there(path) or f"checkpoint for {name} not found: {path}")
        self.checkpoint_sha = cache.checkpoint_sha256(path)
        self.model_key = cache_digest(self.checkpoint_sha, entry_fingerprint(manifest, name))
        self.loaded: LoadedModel | None = None
        self.layer = cam_layer(manifest, name)
        self.computed = 0

    def one(self, item: TestImage) -> PhotoMap:
        data = read_bytes(item.path)
        sha = image_sha256(data)
        spec = self.manifest.input
        entry = None
        if self.layer is not None:
            entry = self.cache.get_entry(cam_key(self.model_key, sha, self.layer, None, spec, self.method))
        if entry_fits(entry, spec, self.manifest.num_classes):
            cam, probabilities = entry.cam, entry.probabilities
        else:
            if self.loaded is None:
                self.loaded = load_catalog_entry(self.manifest, self.name)
                self.layer = cam_layer(self.manifest, self.name, self.loaded)
            fresh = cached_explanation(self.cache, self.loaded.model, decode_image(data), spec, self.layer, None,
                                       self.model_key, sha, self.method)
            cam, probabilities = fresh.cam, fresh.probabilities
            self.computed += 1
        return PhotoMap(item.relpath, sha, item.true_idx, int(probabilities.argmax()), float(probabilities.max()),
                        np.asarray(cam.numpy(), dtype=np.float32))


def collect_maps(
    manifest: Manifest,
    model: str,
    images: Sequence[TestImage],
    cache: CamCache,
    method: str = DEFAULT_METHOD,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> ModelMaps:
    """The predicted-class map of every image (from the cache, computing the missing ones)."""
    source = _Maps(manifest, model, cache, method)
    found, skipped = [], []
    for done, item in enumerate(images, start=1):
        try:
            found.append(source.one(item))
        except ImageLoadError as exc:
            skipped.append(item.relpath)
            log(f"skipped {item.relpath}: unreadable image: {exc}")
        if progress is not None:
            progress(done, len(images))
    return ModelMaps(model, method, source.layer or "", source.checkpoint_sha, tuple(found), tuple(skipped),
                     source.computed)
