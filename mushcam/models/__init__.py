"""Models: architectures by name, checkpoints read safely and recognised, Grad-CAM layers.

- :mod:`~mushcam.models.registry`: presets, any torchvision classifier, ``timm:NAME``.
- :mod:`~mushcam.models.checkpoint` / :mod:`~mushcam.models.safety`: reading a file without
  running code (zip bombs, malicious pickles, whole pickled models refused with reasons).
- :mod:`~mushcam.models.recognise` / :mod:`~mushcam.models.heads`: trunk under any prefix,
  heads rebuilt from keys, wrappers such as the thesis's ``MushroomClassifier``.
- :mod:`~mushcam.models.layers`: layer paths (source or own naming), token grids, automatic choice.
- :mod:`~mushcam.models.usercode`: building from the user's own file, when an entry says so.
- :mod:`~mushcam.models.importing`: ``import-checkpoint`` for whole pickled models (trusted).
"""

from __future__ import annotations

from mushcam.models.checkpoint import CheckpointError, file_sha256, read_weights
from mushcam.models.heads import HeadError
from mushcam.models.layers import LayerError, choose_layer, get_layer, resolve_layer
from mushcam.models.loading import (
    imagenet_weights_path,
    load_checkpoint,
    load_imagenet_model,
    load_model,
)
from mushcam.models.recognise import Recognised
from mushcam.models.registry import (
    BACKBONES,
    DEFAULT_LAYERS,
    DISPLAY_NAMES,
    HEAD_WEIGHT_KEYS,
    TIMM_PREFIX,
    ArchitectureError,
    PretrainedWeightsUnavailable,
    build_architecture,
    build_model,
    check_architecture,
    display_name,
    imagenet_weights,
    torchvision_architectures,
)

__all__ = [
    "ArchitectureError",
    "BACKBONES",
    "CheckpointError",
    "DEFAULT_LAYERS",
    "DISPLAY_NAMES",
    "HEAD_WEIGHT_KEYS",
    "HeadError",
    "LayerError",
    "PretrainedWeightsUnavailable",
    "Recognised",
    "TIMM_PREFIX",
    "build_architecture",
    "build_model",
    "check_architecture",
    "choose_layer",
    "display_name",
    "file_sha256",
    "get_layer",
    "imagenet_weights",
    "imagenet_weights_path",
    "load_checkpoint",
    "load_imagenet_model",
    "load_model",
    "read_weights",
    "resolve_layer",
    "torchvision_architectures",
]
