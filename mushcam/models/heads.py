"""Classification heads rebuilt from their state-dict keys alone, and described in words.

A state dict names each parametrised module and its tensors' shapes, which fixes Linear,
Conv 1x1, BatchNorm1d and LayerNorm layers exactly. Parameter-free modules leave no key:
in eval mode Dropout, Identity and Flatten (of an N x D input) do nothing, and the one thing
that matters, the activation between hidden Linear layers, is the entry's
``head_activation`` (ReLU unless it says otherwise). Placement, read from the index gaps of
a Sequential (``Linear(0) ReLU(1) BatchNorm(2)`` vs ``Linear(0) BatchNorm(1) ReLU(2)``): the
activation follows a hidden Linear in the first free index after it, after an adjacent
BatchNorm/LayerNorm when there is one; with no free index it is applied inside that layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from mushcam.exceptions import MushcamError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish}
_FUNCTIONAL = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "hardswish": F.hardswish}


class HeadError(MushcamError):
    """A head's keys do not describe layers that can be rebuilt (the message lists them)."""


class _ThenActivation:
    """Mixin: apply a named activation after the layer's own forward (no state-dict key)."""

    activation_name: str = "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _FUNCTIONAL[self.activation_name](super().forward(x))  # type: ignore[misc]


class LinearThenActivation(_ThenActivation, nn.Linear):
    """A Linear followed by an activation, for a head that has no free index to hold it."""


class BatchNormThenActivation(_ThenActivation, nn.BatchNorm1d):
    """A BatchNorm1d followed by an activation."""


class LayerNormThenActivation(_ThenActivation, nn.LayerNorm):
    """A LayerNorm followed by an activation."""


_THEN = {
    nn.Linear: LinearThenActivation,
    nn.BatchNorm1d: BatchNormThenActivation,
    nn.LayerNorm: LayerNormThenActivation,
}


def _leaf(params: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """One parametrised module from its tensors: Linear, Conv 1x1, BatchNorm1d or LayerNorm."""
    names = set(params)
    weight = params.get("weight")
    shapes = ", ".join(f"{where}{k} {tuple(v.shape)}" for k, v in params.items())
    if weight is not None and weight.dim() == 2 and names <= {"weight", "bias"}:
        return nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in names)
    if weight is not None and weight.dim() == 4 and weight.shape[2:] == (1, 1) and names <= {"weight", "bias"}:
        return nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias="bias" in names)
    if weight is not None and weight.dim() == 1 and {"running_mean", "running_var"} <= names:
        return nn.BatchNorm1d(weight.shape[0])
    if weight is not None and weight.dim() == 1 and names <= {"weight", "bias"}:
        return nn.LayerNorm(weight.shape[0])
    raise HeadError(f"cannot rebuild a head layer from {shapes}: not a Linear, BatchNorm1d or LayerNorm")


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return True
    children = [m for m in module.children() if any(True for _ in m.parameters())]
    return bool(children) and _is_linear(children[-1])


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.BatchNorm1d, nn.LayerNorm))


def _with_activation(module: nn.Module, activation: str) -> nn.Module:
    """The same layer (same keys) with ``activation`` applied after it."""
    if isinstance(module, nn.Sequential):  # a nested block: the activation becomes its last member
        names = [name for name, _ in module.named_children()]
        slot = str(len(names)) if all(n.isdigit() for n in names) else "activation"
        module.add_module(slot, ACTIVATIONS[activation]())
        return module
    cls = _THEN.get(type(module))
    if cls is None:
        raise HeadError(f"cannot place an activation after {type(module).__name__}")
    if isinstance(module, nn.Linear):
        out = cls(module.in_features, module.out_features, bias=module.bias is not None)
    elif isinstance(module, nn.BatchNorm1d):
        out = cls(module.num_features)
    else:
        out = cls(module.normalized_shape[0])
    out.activation_name = activation
    return out


def _split(params: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Own tensors (``weight``) and children's tensors grouped by child name, in key order."""
    own: dict[str, torch.Tensor] = {}
    children: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in params.items():
        head, dot, rest = key.partition(".")
        if dot:
            children.setdefault(head, {})[rest] = value
        else:
            own[key] = value
    return own, children


def rebuild_head(params: Mapping[str, torch.Tensor], activation: str = "relu", where: str = "") -> nn.Module:
    """A module whose state-dict keys are exactly ``params``' keys, computing the head they describe.

    Keys without a dot are one layer's tensors; ``0.weight, 3.weight`` are a Sequential with
    free indices between; named children (``fc1.weight, fc2.weight``) run in key order.
    """
    own, children = _split(params)
    if own and children:
        raise HeadError(f"cannot rebuild a head from {where or 'the'} keys {', '.join(list(params)[:6])}")
    if own:
        return _leaf(own, where)
    built = {name: rebuild_head(sub, activation, f"{where}{name}.") for name, sub in children.items()}
    if all(name.isdigit() for name in built):
        return _indexed(built, activation)
    return _named(built, activation)


def _activation_plan(order: list[str], built: Mapping[str, nn.Module], free: set[int] | None) -> dict[str, str]:
    """Where each hidden Linear's activation goes: ``{"gap:<index>"| "after:<name>": name}``."""
    plan: dict[str, str] = {}
    linear_positions = [i for i, name in enumerate(order) if _is_linear(built[name])]
    for pos in linear_positions[:-1]:
        name = order[pos]
        nxt = order[pos + 1] if pos + 1 < len(order) else None
        target = name
        if free is not None:
            index = int(name)
            if index + 1 in free:
                plan[f"gap:{index + 1}"] = name
                continue
            if nxt is not None and _is_norm(built[nxt]):
                target = nxt
                if int(nxt) + 1 in free:
                    plan[f"gap:{int(nxt) + 1}"] = name
                    continue
        elif nxt is not None and _is_norm(built[nxt]):
            target = nxt
        plan[f"after:{target}"] = name
    return plan


def _indexed(built: dict[str, nn.Module], activation: str) -> nn.Module:
    last = max(int(name) for name in built)
    order = sorted(built, key=int)
    free = {i for i in range(last + 1) if str(i) not in built}
    plan = _activation_plan(order, built, free) if activation != "none" else {}
    layers: list[nn.Module] = []
    for i in range(last + 1):
        if str(i) in built:
            module = built[str(i)]
            if f"after:{i}" in plan:
                module = _with_activation(module, activation)
            layers.append(module)
        elif f"gap:{i}" in plan:
            layers.append(ACTIVATIONS[activation]())
        else:
            layers.append(nn.Dropout())  # a free index: Dropout, Flatten or Identity; all no-ops in eval
    return nn.Sequential(*layers)


def _named(built: dict[str, nn.Module], activation: str) -> nn.Module:
    order = list(built)
    plan = _activation_plan(order, built, None) if activation != "none" else {}
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name in order:
        module = built[name]
        if f"after:{name}" in plan:
            layers[name] = module
            layers[f"{name}_activation"] = ACTIVATIONS[activation]()
        else:
            layers[name] = module
    return nn.Sequential(layers)


def output_width(module: nn.Module) -> int:
    """The number of outputs of a head: its last Linear (or 1x1 Conv)'s out features."""
    last = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not last:
        raise HeadError("the head has no Linear layer")
    return int(getattr(last[-1], "out_features", None) or last[-1].out_channels)


def input_width(module: nn.Module) -> int | None:
    """The width a head expects: its first Linear (or Conv/norm)'s input features."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return int(m.in_features)
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
        if isinstance(m, (nn.BatchNorm1d,)):
            return int(m.num_features)
        if isinstance(m, nn.LayerNorm):
            return int(m.normalized_shape[0])
    return None


def describe(module: nn.Module) -> str:
    """The head as one line: ``Dropout → Linear(2048→512) → ReLU → Dropout → Linear(512→9)``."""
    parts: list[str] = []
    _describe(module, parts)
    return " → ".join(parts) or "Identity"


def _describe(module: nn.Module, parts: list[str]) -> None:
    children = list(module.children())
    if isinstance(module, nn.Linear):
        parts.append(f"Linear({module.in_features}→{module.out_features})")
    elif isinstance(module, nn.Conv2d):
        parts.append(f"Conv{module.kernel_size[0]}x{module.kernel_size[1]}({module.in_channels}→{module.out_channels})")
    elif isinstance(module, nn.BatchNorm1d):
        parts.append(f"BatchNorm1d({module.num_features})")
    elif isinstance(module, nn.LayerNorm):
        parts.append(f"LayerNorm({module.normalized_shape[0]})")
    elif isinstance(module, nn.Identity):
        return
    elif children:
        for child in children:
            _describe(child, parts)
        return
    else:
        parts.append(type(module).__name__)
        return
    if isinstance(module, _ThenActivation):
        parts.append(type(ACTIVATIONS[module.activation_name]()).__name__)


__all__ = [
    "ACTIVATIONS",
    "HeadError",
    "describe",
    "input_width",
    "output_width",
    "rebuild_head",
]
