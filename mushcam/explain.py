"""One image, one model: prediction plus raw Grad-CAM, and how to draw it.

The pages and the command line call this; it ties data (preprocessing), the engine and
rendering together without any user-interface code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from mushcam.data import crop_box, preprocess
from mushcam.gradcam import grad_cam
from mushcam.manifest import InputSpec, Manifest
from mushcam.render import DEFAULT_ALPHA, DEFAULT_COLORMAP, MAX_VIEW_SIDE, Views, fit_within, render_views, upsample_cam


@dataclass(frozen=True)
class Explanation:
    """The raw map (h x w, float32, CPU) for ``class_idx`` and the full probability vector."""

    cam: torch.Tensor
    probabilities: torch.Tensor
    class_idx: int
    layer: str

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
) -> Explanation:
    """Predict ``image`` and compute the Grad-CAM of ``class_idx`` (None: the predicted class)."""
    result = grad_cam(model, preprocess(image, spec).unsqueeze(0), layer, class_idx)
    return Explanation(
        cam=result.cams[0].cpu(),
        probabilities=result.probabilities[0].cpu(),
        class_idx=int(result.class_idx[0]),
        layer=layer,
    )


def top_k(probabilities: torch.Tensor, class_names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes as (name, probability), highest first; ties keep class order."""
    values, indices = torch.sort(probabilities, descending=True, stable=True)
    return [(class_names[int(i)], float(v)) for v, i in zip(values[:k], indices[:k], strict=True)]


def heat_for_image(explanation: Explanation, image: Image.Image, spec: InputSpec, scale: float | None = None) -> np.ndarray:
    """The map upsampled onto ``image`` (any display size), in [0, 1]; NaN outside the crop."""
    return upsample_cam(explanation.cam, image.size, crop_box(image.size, spec), scale)


def explanation_title(explanation: Explanation, manifest: Manifest, model_name: str) -> str:
    """One line: model, explained class, prediction and confidence."""
    names = manifest.class_names
    target = names[explanation.class_idx]
    predicted = names[explanation.predicted_idx]
    target_p = float(explanation.probabilities[explanation.class_idx])
    title = f"{model_name}: predicted {predicted} ({explanation.confidence:.1%})"
    if explanation.class_idx != explanation.predicted_idx:
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
    views = render_views(drawn, heat, alpha, colormap, explanation_title(explanation, manifest, model_name), max_side)
    return replace(views, scaled_from=image.size) if drawn is not image else views
