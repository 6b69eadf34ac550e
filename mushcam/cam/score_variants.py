"""SS-CAM and IS-CAM (torchcam's): Score-CAM with noisy or integrated masks.

Both start, as torchcam does, from each channel min-max normalised at the layer's resolution
(``(A_k - min) / (max + 1e-8)``) and upsampled bilinearly to the input (``align_corners=False``),
``M_k``; the explained class's logit on masked inputs then weighs the channels::

    SS-CAM (Wang 2020, "Smoothed Score-CAM"):  w = softmax_k( mean_s y_c((M_k + e_s) * X) ),
                                                e_s ~ N(0, SSCAM_STD^2) per pixel, SSCAM_SAMPLES draws
    IS-CAM (Naidu 2020, "Integrated Score-CAM"): w = softmax_k( mean_s y_c(c_s M_k * X) ),
                                                c_s = sum_{t<=s} t / ISCAM_SAMPLES (torchcam's schedule)
    map = ReLU( sum_k w_k A_k )

The baseline score ``y_c(X_b)`` of torchcam's weights is a constant shift inside the softmax: left
out. Cost: ``samples * K`` forward passes of the whole network per image, ``batch_size`` masked
inputs at a time; noise is drawn chunk by chunk, and masks too unless all of them fit in
MASK_CACHE_BYTES (then they are upsampled once, not once per sample), so memory is bounded by
``batch_size`` and that cap (torchcam upsamples every channel's mask, and SS-CAM draws every
channel's noise, at once: 2 x 411 MB for ResNet-50's 2,048 channels at 224 px). The
noise comes from one seeded generator in torchcam's order, so equal seeds give equal maps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mushcam.cam.core import GradCAMError, MapRequest, weighted_sum
from mushcam.cam.score import DEFAULT_BATCH_SIZE

SSCAM_SAMPLES, SSCAM_STD = 35, 2.0  # torchcam 0.5's defaults
ISCAM_SAMPLES = 10
NOISE_SEED = 0
NORMALISE_EPS = 1e-8
MASK_CACHE_BYTES = 64 * 1024 * 1024  # upsampled masks kept across samples when all of them fit in this

MaskMaker = Callable[[torch.Tensor, int], torch.Tensor]  # (masks B x 1 x H x W, sample) -> what multiplies X


def normalised_channels(activation: torch.Tensor) -> torch.Tensor:
    """Each channel of N x K x h x w min-max normalised over its positions (torchcam's ``_normalize``)."""
    low = activation.amin(dim=(2, 3), keepdim=True)
    shifted = activation - low
    return shifted / (shifted.amax(dim=(2, 3), keepdim=True) + NORMALISE_EPS)


def _batch_size(request: MapRequest) -> int:
    size = DEFAULT_BATCH_SIZE if request.batch_size is None else int(request.batch_size)
    if size < 1:
        raise GradCAMError(f"batch_size must be at least 1; got {request.batch_size}")
    return size


def _masks(normalised: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``M_k`` for channels of one image (1 x B x h x w): B x 1 x H x W."""
    return F.interpolate(normalised, size=size, mode="bilinear", align_corners=False)[0].unsqueeze(1)


def _chunk_scores(request: MapRequest, normalised: torch.Tensor, sample: int, make: MaskMaker,
                  image: int, totals: torch.Tensor, done: list[int], steps: int) -> None:
    """Add ``y_c(make(M_k) * X)`` for every channel of one image to ``totals[image]``, chunk by chunk.

    ``normalised``: the layer's normalised channels (N x K x h x w), or their masks already upsampled
    to the input (N x K x H x W, when they fit MASK_CACHE_BYTES: then not re-made for every sample)."""
    captured, size = request.captured, _batch_size(request)
    x = captured.inputs[image: image + 1]
    c = int(captured.class_idx[image])
    channels = normalised.shape[1]
    upsampled = normalised.shape[-2:] == x.shape[-2:]
    for start in range(0, channels, size):
        stop = min(channels, start + size)
        chunk = normalised[image: image + 1, start:stop]
        masks = chunk[0].unsqueeze(1) if upsampled else _masks(chunk, x.shape[-2:])
        logits = request.model(make(masks, sample) * x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise GradCAMError("the model must return logits of shape N x C")
        totals[image, start:stop] += logits[:, c].float()
        done[0] += stop - start
        request.report(done[0], steps)


def _sampled_map(request: MapRequest, samples: int, make: MaskMaker) -> torch.Tensor:
    """``ReLU(sum_k softmax_k(mean_s score_sk) A_k)``, samples outermost (torchcam's noise order)."""
    activation = request.activation
    normalised = normalised_channels(activation)
    height, width = request.captured.inputs.shape[-2:]
    if normalised.shape[0] * normalised.shape[1] * height * width * normalised.element_size() <= MASK_CACHE_BYTES:
        normalised = torch.cat([_masks(normalised[n: n + 1], (height, width)).transpose(0, 1)
                                for n in range(normalised.shape[0])])
    totals = torch.zeros(activation.shape[:2], dtype=torch.float32, device=activation.device)
    steps, done = samples * activation.shape[0] * activation.shape[1], [0]
    with torch.no_grad():
        for sample in range(samples):
            for image in range(activation.shape[0]):
                _chunk_scores(request, normalised, sample, make, image, totals, done, steps)
    weights = torch.softmax(totals / samples, dim=1)
    return weighted_sum(weights.to(activation.dtype), activation)


def ss_cam(request: MapRequest, samples: int = SSCAM_SAMPLES, std: float = SSCAM_STD,
           seed: int = NOISE_SEED) -> torch.Tensor:
    """SS-CAM map, N x h x w: Score-CAM weights averaged over noisy masks ``M_k + e``."""
    generator = torch.Generator(device=request.activation.device).manual_seed(seed)

    def noisy(masks: torch.Tensor, sample: int) -> torch.Tensor:
        noise = torch.randn(masks.shape, generator=generator, device=masks.device, dtype=masks.dtype)
        return masks + noise * std

    return _sampled_map(request, samples, noisy)


def is_cam(request: MapRequest, samples: int = ISCAM_SAMPLES) -> torch.Tensor:
    """IS-CAM map, N x h x w: Score-CAM weights averaged over masks scaled by torchcam's ``c_s``."""
    coefficients = torch.cumsum(torch.arange(1, samples + 1, dtype=torch.float64) / samples, 0).tolist()
    return _sampled_map(request, samples, lambda masks, sample: coefficients[sample] * masks)


def sampled_passes(samples: int) -> Callable[[int], float]:
    """``passes(K)`` of a method that runs ``samples`` masked inputs per channel: 1 + samples * K."""
    return lambda channels: 1.0 + samples * channels
