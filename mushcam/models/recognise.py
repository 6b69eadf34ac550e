"""Recognise a state dict as an architecture plus a head, and load it to the source's function.

No user code runs. The architecture's trunk (every key outside its head slot) is looked for
under any prefix (``module.``, ``model.``, ``backbone.``, ``_orig_mod.``, combinations):
the prefix under which most trunk names appear wins. What is left is the head:

- in the stock slot (``fc.*``, ``classifier.*``): the stock head with N classes, the stock
  slot with its final layer replaced (``classifier.3 = Sequential(Dropout, Linear)``), or a
  new head rebuilt from its keys (:mod:`mushcam.models.heads`);
- beside the trunk's prefix (``backbone.*`` + ``classifier.*``: a wrapper such as the
  thesis's ``MushroomClassifier``): the wrapper's head put in the slot, which receives what
  the wrapper's backbone returned with its own head set to Identity;
- both: the stock head kept, the wrapper's head after it.

The model is built on the ``meta`` device and the weights assigned (``assign=True``), so the
weights are held once, not twice. Layer paths of the source model (``backbone.layer4``) are
recorded as aliases of the architecture's own (``layer4``) on the model.
"""

from __future__ import annotations

import functools
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mushcam.models.checkpoint import CheckpointError
from mushcam.models.guess import guess_architecture
from mushcam.models.heads import HeadError, describe, input_width, output_width, rebuild_head
from mushcam.models.layers import LAYER_ALIASES_ATTR
from mushcam.models.registry import Skeleton, build_architecture, skeleton

# Module names whose buffers are training state, not the network (a weighted loss's class weights).
_TRAINING_ONLY = ("criterion", "loss", "loss_fn", "lossfn", "loss_func", "metrics", "metric")


@dataclass(frozen=True)
class Plan:
    """How a state dict maps onto an architecture (see the module docstring)."""

    arch: str
    kwargs: dict[str, Any]
    prefix: str
    rename: dict[str, str]
    stock_classes: int
    slot_builder: Callable[[], nn.Module] | None
    how: str
    aliases: dict[str, str]
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Recognised:
    """A loaded model and how it was understood (what the Home page shows)."""

    model: nn.Module
    arch: str
    head: str
    how: str
    num_classes: int
    final_key: str
    final_shape: tuple[int, ...]


def _first(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", … {len(items) - n} more" if len(items) > n else "")


def _training_only(key: str) -> bool:
    parts = key.split(".")
    return parts[-1] == "n_averaged" or any(
        p.lower() in _TRAINING_ONLY or p.lower().startswith("criterion") for p in parts[:-1]
    )


def _best_prefix(keys: list[str], sk: Skeleton) -> tuple[str, int, Counter[str]]:
    counts: Counter[str] = Counter()
    for key in keys:
        start = 0
        while True:
            if key[start:] in sk.trunk:
                counts[key[:start]] += 1
            dot = key.find(".", start)
            if dot < 0:
                break
            start = dot + 1
    if not counts:
        return "", 0, counts
    prefix, n = max(counts.items(), key=lambda kv: (kv[1], -len(kv[0])))
    return prefix, n, counts


def _parent(prefix: str) -> str:
    """``module.backbone.`` -> ``module.``; ``backbone.`` -> ``''``."""
    parts = prefix.rstrip(".").split(".")
    return ".".join(parts[:-1]) + "." if len(parts) > 1 else ""


def _not_this_arch(state: Mapping[str, torch.Tensor], sk: Skeleton, arch: str, name: str) -> CheckpointError:
    guess = guess_architecture(state)
    if guess and guess.arch != arch:
        where = f" under '{guess.prefix}'" if guess.prefix else ""
        if guess.total:
            hint = (f"its trunk keys fit {guess.arch} ({guess.matched} of {guess.total}{where}): set "
                    f"\"arch\": \"{guess.arch}\" in the manifest entry")
        else:
            hint = f"its keys look like a {guess.arch} model: set \"arch\" to the variant that was trained"
    else:
        hint = (f"first keys: {_first(list(state), 4)}; set \"arch\" to the architecture it was trained as, or "
                "build it from your own code with \"code\": \"file.py:ClassName\"")
    return CheckpointError(
        f"{name}: checkpoint has no {sk.final_weight_key!r}: it is not a {arch} (too few of its {len(state)} keys fit "
        f"{arch}'s trunk); {hint}"
    )


def plan(
    state: Mapping[str, torch.Tensor],
    arch: str,
    kwargs: Mapping[str, Any] | None = None,
    activation: str = "relu",
    name: str = "checkpoint",
) -> Plan:
    """How ``state`` loads as ``arch``; :class:`CheckpointError` naming what was found if it does not."""
    kwargs = dict(kwargs or {})
    sk = skeleton(arch, kwargs)
    notes: list[str] = []
    ignored = [k for k in state if _training_only(k)]
    if ignored:
        notes.append(f"ignored training state {_first(ignored, 2)}")
    keys = [k for k in state if k not in ignored]
    needed = [t for t in sk.trunk if not t.endswith("num_batches_tracked")]
    prefix, matched, counts = _best_prefix(keys, sk)
    if matched < max(1, len(needed) // 2):
        raise _not_this_arch(state, sk, arch, name)
    # A second full copy of the network (an EMA beside the live weights) is set aside.
    for other, n in counts.items():
        if other != prefix and n >= 0.9 * len(needed) and not prefix.startswith(other) and not other.startswith(prefix):
            copies = [k for k in keys if k.startswith(other)]
            keys = [k for k in keys if not k.startswith(other)]
            notes.append(f"ignored a second copy of the weights under '{other}' ({len(copies)} keys)")

    missing = [prefix + t for t in needed if prefix + t not in state]
    shapes = [
        f"{prefix + t}: checkpoint {tuple(state[prefix + t].shape)} vs model {sk.shapes[t]}"
        for t in sk.trunk
        if prefix + t in state and tuple(state[prefix + t].shape) != sk.shapes[t]
    ]
    consumed = {prefix + t for t in sk.trunk}
    slot_prefix = f"{prefix}{sk.slot}."
    parent = _parent(prefix) if prefix else None
    in_slot: dict[str, torch.Tensor] = {}
    outside: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key in keys:
        if key in consumed:
            continue
        if key.startswith(slot_prefix):
            in_slot[key[len(slot_prefix):]] = state[key]
        elif parent is not None and not key.startswith(prefix) and key.startswith(parent):
            outside[key[len(parent):]] = state[key]
        else:
            unexpected.append(key)
    if missing or unexpected or shapes:
        raise _does_not_fit(arch, sk, prefix, missing, unexpected, shapes, state, name)
    if not in_slot and not outside:
        raise CheckpointError(
            f"{name} holds {arch}'s trunk{_under(prefix)} but no classification head (no keys under "
            f"'{slot_prefix}' or beside the trunk): save the whole model's state_dict, head included"
        )
    return _plan_head(state, arch, kwargs, sk, prefix, parent, in_slot, outside, activation, notes, name)


def _under(prefix: str) -> str:
    return f" under '{prefix}'" if prefix else ""


def _does_not_fit(arch: str, sk: Skeleton, prefix: str, missing: list[str], unexpected: list[str],
                  shapes: list[str], state: Mapping[str, torch.Tensor], name: str) -> CheckpointError:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        shapes_of = ", ".join(str(tuple(state[k].shape)) for k in unexpected[:5])
        parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)}) of shapes {shapes_of}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches ({_first(shapes)})")
    hint = ""
    if shapes or missing or len(unexpected) > 4:
        guess = guess_architecture(state)
        if guess and guess.arch != arch and guess.exact:
            hint = f"; its trunk fits {guess.arch}: set \"arch\": \"{guess.arch}\" in the manifest entry"
    if not hint:
        hint = ("; if the model has layers beyond a trunk and a head, build it from your own code with "
                "\"code\": \"file.py:ClassName\" in the manifest entry")
    where = _under(prefix) or " at the top level"
    return CheckpointError(f"checkpoint does not fit {arch} (trunk keys{where}): " + "; ".join(parts) + hint)


def _stock_match(rel: Mapping[str, torch.Tensor], sk: Skeleton) -> int | None:
    """N if ``rel`` (keys relative to the slot) is the stock slot with N classes, else None."""
    stock = {k[len(sk.slot) + 1:]: s for k, s in sk.shapes.items() if k.startswith(sk.slot + ".")}
    if set(rel) != set(stock):
        return None
    final_rel = sk.final[len(sk.slot) + 1:] if sk.final != sk.slot else ""
    final_keys = {f"{final_rel}.weight" if final_rel else "weight", f"{final_rel}.bias" if final_rel else "bias"}
    n = None
    for key, shape in stock.items():
        got = tuple(rel[key].shape)
        if key in final_keys:
            if got[1:] != shape[1:]:
                return None
            n = got[0]
        elif got != shape:
            return None
    return n


def _final_replaced(rel: Mapping[str, torch.Tensor], sk: Skeleton) -> dict[str, torch.Tensor] | None:
    """The final layer's own keys if ``rel`` is the stock slot with only its final layer replaced."""
    if sk.final == sk.slot:
        return None
    final_rel = sk.final[len(sk.slot) + 1:]
    stock = {k[len(sk.slot) + 1:]: s for k, s in sk.shapes.items() if k.startswith(sk.slot + ".")}
    in_final = lambda k: k == final_rel or k.startswith(final_rel + ".")  # noqa: E731
    rest = {k: tuple(v.shape) for k, v in rel.items() if not in_final(k)}
    stock_rest = {k: s for k, s in stock.items() if not in_final(k)}
    if rest != stock_rest:
        return None
    return {k[len(final_rel) + 1:]: v for k, v in rel.items() if in_final(k)}


def _plan_head(state, arch, kwargs, sk, prefix, parent, in_slot, outside, activation, notes, name) -> Plan:  # noqa: ANN001, PLR0913
    rename = {prefix + t: t for t in sk.trunk if prefix + t in state}
    aliases: dict[str, str] = {}
    if prefix:
        parts = prefix.rstrip(".").split(".")
        for i in range(len(parts)):
            aliases[".".join(parts[i:]) + "."] = ""
    stock_classes = 1
    inner: Callable[[], nn.Module] | None = None
    inner_text = ""
    slot_prefix = f"{prefix}{sk.slot}."
    if in_slot:
        n = _stock_match(in_slot, sk)
        replaced = None if n is not None else _final_replaced(in_slot, sk)
        if n is not None:
            stock_classes = n
            inner_text = f"the stock {sk.slot} head"
        elif replaced is not None:
            where = f"{slot_prefix}{sk.final[len(sk.slot) + 1:]}."
            inner = functools.partial(_stock_slot_final_rebuilt, arch, kwargs, sk, replaced, activation, where)
            inner_text = f"the stock {sk.slot} with {sk.final} replaced"
        else:
            inner = functools.partial(rebuild_head, in_slot, activation, slot_prefix)
            inner_text = f"a custom head in the stock slot '{sk.slot}'"
        for rel in in_slot:
            rename[slot_prefix + rel] = f"{sk.slot}.{rel}"
    outer: Callable[[], nn.Module] | None = None
    if outside:
        heads = list(dict.fromkeys(k.split(".", 1)[0] for k in outside))
        single = len(heads) == 1 and all("." in k for k in outside)
        rel_out = {k.split(".", 1)[1]: v for k, v in outside.items()} if single else dict(outside)
        where = f"{parent}{heads[0]}." if single else (parent or "")

        outer = functools.partial(rebuild_head, rel_out, activation, where)

        target = f"{sk.slot}.1." if in_slot else f"{sk.slot}."
        for rel in rel_out:
            rename[where + rel] = target + rel
        if single:
            aliases[where] = target
        if in_slot:
            for rel in in_slot:
                rename[slot_prefix + rel] = f"{sk.slot}.0.{rel}"
    if outer is not None and inner is None and in_slot:  # stock head kept, wrapper head after it
        inner = functools.partial(_stock_slot, arch, stock_classes, kwargs, sk)
    builder = _slot_builder(inner, outer)
    how = _how(arch, prefix, sk, inner_text, outside, parent, notes)
    plan_ = Plan(arch, kwargs, prefix, rename, stock_classes, builder, how, aliases, tuple(notes))
    if builder is not None:
        _check_head(builder, sk, arch, name)
    return plan_


def _stock_slot(arch: str, num_classes: int, kwargs: dict[str, Any], sk: Skeleton) -> nn.Module:
    """The architecture's own head slot for ``num_classes``, on the current default device."""
    device = str(torch.get_default_device())
    return build_architecture(arch, num_classes, kwargs, device=device).get_submodule(sk.slot)


def _stock_slot_final_rebuilt(arch: str, kwargs: dict[str, Any], sk: Skeleton, final: dict[str, torch.Tensor],
                              activation: str, where: str) -> nn.Module:
    """The stock slot with its final layer rebuilt from ``final``'s keys (Identity when it has none)."""
    slot = _stock_slot(arch, 1, kwargs, sk)
    slot.set_submodule(sk.final[len(sk.slot) + 1:], rebuild_head(final, activation, where) if final else nn.Identity())
    return slot


def _slot_builder(inner: Callable[[], nn.Module] | None,
                  outer: Callable[[], nn.Module] | None) -> Callable[[], nn.Module] | None:
    if inner is not None and outer is not None:
        return lambda: nn.Sequential(inner(), outer())
    return inner or outer


def _how(arch: str, prefix: str, sk: Skeleton, inner_text: str, outside: Mapping[str, Any], parent: str | None,
         notes: list[str]) -> str:
    text = f"{arch} trunk{_under(prefix) or ' with its own key names'}"
    heads = list(dict.fromkeys(k.split(".", 1)[0] for k in outside))
    if inner_text and outside:
        text += f"; {inner_text}, then the wrapper's own head '{parent}{heads[0]}'"
    elif outside:
        text += f"; the wrapper's own head '{parent}{', '.join(heads)}' in place of {sk.slot}"
    else:
        text += f"; {inner_text}"
    return text + "".join(f"; {note}" for note in notes)


def _check_head(builder: Callable[[], nn.Module], sk: Skeleton, arch: str, name: str) -> None:
    """The rebuilt head must take the trunk's width and chain its layers' shapes (checked on meta)."""
    try:
        with torch.device("meta"):
            head = builder()
            width = input_width(head)
            if width is not None and width != sk.feature_dim and not isinstance(head, nn.Conv2d):
                raise CheckpointError(
                    f"{name}: the head's first layer takes {width} features, "
                    f"but {arch}'s trunk gives {sk.feature_dim}: "
                    f"the checkpoint may be another variant of the architecture: check \"arch\""
                )
            if width == sk.feature_dim and not any(isinstance(m, nn.Conv2d) for m in head.modules()):
                head.eval()(torch.zeros(2, sk.feature_dim))
    except HeadError as exc:
        raise CheckpointError(
            f"{name}: {arch}'s trunk was found, but {exc}; build the model from your own code with "
            "\"code\": \"file.py:ClassName\" in the manifest entry"
        ) from None
    except RuntimeError as exc:
        raise CheckpointError(f"{name}: the head's layers do not chain ({str(exc).splitlines()[0]})") from None


def assemble(p: Plan, device: str) -> nn.Module:
    """The architecture with the planned head, empty (``meta``) or randomly initialised."""
    model = build_architecture(p.arch, p.stock_classes, p.kwargs, device=device)
    if p.slot_builder is not None:
        with torch.device(device):
            model.set_submodule(skeleton(p.arch, p.kwargs).slot, p.slot_builder())
    if p.aliases:
        setattr(model, LAYER_ALIASES_ATTR, dict(p.aliases))
    return model


def load_planned(p: Plan, state: Mapping[str, torch.Tensor], name: str) -> Recognised:
    """Build on ``meta``, assign the renamed weights (no second copy), eval mode, float32."""
    target: OrderedDict[str, torch.Tensor] = OrderedDict((p.rename[k], v) for k, v in state.items() if k in p.rename)
    model = assemble(p, "meta")
    own = model.state_dict()
    target._metadata = getattr(own, "_metadata", None)  # type: ignore[attr-defined] - module versions (MNASNet reads them)
    for key in own:
        if key not in target and key.endswith("num_batches_tracked"):
            target[key] = torch.zeros((), dtype=torch.long)
    try:
        model.load_state_dict(target, strict=True, assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            model = assemble(p, "cpu")  # buffers computed at construction (not in state dicts)
            model.load_state_dict(target, strict=True, assign=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        last_line = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{name} does not load into {p.arch}: {last_line}") from None
    model.eval()
    last = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    inverse = {v: k for k, v in p.rename.items()}
    final_key = inverse.get(f"{last}.weight", f"{last}.weight")
    slot = skeleton(p.arch, p.kwargs).slot
    head = describe(model.get_submodule(slot))
    classes = output_width(model.get_submodule(slot))
    final_shape = tuple(state[final_key].shape) if final_key in state else ()
    return Recognised(model, p.arch, head, p.how, classes, final_key, final_shape)


__all__ = ["Plan", "Recognised", "assemble", "load_planned", "plan"]
