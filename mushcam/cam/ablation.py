"""Ablation-CAM (Desai & Ramaswamy 2020): how much the score drops without each channel.

For the explained class c with logit ``y_c`` and ``y_c^k`` the logit when channel k of the
target activation is set to zero::

    w_k = (y_c - y_c^k) / y_c          map = ReLU( sum_k w_k A_k )

How the K ablated scores are computed (the cost of this method):

1. The capture pass (:func:`mushcam.cam.core.capture`, no gradient) runs the model
   once and keeps A.
2. For each image, the K ablated copies of A are built in chunks of ``batch_size``
   copies. A forward hook on the target layer *replaces* the layer's output with the
   chunk, and the model is run on that **one** image: everything before the layer runs on
   a batch of 1, everything after it on the chunk. A plain ``nn.Module`` cannot be started
   half-way through its ``forward`` (its control flow lives in Python code, not in a
   graph we could cut), so the trunk is re-run once per chunk, on one image, instead of
   once per ablated channel; with the default chunk bound (128 MiB of ablated
   activations) ResNet-50's 2048 channels at 224 px take 7 chunks, EfficientNet-B0's 320
   and MobileNetV3-Large's 960 take one. Tensors from before the layer that meet the
   chunk after it (a skip connection) broadcast from batch 1, which is exact because they
   are the same for every copy.
3. If the head cannot broadcast (it concatenates an earlier tensor, or reshapes with a
   batch size read from the input), the replay falls back to running the image repeated
   ``batch_size`` times - what pytorch-grad-cam always does - with the same hook.

Cost: ``1 + ceil(K / batch_size)`` trunk passes on one image per image, plus the head on
K copies. pytorch-grad-cam's ``AblationCAM`` runs the whole network on every copy.
Ablation sets a channel to 0 as in the paper; docs/methods.md says where the peer differs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch
from torch import nn

from mushcam.cam.core import GradCAMError, MapRequest, weighted_sum
from mushcam.models import get_layer

DEFAULT_CHUNK_BYTES = 128 * 1024 * 1024  # ablated activations per replay, at most


def default_batch_size(activation: torch.Tensor, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Ablated copies per replay so that one chunk of them stays under ``chunk_bytes``."""
    per_copy = activation[0].numel() * activation.element_size()
    return max(1, chunk_bytes // max(per_copy, 1))


class _Replace:
    """A forward hook that swaps the target layer's output for a prepared tensor."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.replacement: torch.Tensor | None = None
        self.thread = threading.get_ident()
        self.handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> _Replace:
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _hook(self, module: nn.Module, inputs: object, output: object) -> object:
        if threading.get_ident() != self.thread or self.replacement is None:
            return None
        return self.replacement


def _replay(
    model: nn.Module, hook: _Replace, image: torch.Tensor, chunk: torch.Tensor, broadcast: bool
) -> torch.Tensor | None:
    """Logits of the model with the layer's output replaced by ``chunk`` (B copies).

    ``broadcast``: run the trunk on the single image; returns None when the head does not
    accept that (the caller then repeats the image instead).
    """
    hook.replacement = chunk
    try:
        batch = image if broadcast else image.expand(chunk.shape[0], *image.shape[1:])
        try:
            logits = model(batch)
        except RuntimeError:
            if broadcast:
                return None
            raise
    finally:
        hook.replacement = None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != chunk.shape[0]:
        if broadcast:
            return None
        raise GradCAMError("the model must return logits of shape N x C")
    return logits


def _zero_channels(chunk: torch.Tensor, start: int, layout: str) -> None:
    """Copy i of ``chunk`` (the layer's raw output, B copies) loses channel ``start + i``.

    The raw layout is kept: N x K x h x w ("nchw"), N x h x w x K ("nhwc", Swin), or
    N x tokens x K ("tokens", a ViT: only the grid's tokens, not the class token).
    """
    rows = torch.arange(chunk.shape[0], device=chunk.device)
    channels = rows + start
    if layout == "nchw":
        chunk[rows, channels] = 0
    elif layout == "nhwc":
        chunk[rows, :, :, channels] = 0
    else:
        tokens = chunk.shape[1]
        prefix = tokens - math.isqrt(tokens) ** 2
        chunk[rows, prefix:, channels] = 0


def ablation_scores(
    model: nn.Module,
    image: torch.Tensor,
    activation: torch.Tensor,
    module: nn.Module,
    class_idx: int,
    batch_size: int,
    layout: str = "nchw",
    channels: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``y_c^k`` for every channel k of one image's raw layer output (batch 1): (K,).

    ``on_batch(channels_done)`` is called after every chunk of ablated copies."""
    channels = activation.shape[1] if channels is None else channels
    scores = torch.empty(channels, dtype=torch.float32, device=activation.device)
    broadcast = True
    with _Replace(module) as hook, torch.no_grad():
        for start in range(0, channels, batch_size):
            stop = min(channels, start + batch_size)
            chunk = activation.expand(stop - start, *activation.shape[1:]).clone()
            _zero_channels(chunk, start, layout)
            logits = _replay(model, hook, image, chunk, broadcast) if broadcast else None
            if logits is None:
                broadcast = False
                logits = _replay(model, hook, image, chunk, broadcast)
            scores[start:stop] = logits[:, class_idx].float()
            if on_batch is not None:
                on_batch(stop)
    return scores


def ablation_cam(request: MapRequest) -> torch.Tensor:
    """Ablation-CAM maps (N x h x w) at the request's layer from a gradient-free capture."""
    captured, layer, model = request.captured, request.layer, request.model
    activation = request.activation
    raw, layout = captured.raw[layer], captured.layouts[layer]
    module = get_layer(model, layer)
    size = default_batch_size(raw) if request.batch_size is None else int(request.batch_size)
    if size < 1:
        raise GradCAMError(f"batch_size must be at least 1; got {request.batch_size}")
    weights = torch.empty(activation.shape[:2], dtype=torch.float32, device=activation.device)
    for n in range(activation.shape[0]):
        c = int(captured.class_idx[n])
        original = float(captured.logits[n, c])
        ablated = ablation_scores(model, captured.inputs[n : n + 1], raw[n : n + 1], module, c, size, layout,
                                  activation.shape[1], request.channel_reporter(n))
        if original == 0.0:
            weights[n] = 0.0  # the paper's weight is undefined for a zero score
        else:
            weights[n] = (original - ablated) / original
    return weighted_sum(weights.to(activation.dtype), activation)


def ablation_forward_passes(channels: int, batch_size: int) -> int:
    """Trunk passes per image: the capture plus one per chunk of ablated copies."""
    return 1 + math.ceil(channels / batch_size)
