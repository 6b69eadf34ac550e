"""The error figure: the photo, where the model looked for the class it chose, and for the true class.

:func:`error_panels` draws the panels from two explanations (the Errors page shows them,
and its download combines them); :class:`FigureSource` makes the combined figure of a
stored prediction for the report, through the on-disk CAM cache (a map already computed by
the app or ``gradcam`` costs no model call), reading images only under the folder the user
gave (:mod:`mushcam.review.paths`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from torch import nn

from mushcam import catalog
from mushcam.cache import CamCache
from mushcam.data import decode_image, image_sha256, read_bytes
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation, cached_explanation, heat_for_image
from mushcam.manifest import InputSpec, Manifest
from mushcam.map_scale import with_colorbar
from mushcam.models import DISPLAY_NAMES
from mushcam.render import (
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    cam_scale,
    colormap_lut,
    combine_panels,
    fit_within,
    overlay,
    to_png,
)
from mushcam.review.paths import dataset_file
from mushcam.store import Predictions, RunRecord

REPORT_SIDE = 360  # px: the long side of each panel in a report figure


def model_name(run: RunRecord) -> str:
    """The name a run's model goes by in the manifest (and in reviews)."""
    return str(getattr(run, "model", "") or run.backbone)


def display_name(name: str) -> str:
    return DISPLAY_NAMES.get(name, name)


@dataclass(frozen=True)
class Panels:
    """Pictures side by side: titles (short) and captions (longer), one per panel."""

    images: list[np.ndarray]
    titles: list[str]
    captions: list[str]
    scale: float | None = None  # the raw value that the colormap's top stands for (shared maps)

    def combined(self, title: str = "") -> np.ndarray:
        return combine_panels(self.images, self.titles, title)


def error_panels(display: Image.Image, predicted: Explanation, truth: Explanation, spec: InputSpec,
                 names: list[str], toxicities: list[str], true_idx: int, probabilities: np.ndarray,
                 alpha: float = DEFAULT_ALPHA, colormap: str = DEFAULT_COLORMAP, shared: bool = True,
                 contrast: Explanation | None = None) -> Panels:
    """Original, predicted-class overlay, (when wrong) true-class overlay and, when given, the contrast.

    ``shared``: the maps divided by the largest map's maximum, so weak evidence for the true
    class stays faint next to strong evidence for the predicted one. ``probabilities`` are
    the stored ones (what the listed prediction said). ``contrast``: the map of
    y_predicted - y_true ("what pushed the predicted class above the true one").
    """
    pred_idx = predicted.class_idx
    maps = [predicted.cam, truth.cam] + ([contrast.cam] if contrast is not None else [])
    scale = max(cam_scale(m) for m in maps) if shared else None
    images = [np.asarray(display)]
    titles = ["Original"]
    captions = [f"true: {names[true_idx]} ({toxicities[true_idx]})"]
    images.append(overlay(display, heat_for_image(predicted, display, spec, scale), alpha, colormap))
    titles.append(f"Why {names[pred_idx]}? ({float(probabilities[pred_idx]):.1%})")
    captions.append(f"Grad-CAM for the predicted class {names[pred_idx]} ({toxicities[pred_idx]})")
    if true_idx != pred_idx:
        images.append(overlay(display, heat_for_image(truth, display, spec, scale), alpha, colormap))
        titles.append(f"Where is {names[true_idx]}? ({float(probabilities[true_idx]):.1%})")
        captions.append(f"Grad-CAM for the true class {names[true_idx]}")
    if contrast is not None and true_idx != pred_idx:
        images.append(overlay(display, heat_for_image(contrast, display, spec, scale), alpha, colormap))
        titles.append(f"{names[pred_idx]} over {names[true_idx]}?")
        captions.append(f"Grad-CAM of y({names[pred_idx]}) − y({names[true_idx]}): what pushed the prediction "
                        "above the true class")
    return Panels(images, titles, captions, scale)


ModelLoader = Callable[[Manifest, str], nn.Module]


@dataclass
class FigureSource:
    """Makes report figures of stored predictions; says why where it cannot.

    ``data_root``: the folder the user gave (images are read only under it).
    """

    manifest: Manifest | None
    data_root: str | os.PathLike[str] | None
    cache: CamCache
    load: ModelLoader = catalog.load_catalog_model
    side: int = REPORT_SIDE
    _models: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    _shas: dict[str, str] = field(default_factory=dict, repr=False)

    def _why_not(self, run: RunRecord) -> str:
        name = model_name(run)
        if self.manifest is None:
            return "no checkpoint folder given (--manifest)"
        if self.data_root is None:
            return "no image folder given (--data)"
        if name not in self.manifest.models:
            return f"the manifest has no model {name}"
        if self.manifest.class_names != run.class_names:
            return "the manifest's classes differ from the run's"
        path = self.manifest.checkpoint_path(name)
        if not path.is_file():
            return f"no checkpoint file at {path}"
        if name not in self._shas:
            self._shas[name] = self.cache.checkpoint_sha256(path)
        if self._shas[name] != run.checkpoint_sha256:
            return f"the checkpoint {path.name} has changed since this run was evaluated"
        return ""

    def figure(self, run: RunRecord, rows: Predictions, index: int) -> tuple[bytes | None, str]:
        """(PNG of original | predicted-class map | true-class map, '') or (None, why not).

        The maps share one scale, so one colour bar (right) gives both maps' raw values.
        """
        reason = self._why_not(run)
        if reason:
            return None, reason
        assert self.manifest is not None and self.data_root is not None
        name = model_name(run)
        try:
            data = read_bytes(dataset_file(self.data_root, rows.image_paths[index]))
            image = decode_image(data)
            if name not in self._models:
                self._models[name] = self.load(self.manifest, name)
            model = self._models[name]
        except MushcamError as exc:
            return None, str(exc)
        sha = image_sha256(data)
        if sha != rows.image_sha256[index]:
            return None, "the image file has changed since it was evaluated"
        layer = self.manifest.models[name].layer or run.layer
        spec = self.manifest.input
        true_idx, pred_idx = int(rows.true_idx[index]), int(rows.pred_idx[index])
        # The same model part of the key as the app and the command line use (named entries
        # with their own head activation, code or kwargs get their own maps).
        model_key = catalog.cache_digest(run.checkpoint_sha256, catalog.entry_fingerprint(self.manifest, name))
        predicted = cached_explanation(self.cache, model, image, spec, layer, pred_idx, model_key, sha)
        truth = cached_explanation(self.cache, model, image, spec, layer, true_idx, model_key, sha)
        contrast = (cached_explanation(self.cache, model, image, spec, layer, pred_idx, model_key, sha,
                                       versus=true_idx) if true_idx != pred_idx else None)
        panels = error_panels(fit_within(image, self.side), predicted, truth, spec, run.class_names, run.toxicities,
                              true_idx, rows.probabilities[index], contrast=contrast)
        combined = panels.combined(f"{self.manifest.display_name(name)}: {rows.image_paths[index]}")
        scale = panels.scale if panels.scale is not None else cam_scale(predicted.cam)
        # one colour bar for both maps: they share one scale (0 .. the larger map's maximum)
        return to_png(with_colorbar(combined, colormap_lut(DEFAULT_COLORMAP), scale, "Grad-CAM")), ""

    def close(self) -> None:
        """Release the loaded models (memory)."""
        self._models.clear()


__all__ = ["FigureSource", "Panels", "error_panels", "model_name"]
