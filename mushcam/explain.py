"""One image, one model: prediction plus a raw CAM (Grad-CAM or another method), and how to draw it.

The pages and the command line call this; it ties data (preprocessing), the engine
(:mod:`mushcam.cam`), the map cache (:mod:`mushcam.cache`, storage only) and rendering
together without any user-interface code. :func:`cached_explanation` is the one place that
runs the model for a map missing from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from mushcam.cache import CamCache, cam_key, entry_fits, roundtrip, store_explanation
from mushcam.cam import DEFAULT_METHOD, CamResult, grad_cam, method_label
from mushcam.cam import cam as compute_cam
from mushcam.cam.core import Progress
from mushcam.data import crop_box, preprocess
from mushcam.manifest import InputSpec, Manifest
from mushcam.map_scale import map_range
from mushcam.render import DEFAULT_ALPHA, DEFAULT_COLORMAP, MAX_VIEW_SIDE, Views, fit_within, render_views, upsample_cam


@dataclass(frozen=True)
class Explanation:
    """The raw map (h x w, float32, CPU) for ``class_idx`` and the full probability vector.

    ``method``: the :data:`mushcam.cam.METHODS` name that made the map.
    """

    cam: torch.Tensor
    probabilities: torch.Tensor
    class_idx: int
    layer: str
    method: str = DEFAULT_METHOD
    versus: int | None = None  # a contrastive map: what pushed class_idx above this class

    @property
    def predicted_idx(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def confidence(self) -> float:
        """Probability of the predicted class."""
        return float(self.probabilities.max())


def explain_image(
    model: nn.Module,
    image: Image.Image,
    spec: InputSpec,
    layer: str,
    class_idx: int | None = None,
    method: str = DEFAULT_METHOD,
    progress: Progress | None = None,
    versus: int | None = None,
) -> Explanation:
    """Predict ``image`` and compute the ``method`` map of ``class_idx`` (None: the predicted class).

    ``progress(done, total)`` hears from long methods after every batch (see :func:`mushcam.cam.cam`);
    ``versus`` makes the map contrastive: what pushed ``class_idx`` above that class."""
    inputs = preprocess(image, spec).unsqueeze(0)
    result = run_engine(model, inputs, layer, class_idx, method, progress, versus)
    return Explanation(
        cam=result.cams[0].cpu(),
        probabilities=result.probabilities[0].cpu(),
        class_idx=int(result.class_idx[0]),
        layer=layer,
        method=method,
        versus=versus,
    )


def run_engine(
    model: nn.Module, inputs: torch.Tensor, layer: str, class_idx: int | None, method: str,
    progress: Progress | None = None,
    versus: int | None = None,
) -> CamResult:
    """The engine's result for one batch: :func:`mushcam.cam.cam` with ``method``.

    Grad-CAM is called by its own name (:func:`mushcam.cam.grad_cam`, the same map as
    ``compute_cam(..., method="gradcam")``) so that the page tests can count engine calls
    per method through this module's two names.
    """
    if method == DEFAULT_METHOD and versus is None:
        return grad_cam(model, inputs, layer, class_idx)
    return compute_cam(model, inputs, layer, class_idx, method=method, progress=progress, versus=versus)


def cached_explanation(
    cache: CamCache,
    model: nn.Module,
    image: Image.Image,
    spec: InputSpec,
    layer: str,
    class_idx: int | None,
    checkpoint_sha256: str,
    image_sha256: str,
    method: str = DEFAULT_METHOD,
    progress: Progress | None = None,
    versus: int | None = None,
) -> Explanation:
    """:func:`explain_image` through the cache: the app's entry point (moved from mushcam.cache).

    A hit costs no model call. A miss computes, then stores the map under its class and,
    when it is the predicted class, under the "predicted" alias too. The returned map is
    always the stored form (:func:`mushcam.cache.roundtrip`), so the first view and later
    ones match. A cache that cannot be written keeps the answer in memory only and says
    why in ``cache.write_error``.
    """
    hit = cached_only(cache, spec, layer, class_idx, checkpoint_sha256, image_sha256, method, versus)
    if hit is not None:
        return hit
    fresh = explain_image(model, image, spec, layer, class_idx, method, progress, versus)
    is_predicted = class_idx is None or fresh.class_idx == fresh.predicted_idx
    try:
        store_explanation(cache, fresh.cam, fresh.probabilities, fresh.class_idx, is_predicted,
                          checkpoint_sha256, image_sha256, layer, spec, method, versus)
    except OSError as exc:  # a read-only or full cache: the answer is still good, kept in memory only
        cache.write_error = f"the map cache {cache.root} cannot be written ({exc.strerror or exc})"
    return Explanation(roundtrip(fresh.cam), fresh.probabilities, fresh.class_idx, layer, method, versus)


def cached_only(
    cache: CamCache,
    spec: InputSpec,
    layer: str,
    class_idx: int | None,
    checkpoint_sha256: str,
    image_sha256: str,
    method: str = DEFAULT_METHOD,
    versus: int | None = None,
) -> Explanation | None:
    """The explanation the cache holds for these keys, or None: never a model call.

    What a page asks before it offers to start a long method (a map the batch pipeline made
    shows at once)."""
    key = cam_key(checkpoint_sha256, image_sha256, layer, class_idx, spec, method, versus)
    entry = cache.get_entry(key)
    if entry_fits(entry, spec) and (class_idx is None or entry.class_idx == class_idx):
        return Explanation(entry.cam, entry.probabilities, entry.class_idx, layer, method, versus)
    return None


def top_k(probabilities: torch.Tensor, class_names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes as (name, probability), highest first; ties keep class order."""
    values, indices = torch.sort(probabilities, descending=True, stable=True)
    return [(class_names[int(i)], float(v)) for v, i in zip(values[:k], indices[:k], strict=True)]


def heat_for_image(
    explanation: Explanation, image: Image.Image, spec: InputSpec, scale: float | None = None
) -> np.ndarray:
    """The map upsampled onto ``image`` (any display size), in [0, 1]; NaN outside the crop."""
    return upsample_cam(explanation.cam, image.size, crop_box(image.size, spec), scale)


def explanation_title(explanation: Explanation, manifest: Manifest, model_name: str) -> str:
    """One line: model, explained class, prediction and confidence."""
    names = manifest.class_names
    target = names[explanation.class_idx]
    predicted = names[explanation.predicted_idx]
    target_p = float(explanation.probabilities[explanation.class_idx])
    model_name = f"{model_name} · {method_label(explanation.method)}"  # every title names its method
    title = f"{model_name}: predicted {predicted} ({explanation.confidence:.1%})"
    if explanation.versus is not None:
        title += f"; what pushed {target} ({target_p:.1%}) above {names[explanation.versus]}"
    elif explanation.class_idx != explanation.predicted_idx:
        title += f"; map for {target} ({target_p:.1%})"
    return title


def render_explanation(
    image: Image.Image,
    explanation: Explanation,
    manifest: Manifest,
    model_name: str,
    alpha: float = DEFAULT_ALPHA,
    colormap: str = DEFAULT_COLORMAP,
    max_side: int = MAX_VIEW_SIDE,
) -> Views:
    """The four views of an explanation at ``image``'s own size, or scaled down to
    ``max_side`` on the long side (``Views.scaled_from`` then holds the original size).

    The map is upsampled onto the scaled image directly, so a 63 MP photo never costs a
    63 MP float heat map."""
    drawn = fit_within(image, max_side)
    heat = heat_for_image(explanation, drawn, manifest.input)
    scale = map_range(explanation.cam)
    title = explanation_title(explanation, manifest, model_name)
    if scale.flat:
        title += " · flat map" if not scale.empty else " · empty map"
    views = render_views(drawn, heat, alpha, colormap, title, max_side, method_label(explanation.method),
                         scale.high, scale.flat)
    return replace(views, scaled_from=image.size) if drawn is not image else views
