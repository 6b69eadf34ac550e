"""LeGrad (Bousselham et al. 2024): how the class score of one transformer block's tokens moves with its attention.

For a block l of a Vision Transformer (torchvision's ``VisionTransformer``: the layer is one of
``encoder.layers.encoder_layer_i``) with attention probabilities P^l (N x heads x T x T) and
tokens z^l after the block, the block's own class score is ``s^l = heads(ln(mean_t z^l_t))_c``
(the model's final norm and head on the mean token, torchcam's projection), and::

    map = mean_{heads, queries} ReLU( d s^l / d P^l )      keys without the class token, as the patch grid

Attention values are not multiplied in (as in the paper and torchcam). One layer gives its own
map; torchcam averages the maps of several blocks, which is the mean of ours over those layers.

Cost: the capture (one forward, no gradient, keeping the tokens that enter the block), then the
block alone recomputed with autograd on: the backward covers that block and the head, nothing
before it (torchcam runs the whole forward with autograd on). A model that is not a torchvision ViT, or a layer that is
not one of its blocks, is refused with a message.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mushcam.cam.core import GradCAMError, MapRequest
from mushcam.models import get_layer

PREFIX_TOKENS = 1  # the class token


def _checked_vit(model: nn.Module, layer: str) -> tuple[nn.Module, nn.MultiheadAttention]:
    block = get_layer(model, layer)
    attention = getattr(block, "self_attention", None)
    encoder = getattr(model, "encoder", None)
    if not isinstance(attention, nn.MultiheadAttention) or not isinstance(getattr(encoder, "ln", None), nn.Module) \
            or not isinstance(getattr(model, "heads", None), nn.Module):
        raise GradCAMError(f"LeGrad needs a Vision Transformer (torchvision's VisionTransformer) and one of its "
                           f"blocks (encoder.layers.encoder_layer_i) as the layer; {layer!r} of this model is not "
                           "one (a CNN): choose another method")
    return block, attention


def _attention(attention: nn.MultiheadAttention, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P as a leaf with requires_grad: N x heads x T x T, the attention's output from P)."""
    n, t, e = tokens.shape
    heads = attention.num_heads
    q, k, v = F.linear(tokens, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (x.reshape(n, t, heads, e // heads).transpose(1, 2) for x in (q, k, v))
    probabilities = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(e // heads), dim=-1).detach()
    probabilities.requires_grad_(True)
    mixed = (probabilities @ v).transpose(1, 2).reshape(n, t, e)
    return probabilities, attention.out_proj(mixed)


def legrad(request: MapRequest) -> torch.Tensor:
    """LeGrad map of one ViT block, N x g x g (g x g the patch grid)."""
    model, captured = request.model, request.captured
    block, attention = _checked_vit(model, request.layer)
    if captured.layer_inputs is None or request.layer not in captured.layer_inputs:
        raise GradCAMError("LeGrad needs the tokens entering the block, but the capture ran without them")
    tokens = captured.layer_inputs[request.layer]
    with torch.enable_grad():
        probabilities, mixed = _attention(attention, block.ln_1(tokens))
        after = block.dropout(mixed) + tokens
        after = after + block.mlp(block.ln_2(after))
        scores = model.heads(model.encoder.ln(after.mean(dim=1)))
        chosen = scores.gather(1, captured.class_idx.view(-1, 1)).sum()
        (gradient,) = torch.autograd.grad(chosen, probabilities)
    relevance = torch.relu(gradient).mean(dim=(1, 2))[:, PREFIX_TOKENS:]
    side = math.isqrt(relevance.shape[1])
    if side * side != relevance.shape[1]:
        raise GradCAMError(f"the block has {relevance.shape[1]} patch tokens, not a square grid: LeGrad cannot "
                           "map them")
    return relevance.reshape(-1, side, side).float()
