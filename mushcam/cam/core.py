"""The CAM engine's capture path: one forward pass, and one head-only backward when asked.

For the explained class c with logit ``y_c`` and the activation A (K x h x w) of a chosen
layer, :func:`capture` returns A and (for gradient methods) ``G = d y_c / d A``; every
method of :mod:`mushcam.cam.registry` turns them into a raw map.

How it stays cheap and leaves no trace:

- The forward pass runs under ``torch.no_grad()``: the trunk before the target layer builds
  no autograd graph. A forward hook (:class:`LayerRecorder`) turns the layer's output into a
  fresh leaf tensor and switches gradient recording on (grad mode is thread-local) for the
  rest of the forward, so the graph covers only layer -> logits, and ``torch.autograd.grad``
  differentiates the head alone (Grad-CAM costs about one forward pass). Parameters are
  never touched: no ``.grad`` is written, ``requires_grad`` is unchanged.
- Hooks are registered per call and removed on every path; they ignore forwards from
  other threads (a Streamlit server shares one model between sessions).
- The model runs in eval mode (what is deployed); a model in training mode is switched for
  the call and restored afterwards, module by module, on every path.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mushcam.cam.targets import Score, class_score
from mushcam.exceptions import MushcamError
from mushcam.finite import require_finite
from mushcam.models.layers import as_feature_map, channels_last_module, get_layer, layout_of, resolve_layer

Progress = Callable[[int, int], None]  # progress(done, total), called by long methods after each batch
ClassIndex = int | Sequence[int] | torch.Tensor | None


class GradCAMError(MushcamError):
    """A CAM cannot be computed for this model, layer or class (the message says why)."""


@dataclass(frozen=True)
class CamResult:
    """Raw CAM maps and the model's outputs for one batch.

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


GradCAMResult = CamResult  # the name from before there were other methods


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


class LayerRecorder:
    """Forward hooks that capture target activations and open the autograd graph there.

    A context manager: hooks are registered on entry and removed on exit, on every path.
    The first hooked output reached (it does not require grad, since the trunk runs under
    no_grad) becomes a leaf with ``requires_grad``; recording is switched on from there.
    Later hooked outputs are already in the graph and are recorded as they are. Each hook
    returns a clone so that in-place operations downstream cannot corrupt what was saved.
    Forwards from other threads than the creating one are ignored.
    """

    def __init__(
        self, modules: dict[str, nn.Module], channels_last: dict[str, bool], keep_inputs: bool = False
    ) -> None:
        self.modules = modules
        self.channels_last = channels_last
        self.keep_inputs = keep_inputs  # also keep each layer's (first) input, detached (LeGrad)
        self.inputs: dict[str, torch.Tensor] = {}
        self.activations: dict[str, torch.Tensor] = {}
        self.layouts: dict[str, str] = {}
        self.thread = threading.get_ident()
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> LayerRecorder:
        try:
            for name, module in self.modules.items():
                self.handles.append(module.register_forward_hook(self._hook(name)))
                if self.keep_inputs:
                    self.handles.append(module.register_forward_pre_hook(self._input_hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()  # never swallows: returns None

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _input_hook(self, name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if threading.get_ident() == self.thread and args and isinstance(args[0], torch.Tensor):
                self.inputs[name] = args[0].detach()

        return hook

    def _hook(self, name: str) -> Callable[[nn.Module, object, object], object]:
        def hook(module: nn.Module, inputs: object, output: object) -> object:
            if threading.get_ident() != self.thread:
                return None  # another session's forward pass on a shared model
            self.layouts[name] = _checked_layout(name, output, self.channels_last[name])
            if output.requires_grad:
                activation = output
            else:
                activation = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            self.activations[name] = activation
            return activation.clone()

        return hook


def _checked_layout(name: str, output: object, channels_last: bool) -> str:
    """The layout of a hooked output ("nchw", "nhwc", "tokens"); GradCAMError for others."""
    if not isinstance(output, torch.Tensor):
        raise GradCAMError(
            f"layer {name!r} returns {type(output).__name__}, not a tensor; choose a "
            "convolutional layer or block"
        )
    layout = layout_of(output, channels_last)
    if layout is None:
        raise GradCAMError(
            f"layer {name!r} gives a {output.dim()}-D output {tuple(output.shape)}; Grad-CAM "
            "needs a 4-D feature map (N x K x h x w) or a transformer's token grid: choose a "
            "convolutional layer or block"
        )
    return layout


def class_indices(class_idx: ClassIndex, logits: torch.Tensor) -> torch.Tensor:
    """The explained class of each image (N,): None = predicted, one int for all, or one each."""
    n, num_classes = logits.shape
    if class_idx is None:
        chosen = predicted_classes(logits)
    elif isinstance(class_idx, int) and not isinstance(class_idx, bool):
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


def layer_recorder(model: nn.Module, layers: Sequence[str], keep_inputs: bool = False) -> LayerRecorder:
    """The hooks that keep each layer's output (and with ``keep_inputs`` its input) during one forward."""
    try:
        modules = {name: get_layer(model, name) for name in layers}
    except MushcamError:
        raise
    except ValueError as exc:  # an unknown layer name: the user's input
        raise GradCAMError(str(exc)) from None
    channels_last = {name: channels_last_module(model, resolve_layer(model, name)) for name in layers}
    return LayerRecorder(modules, channels_last, keep_inputs)


def recorded_forward(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str],
    recorder: LayerRecorder,
    class_idx: ClassIndex,
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
    return logits, class_indices(class_idx, logits)


@dataclass(frozen=True)
class Capture:
    """What one forward (and, if asked, one head-only backward) pass gives.

    ``activations[name]``: N x K x h x w, detached (a ViT's or Swin's tokens as their grid).
    ``gradients[name]``: d y_c / d A of the same shape, or None when not asked for.
    ``logits``: N x C. ``class_idx``: (N,). ``inputs``: the batch on the model's device and
    dtype (for methods that re-run it). ``raw[name]`` and ``layouts[name]``: the layer's
    output as it came ("nchw", "nhwc" or "tokens"), for methods that put a modified output
    back into the network.
    """

    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor] | None
    logits: torch.Tensor
    class_idx: torch.Tensor
    inputs: torch.Tensor
    raw: dict[str, torch.Tensor]
    layouts: dict[str, str]
    hessian_products: dict[str, torch.Tensor] | None = None  # H A = d(G . A)/dA at A, when asked (ShapleyCAM)
    layer_inputs: dict[str, torch.Tensor] | None = None  # what entered each layer, when asked (LeGrad)


def capture(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str | Sequence[str],
    class_idx: ClassIndex = None,
    gradients: bool = True,
    score: Score = class_score,
    second_order: bool = False,
    keep_inputs: bool = False,
) -> Capture:
    """Run ``model`` once on ``inputs``; keep the target layers' activations (and gradients).

    With ``gradients`` the sum of ``score(logits, classes)`` (default ``y_{n, c_n}``; see
    :mod:`mushcam.cam.targets` for contrasts) is differentiated with respect to the hooked
    activations only (images in a batch do not interact in eval mode, so each image's gradient
    is its own). Costs one forward pass, plus a head-only backward pass when ``gradients`` is true.
    ``second_order`` (with ``gradients``) also keeps the Hessian-vector product ``H A`` with
    ``H = d^2 y_c / d A^2``: a second head-only backward through the first one's graph.
    ``keep_inputs`` also keeps what entered each layer (detached), for methods that recompute a block.
    """
    layers = layer_names(layer)
    inputs = prepare_inputs(model, inputs)
    with eval_mode(model), layer_recorder(model, layers, keep_inputs) as recorder, torch.no_grad():
        logits, chosen = recorded_forward(model, inputs, layers, recorder, class_idx)
        leaves = [recorder.activations[name] for name in layers]
        grads, hvps = None, None
        if gradients:
            grads, hvps = _head_gradients(logits, chosen, layers, leaves, recorder.layouts, score, second_order)
    return Capture(
        activations={name: as_feature_map(leaf.detach(), recorder.layouts[name])
                     for name, leaf in zip(layers, leaves, strict=True)},
        gradients=grads,
        logits=logits.detach(),
        class_idx=chosen.detach(),
        inputs=inputs,
        raw={name: leaf.detach() for name, leaf in zip(layers, leaves, strict=True)},
        layouts=dict(recorder.layouts),
        hessian_products=hvps,
        layer_inputs=dict(recorder.inputs) if keep_inputs else None,
    )


def _head_gradients(
    logits: torch.Tensor,
    chosen: torch.Tensor,
    layers: Sequence[str],
    leaves: Sequence[torch.Tensor],
    layouts: dict[str, str],
    score: Score = class_score,
    second_order: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``d (sum_n score_n) / d A`` for each hooked leaf, as feature maps (the head-only backward),
    and with ``second_order`` the Hessian-vector products ``H A`` (None otherwise)."""
    if not logits.requires_grad:
        raise GradCAMError(f"no gradient flows from the output back to layer {layers[0]!r}")
    with torch.enable_grad():
        total = score(logits, chosen).sum()
        found = torch.autograd.grad(total, list(leaves), allow_unused=True, create_graph=second_order)
    grads = {}
    for name, gradient in zip(layers, found, strict=True):
        if gradient is None:
            raise GradCAMError(f"no gradient flows from the output back to layer {name!r}")
        grads[name] = as_feature_map(gradient.detach(), layouts[name])
    hvps = _hessian_products(found, leaves, layers, layouts) if second_order else None
    return grads, hvps


def _hessian_products(
    found: Sequence[torch.Tensor], leaves: Sequence[torch.Tensor], layers: Sequence[str], layouts: dict[str, str]
) -> dict[str, torch.Tensor]:
    """``H A`` per leaf: the gradient of ``G . A`` (A held fixed) with respect to A; 0 where the head is linear."""
    products = {}
    for name, gradient, leaf in zip(layers, found, leaves, strict=True):
        product = None
        if gradient.requires_grad:
            with torch.enable_grad():
                (product,) = torch.autograd.grad(gradient, leaf, grad_outputs=leaf.detach(), allow_unused=True,
                                                 retain_graph=True)
        product = torch.zeros_like(leaf) if product is None else product
        products[name] = as_feature_map(product.detach(), layouts[name])
    return products


@dataclass(frozen=True)
class MapRequest:
    """What a method's function gets to make the maps of one layer: the model (for methods
    that re-run it), the capture, the layer's name, the caller's ``batch_size`` (or None) and
    ``progress(done, total)``, which long methods call after every batch (a caller stops the
    computation by raising from it: the engine unwinds, its hooks removed in ``finally``)."""

    model: nn.Module
    captured: Capture
    layer: str
    batch_size: int | None = None
    progress: Progress | None = None

    def report(self, done: int, total: int) -> None:
        """Tell the caller ``done`` of ``total`` steps are finished (nothing when no one listens)."""
        if self.progress is not None:
            self.progress(done, total)

    def channel_reporter(self, image: int) -> Callable[[int], None]:
        """``on_batch(channels_done)`` for image ``image`` of the batch: reports channels done over all images."""
        images, channels = self.activation.shape[:2]
        return lambda done: self.report(image * channels + done, images * channels)

    @property
    def activation(self) -> torch.Tensor:
        """A at the layer: N x K x h x w."""
        return self.captured.activations[self.layer]

    @property
    def gradient(self) -> torch.Tensor:
        """G = d y_c / d A at the layer: N x K x h x w (the method must need gradients)."""
        if self.captured.gradients is None:
            raise GradCAMError("this method needs gradients, but the capture ran without them")
        return self.captured.gradients[self.layer]


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)`` as float32: weights N x K (per channel) or N x K x h x w."""
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    return torch.relu((weights * activation).sum(dim=1)).float()
