"""Beside a photo: its nearest training photos of the predicted class and of the true class.

"It was called Lactarius because it resembles these Lactarius": one forward pass gives the
photo's embedding and the model's prediction; :func:`mushcam.lookalike.search.nearest`
then finds the ``k`` closest training photos within each of the two classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from mushcam.data import preprocess
from mushcam.exceptions import MushcamError
from mushcam.gradcam import predicted_classes
from mushcam.lookalike.features import pooled_features
from mushcam.lookalike.search import Neighbour, nearest
from mushcam.lookalike.store import EmbeddingIndex
from mushcam.manifest import InputSpec


@dataclass(frozen=True)
class LookAlikes:
    """The photo's predicted class (and true class when known), with their nearest training photos."""

    predicted: str
    confidence: float
    of_predicted: tuple[Neighbour, ...]
    true: str | None = None
    of_true: tuple[Neighbour, ...] = ()


def look_alikes(model: nn.Module, image: Image.Image, spec: InputSpec, index: EmbeddingIndex,
                class_names: tuple[str, ...] | list[str], true: str | None = None, k: int = 5,
                exclude_sha256: tuple[str, ...] = ()) -> LookAlikes:
    """The ``k`` nearest training photos of the predicted class and of ``true`` (when given and different)."""
    if true is not None and true not in class_names:
        raise MushcamError(f"unknown true class {true!r}; the model's classes are {', '.join(class_names)}")
    features, logits = pooled_features(model, preprocess(image, spec).unsqueeze(0))
    if logits.shape[1] != len(class_names):
        raise MushcamError(f"the model gives {logits.shape[1]} outputs for {len(class_names)} classes")
    predicted_idx = int(predicted_classes(logits)[0])
    confidence = float(torch.softmax(logits, dim=1)[0, predicted_idx])
    predicted = class_names[predicted_idx]
    query = features[0].numpy()
    of_predicted = nearest(query, index, k, classes=[predicted], exclude_sha256=exclude_sha256)
    of_true: list[Neighbour] = []
    if true is not None and true != predicted:
        of_true = nearest(query, index, k, classes=[true], exclude_sha256=exclude_sha256)
    return LookAlikes(predicted, confidence, tuple(of_predicted), true, tuple(of_true))


__all__ = ["LookAlikes", "look_alikes"]
