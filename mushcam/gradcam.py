"""The Grad-CAM engine.

For a target class c and the activation A (K x h x w) of a chosen layer::

    alpha_k = mean_ij  d y_c / d A_k[i, j]          (global-average-pooled gradient)
    cam     = ReLU( sum_k alpha_k * A_k )            (h x w, raw: not normalised)

How it stays cheap and leaves no trace:

- The forward pass runs under ``torch.no_grad()``: the trunk before the target layer builds
  no autograd graph. A forward hook turns the layer's output into a fresh leaf tensor and
  switches gradient recording on (grad mode is thread-local) for the rest of the forward,
  so the graph covers only layer -> logits, and ``torch.autograd.grad`` differentiates the
  head alone. Parameters are never touched: no ``.grad`` is written, ``requires_grad`` is
  unchanged.
- Hooks are registered per call and removed in ``finally``; they ignore forwards from
  other threads (a Streamlit server shares one model between sessions).
- The model runs in eval mode (what is deployed); a model in training mode is switched for
  the call and restored afterwards, module by module, on every path.
"""

from __future__ import annotations

from mushcam.finite import require_finite
from mushcam.exceptions import MushcamError

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mushcam.models.layers import as_feature_map, channels_last_module, get_layer, layout_of, resolve_layer


class GradCAMError(MushcamError):
    """Grad-CAM cannot be computed for this model, layer or class (the message says why)."""


@dataclass(frozen=True)
class GradCAMResult:
    """Raw Grad-CAM maps and the model's outputs for one batch.

    ``cams``: float32 N x h x w at the (first) layer's own resolution, ReLU'd, not
    normalised, not upsampled. ``cams_by_layer``: the same for every requested layer.
    ``logits``: N x C. ``class_idx``: the explained class of each image (N,).
    """

    cams: torch.Tensor
    logits: torch.Tensor
    class_idx: torch.Tensor
    cams_by_layer: dict[str, torch.Tensor]

    @property
    def probabilities(self) -> torch.Tensor:
        """Softmax of the logits, N x C."""
        return torch.softmax(self.logits.float(), dim=1)

    @property
    def predicted(self) -> torch.Tensor:
        """The predicted class of each image, (N,): see :func:`predicted_classes`."""
        return predicted_classes(self.logits)


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """Arg-max of the float32 softmax, (N,).

    Taken on the probabilities, not the logits, so that the class called "predicted" is the
    one with the highest probability shown to the user even when near-equal logits round to
    equal probabilities (as with untrained networks).
    """
    return torch.softmax(logits.detach().float(), dim=1).argmax(dim=1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block when ``model`` is in training mode; every module's flag restored.

    A model already in eval mode is left exactly as it is (walking its few hundred modules
    costs ~3% of a MobileNet forward pass); a sub-module the user put in training mode
    inside it is their explicit choice and is respected.
    """
    if not model.training:
        yield model
        return
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


class _LayerRecorder:
    """Forward hooks that capture target activations and open the autograd graph there.

    The first hooked output reached (it does not require grad, since the trunk runs under
    no_grad) becomes a leaf with ``requires_grad``; recording is switched on from there.
    Later hooked outputs are already in the graph and are recorded as they are. Each hook
    returns a clone so that in-place operations downstream cannot corrupt what was saved.
    """

    def __init__(self, modules: dict[str, nn.Module], channels_last: dict[str, bool]) -> None:
        self.modules = modules
        self.channels_last = channels_last
        self.activations: dict[str, torch.Tensor] = {}
        self.layouts: dict[str, str] = {}
        self.thread = threading.get_ident()
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _LayerRecorder:
        try:
            for name, module in self.modules.items():
                self.handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()  # never swallows: returns None

    def _remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, name: str):  # noqa: ANN202 - torch hook signature
        def hook(module: nn.Module, inputs: object, output: object) -> object:
            if threading.get_ident() != self.thread:
                return None  # another session's forward pass on a shared model
            if not isinstance(output, torch.Tensor):
                raise GradCAMError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor; choose a "
                    "convolutional layer or block"
                )
            layout = layout_of(output, self.channels_last[name])
            if layout is None:
                raise GradCAMError(
                    f"layer {name!r} gives a {output.dim()}-D output {tuple(output.shape)}; Grad-CAM "
                    "needs a 4-D feature map (N x K x h x w) or a transformer's token grid: choose a "
                    "convolutional layer or block"
                )
            self.layouts[name] = layout
            if output.requires_grad:
                activation = output
            else:
                activation = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            self.activations[name] = activation
            return activation.clone()

        return hook


def _class_indices(class_idx: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    n, num_classes = logits.shape
    if class_idx is None:
        chosen = predicted_classes(logits)
    elif isinstance(class_idx, (int,)) and not isinstance(class_idx, bool):
        chosen = torch.full((n,), int(class_idx), dtype=torch.long)
    else:
        chosen = torch.as_tensor(class_idx, dtype=torch.long).flatten()
        if chosen.numel() != n:
            raise GradCAMError(f"class_idx has {chosen.numel()} entries for a batch of {n} images")
    chosen = chosen.to(device=logits.device, dtype=torch.long)
    out_of_range = (chosen < 0) | (chosen >= num_classes)
    if bool(out_of_range.any()):
        bad = int(chosen[out_of_range][0])
        raise GradCAMError(f"class index {bad} is out of range: the model has {num_classes} classes")
    return chosen


def layer_names(layer: str | Sequence[str]) -> list[str]:
    """One dotted path or several, as a non-empty list."""
    layers = [layer] if isinstance(layer, str) else list(layer)
    if not layers:
        raise GradCAMError("no layer given")
    return layers


def prepare_inputs(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` as a detached N x C x H x W batch on the model's device and dtype."""
    if inputs.dim() == 3:
        inputs = inputs.unsqueeze(0)
    if inputs.dim() != 4:
        raise GradCAMError(f"inputs must be N x C x H x W; got shape {tuple(inputs.shape)}")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        inputs = inputs.to(device=parameter.device, dtype=parameter.dtype)
    return inputs.detach()


def layer_recorder(model: nn.Module, layers: Sequence[str]) -> _LayerRecorder:
    """The hooks that keep each layer's output during one forward (a context manager)."""
    try:
        modules = {name: get_layer(model, name) for name in layers}
    except MushcamError:
        raise
    except ValueError as exc:  # an unknown layer name: the user's input
        raise GradCAMError(str(exc)) from None
    channels_last = {name: channels_last_module(model, resolve_layer(model, name)) for name in layers}
    return _LayerRecorder(modules, channels_last)


def recorded_forward(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str],
    recorder: _LayerRecorder,
    class_idx: int | Sequence[int] | torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model inside ``recorder``; (logits N x C, explained class per image).

    Refuses outputs that are not finite N x C logits and layers the forward never reached.
    """
    logits = model(inputs)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise GradCAMError("the model must return logits of shape N x C")
    require_finite(logits, "logits")
    missing = [name for name in layers if name not in recorder.activations]
    if missing:
        raise GradCAMError(
            f"layer {missing[0]!r} was never reached in the forward pass, so it cannot "
            "explain the output; choose a layer the input passes through"
        )
    return logits, _class_indices(class_idx, logits)


def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str | Sequence[str],
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
) -> GradCAMResult:
    """Grad-CAM of ``model`` for a batch ``inputs`` (N x 3 x H x W) at ``layer``.

    ``layer`` is a dotted module path (``"layer4"``, or the source model's ``"backbone.layer4"``
    for a checkpoint loaded from a wrapper) or several. A ViT token layer or a Swin stage is
    read as its token grid (prefix tokens dropped, channels first). ``class_idx`` is None (each
    image's predicted class), one int for all images, or one per image.
    """
    layers = layer_names(layer)
    inputs = prepare_inputs(model, inputs)
    with eval_mode(model), layer_recorder(model, layers) as recorder, torch.no_grad():
        logits, chosen = recorded_forward(model, inputs, layers, recorder, class_idx)
        if not logits.requires_grad:
            raise GradCAMError(f"no gradient flows from the output back to layer {layers[0]!r}")
        score = logits.gather(1, chosen.view(-1, 1)).sum()
        activations = [recorder.activations[name] for name in layers]
        with torch.enable_grad():
            gradients = torch.autograd.grad(score, activations, allow_unused=True)

    cams_by_layer: dict[str, torch.Tensor] = {}
    for name, activation, gradient in zip(layers, activations, gradients, strict=True):
        if gradient is None:
            raise GradCAMError(f"no gradient flows from the output back to layer {name!r}")
        layout = recorder.layouts[name]
        feature_map = as_feature_map(activation.detach(), layout)
        weights = as_feature_map(gradient, layout).mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * feature_map).sum(dim=1))
        require_finite(cam, f"Grad-CAM maps at layer {name!r}")
        cams_by_layer[name] = cam.float()
    return GradCAMResult(
        cams=cams_by_layer[layers[0]],
        logits=logits.detach(),
        class_idx=chosen.detach(),
        cams_by_layer=cams_by_layer,
    )
