"""Grad-CAM layers: resolving a dotted path (in the source model's or the architecture's own
naming), reading a layer's output as a feature map, and choosing a layer automatically.

Feature maps come in three layouts: N x K x h x w (CNNs); N x h x w x C (Swin's stages,
channels last); N x T x C token sequences (ViT) whose last h·w tokens form a square grid
after 1 + registers prefix tokens (the class token), which are dropped. Both are read as
N x C x h x w, which is what pytorch-grad-cam's ``reshape_transform`` does for them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mushcam.exceptions import MushcamError

# Attribute on a loaded model: {source path prefix: own path prefix}, e.g. {"backbone.": ""}.
LAYER_ALIASES_ATTR = "mushcam_layer_aliases"
# Prefix tokens (class token, distillation token, registers) a token grid may start with.
MAX_PREFIX_TOKENS = 8


class LayerError(MushcamError):
    """A layer path that names no module of the model (the message lists valid names)."""


def resolve_layer(model: nn.Module, path: str) -> str:
    """The model's own path for ``path``, written natively or in the source model's naming."""
    if path:
        try:
            model.get_submodule(path)
            return path
        except AttributeError:
            pass
        aliases: dict[str, str] = getattr(model, LAYER_ALIASES_ATTR, None) or {}
        for source in sorted(aliases, key=len, reverse=True):
            if path.startswith(source):
                candidate = aliases[source] + path[len(source):]
                try:
                    model.get_submodule(candidate)
                    return candidate
                except AttributeError:
                    continue
    raise _no_such_layer(model, path)


def get_layer(model: nn.Module, path: str) -> nn.Module:
    """The sub-module at a dotted path (``layer4``, ``features.7``, ``backbone.layer4``).

    A wrong path lists valid ones."""
    return model.get_submodule(resolve_layer(model, path))


def _no_such_layer(model: nn.Module, path: str) -> LayerError:
    modules = dict(model.named_modules())
    parts = path.split(".")
    parent = ""
    for depth in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:depth]) in modules:
            parent = ".".join(parts[:depth])
            break
    children = [name for name, _ in modules[parent].named_children()]
    valid = [f"{parent}.{child}" if parent else child for child in children]
    where = f"under {parent!r}" if parent else "at the top level"
    aliases = getattr(model, LAYER_ALIASES_ATTR, None) or {}
    also = ""
    if aliases:
        also = " (the source model's names work too: " + ", ".join(
            f"'{src}…' = '{dst or ''}…'" for src, dst in aliases.items()) + ")"
    return LayerError(
        f"no module named {path!r} in {type(model).__name__}; valid names {where}: "
        f"{', '.join(valid)} (deeper modules are named with dots, e.g. 'layer4.2.conv3'){also}"
    )


def channels_last_module(model: nn.Module, path: str) -> bool:
    """Whether ``path`` lies inside a Swin transformer (whose stages output N x h x w x C)."""
    parts = path.split(".") if path else []
    for depth in range(len(parts) + 1):
        try:
            module = model.get_submodule(".".join(parts[:depth]))
        except AttributeError:
            return False
        if type(module).__name__.startswith("SwinTransformer"):
            return True
    return False


def layout_of(output: torch.Tensor, channels_last: bool) -> str | None:
    """``"nchw"``, ``"nhwc"``, ``"tokens"``, or None when ``output`` is not a spatial map."""
    if output.dim() == 4:
        n, a, b, c = output.shape
        if channels_last and a == b and b != c:
            return "nhwc"
        return "nchw"
    if output.dim() == 3:
        tokens = output.shape[1]
        side = math.isqrt(tokens)
        if side > 1 and tokens - side * side <= MAX_PREFIX_TOKENS:
            return "tokens"
    return None


def as_feature_map(output: torch.Tensor, layout: str) -> torch.Tensor:
    """A layer output as N x C x h x w (prefix tokens dropped, channels moved first)."""
    if layout == "nchw":
        return output
    if layout == "nhwc":
        return output.permute(0, 3, 1, 2)
    n, tokens, channels = output.shape
    side = math.isqrt(tokens)
    grid = output[:, tokens - side * side:, :]
    return grid.reshape(n, side, side, channels).permute(0, 3, 1, 2)


def spatial_size(output: torch.Tensor, layout: str) -> tuple[int, int]:
    fmap = as_feature_map(output, layout)
    return int(fmap.shape[2]), int(fmap.shape[3])


class _MapRecorder:
    """Forward hooks that keep every square spatial map a module outputs (a clone, so it is a
    leaf of its own gradient) and what the last Linear received (the features behind the logits)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {module: name for name, module in model.named_modules() if name}
        self.records: list[tuple[str, torch.Tensor, str]] = []  # (name, kept output, layout)
        self.seen: dict[int, int] = {}  # id(tensor) -> index in records
        self.head_input: list[torch.Tensor] = []

    def hook(self, module: nn.Module, inputs: object, output: object) -> object:
        if isinstance(module, nn.Linear) and inputs and isinstance(inputs[0], torch.Tensor):  # type: ignore[index]
            self.head_input[:] = [inputs[0]]  # type: ignore[index]
        if not isinstance(output, torch.Tensor) or module not in self.names:
            return None
        records = self.records
        if id(output) in self.seen:  # a container returning its last child's tensor: keep the outer name
            index = self.seen[id(output)]
            records[index] = (self.names[module], records[index][1], records[index][2])
            records.append(records.pop(index))
            self.seen.update({id(t): i for i, (_, t, _) in enumerate(records)})
            return None
        layout = layout_of(output, channels_last_module(self.model, self.names[module]))
        if layout is None:
            return None
        h, w = spatial_size(output, layout)
        if h * w <= 1 or h != w:  # inputs are square: a non-square "map" is not spatial (attention heads)
            return None
        kept = output.clone()
        records.append((self.names[module], kept, layout))
        self.seen[id(kept)] = len(records) - 1
        return kept


def _probe(model: nn.Module, size: int, recorder: _MapRecorder) -> tuple[torch.Tensor | None, ...]:
    """One forward of a fixed random input with the hooks on, then the gradient of the head's
    features (randomly weighted) with respect to every recorded map; modes restored after."""
    handles = [module.register_forward_hook(recorder.hook) for module in recorder.names]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=generator)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        x = x.to(device=parameter.device, dtype=parameter.dtype)
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            x.requires_grad_(True)
            logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise LayerError("the model does not return N x C logits, so no layer can be chosen")
            if not recorder.records:
                raise LayerError(
                    f"no module of {type(model).__name__} outputs a spatial feature map at {size} px: set \"layer\" "
                    "in the manifest entry"
                )
            # The features behind the logits, not the logits: a fresh head may be all zeros (ViT's is).
            head_input = recorder.head_input
            if head_input and head_input[0].requires_grad:
                features = head_input[0]
                weights = torch.rand(features.shape, generator=generator).to(features) + 0.5
                score = (features * weights).sum()
            else:
                score = logits[0, int(logits[0].argmax())]
            return torch.autograd.grad(score, [t for _, t, _ in recorder.records], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in was_training:
            module.training = training


def _pick(
    model: nn.Module, recorder: _MapRecorder, grads: tuple[torch.Tensor | None, ...]
) -> list[tuple[str, torch.Tensor]]:
    """The maps whose gradient reaches more than one position, preferring the head's width;
    the last of them is the answer."""
    width = int(recorder.head_input[0].shape[-1]) if recorder.head_input else None
    valid: list[tuple[str, torch.Tensor]] = []
    for (name, tensor, layout), grad in zip(recorder.records, grads, strict=True):
        if grad is not None and int((as_feature_map(grad, layout).abs().sum(dim=1)[0] > 0).sum()) > 1:
            valid.append((name, as_feature_map(tensor, layout)))
    # Prefer the width the head reads (a ViT's residual stream, not its q/k/v projections).
    matching = [item for item in valid if item[1].shape[1] == width]
    chosen = matching or valid
    # A parameter-free reshuffle (Swin's final Permute) of the map before it: name the layer itself.
    while len(chosen) > 1 and not any(True for _ in model.get_submodule(chosen[-1][0]).parameters()) \
            and chosen[-1][1].shape == chosen[-2][1].shape and torch.equal(chosen[-1][1], chosen[-2][1]):
        chosen = chosen[:-1]
    return chosen


def choose_layer(model: nn.Module, size: int) -> tuple[str, str]:
    """The Grad-CAM layer when none is given, and a note saying which and why.

    One forward and one gradient on a fixed random ``size`` x ``size`` input, with hooks on
    every module (the gradient is of the features the last Linear receives, so that an
    untrained head cannot hide anything): the answer is the last module (in the order outputs
    are produced; the outermost of modules returning the same tensor) whose output is a spatial
    map with h·w > 1 and whose gradient reaches more than one of its positions (a ViT's last
    blocks pass only the class token on to the logits, so their maps would be empty),
    preferring maps as wide as the features the head reads.
    """
    recorder = _MapRecorder(model)
    chosen = _pick(model, recorder, _probe(model, size, recorder))
    if chosen:
        name, fmap = chosen[-1]
        k, h, w = fmap.shape[1:]
        return name, f"chosen automatically: {name} (the last {k}×{h}×{w} feature map before the logits at {size} px)"
    raise LayerError(
        "no spatial feature map of the model influences the logits at more than one position: set \"layer\""
    )


__all__ = [
    "LAYER_ALIASES_ATTR",
    "LayerError",
    "as_feature_map",
    "channels_last_module",
    "choose_layer",
    "get_layer",
    "layout_of",
    "resolve_layer",
]
