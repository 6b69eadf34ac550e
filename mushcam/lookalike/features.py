"""A model's embedding of a photo: the pooled features its head receives.

For any classifier the embedding is the input of its head module (ResNet's ``fc``,
EfficientNet's and MobileNet's ``classifier``, a ViT's ``heads``, a user's MLP head), read
by a forward pre-hook during an ordinary forward pass. What the head receives is already
pooled (N x D); a head that receives a map (SqueezeNet's 1x1-conv head: N x C x h x w) or
tokens (N x T x C) gets its input averaged over positions::

    e = x                     (x: N x D)
    e = mean_ij x[:, :, i, j] (x: N x C x h x w)
    e = mean_t  x[:, t, :]    (x: N x T x C)

The hook is registered per call and removed in ``finally``; it ignores forwards from other
threads (a Streamlit server shares one model between sessions); the forward runs under
``no_grad`` in eval mode, and a model in training mode is restored module by module.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.gradcam import eval_mode, prepare_inputs


class EmbeddingError(MushcamError):
    """A model's embedding cannot be read (no head found, or the head was never called)."""


def _holds_head_layer(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))
               for m in module.modules())


def _holds_trunk(module: nn.Module) -> bool:
    """Whether a part also computes features (spatial convolutions, attention): then it is not the head."""
    return any((isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)) or isinstance(m, nn.MultiheadAttention)
               for m in module.modules())


def head_module(model: nn.Module) -> tuple[str, nn.Module]:
    """(dotted path, module) of the model's head: the last top-level part holding a Linear
    (or a 1x1 convolution), descending into a part that also holds the trunk (a wrapper
    ``model.module``, a ``backbone`` that kept its own ``fc``)."""
    path: list[str] = []
    current = model
    while True:
        parts = [(name, child) for name, child in current.named_children() if _holds_head_layer(child)]
        if not parts:
            if path:
                return ".".join(path), current
            raise EmbeddingError(f"{type(model).__name__} has no Linear head whose input could be read as an embedding")
        name, child = parts[-1]
        path.append(name)
        if not _holds_trunk(child):
            return ".".join(path), child
        current = child


def pool(features: torch.Tensor) -> torch.Tensor:
    """What a head received, as N x D float32 (maps and token sequences averaged over positions)."""
    if features.dim() == 4:
        features = features.mean(dim=(2, 3))
    elif features.dim() == 3:
        features = features.mean(dim=1)
    elif features.dim() != 2:
        features = features.flatten(1)
    return features.detach().float()


class HeadInputRecorder:
    """A forward pre-hook on the head that keeps its input (this thread's forwards only)."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head
        self.thread = threading.get_ident()
        self.features: torch.Tensor | None = None
        self.handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> HeadInputRecorder:
        self.handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _hook(self, module: nn.Module, inputs: tuple[object, ...]) -> None:
        if threading.get_ident() != self.thread or not inputs or not isinstance(inputs[0], torch.Tensor):
            return
        self.features = inputs[0]


def pooled_features(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings N x D float32, logits N x C float32) of a batch, from one forward pass."""
    _, head = head_module(model)
    batch = prepare_inputs(model, inputs)
    with eval_mode(model), torch.no_grad(), HeadInputRecorder(head) as recorder:
        logits = model(batch)
    if recorder.features is None:
        raise EmbeddingError(f"the head of {type(model).__name__} was never called in the forward pass")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise EmbeddingError("the model must return logits of shape N x C")
    return pool(recorder.features).cpu(), logits.detach().float().cpu()


__all__ = ["EmbeddingError", "HeadInputRecorder", "head_module", "pool", "pooled_features"]
