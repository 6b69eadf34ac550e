"""Score-CAM (Wang et al. 2020): each channel, used as a mask on the input, scores itself.

For each channel k of the target activation A::

    H_k = s( Up(A_k) )                 bilinear upsampling to the input size, then min-max
                                       normalisation to [0, 1] (a constant channel gives 0)
    w   = softmax_k( y_c(X * H_k) )    the explained class's logit on the masked input
    map = ReLU( sum_k w_k A_k )

The paper subtracts a baseline score ``y_c(X_b)`` first; a constant shift cancels inside
the softmax, so it is left out. Upsampling uses ``align_corners=True`` as pytorch-grad-cam
does (torchcam normalises before upsampling, with ``align_corners=False``: see
docs/methods.md).

Cost: one capture pass plus K forward passes of the whole network (the masked inputs
differ from the image, so nothing can be reused), run ``batch_size`` masked inputs at a
time: the masks are upsampled chunk by chunk, so memory is bounded by ``batch_size``
(about ``batch_size`` forward passes' activations), not by K.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mushcam.cam.core import GradCAMError, MapRequest, weighted_sum

DEFAULT_BATCH_SIZE = 32


def channel_masks(activation: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``s(Up(A_k))`` for the channels of one image (1 x B x h x w): B x 1 x H x W in [0, 1]."""
    upsampled = F.interpolate(activation, size=size, mode="bilinear", align_corners=True)[0]
    flat = upsampled.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    spread = high - low
    valid = spread > 0
    masks = torch.where(valid, (upsampled - low) / torch.where(valid, spread, torch.ones_like(spread)), 0.0)
    return masks.unsqueeze(1)


def masked_scores(
    model: nn.Module,
    image: torch.Tensor,
    activation: torch.Tensor,
    class_idx: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``y_c(X * H_k)`` for every channel of one image (image 1 x 3 x H x W): (K,).

    ``on_batch(channels_done)`` is called after every batch of masked inputs."""
    channels = activation.shape[1]
    scores = torch.empty(channels, dtype=torch.float32, device=activation.device)
    size = (image.shape[-2], image.shape[-1])
    with torch.no_grad():
        for start in range(0, channels, batch_size):
            stop = min(channels, start + batch_size)
            masks = channel_masks(activation[:, start:stop], size)
            logits = model(masks * image)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise GradCAMError("the model must return logits of shape N x C")
            scores[start:stop] = logits[:, class_idx].float()
            if on_batch is not None:
                on_batch(stop)
    return scores


def score_cam(request: MapRequest) -> torch.Tensor:
    """Score-CAM maps (N x h x w) at the request's layer from a gradient-free capture."""
    captured, activation = request.captured, request.activation
    size = DEFAULT_BATCH_SIZE if request.batch_size is None else int(request.batch_size)
    if size < 1:
        raise GradCAMError(f"batch_size must be at least 1; got {request.batch_size}")
    weights = torch.empty(activation.shape[:2], dtype=torch.float32, device=activation.device)
    for n in range(activation.shape[0]):
        c = int(captured.class_idx[n])
        scores = masked_scores(request.model, captured.inputs[n : n + 1], activation[n : n + 1], c, size,
                               request.channel_reporter(n))
        weights[n] = torch.softmax(scores, dim=0)
    return weighted_sum(weights.to(activation.dtype), activation)
