"""An architecture's ``kwargs``: which keys its builder accepts, sane values, and failures in words.

A manifest entry's ``kwargs`` go to the torchvision builder (``regnet_y_400mf(**kwargs)``
hands them on to ``RegNet.__init__``) or to ``timm.create_model``. A wrong key used to be a
``TypeError`` traceback and an absurd number (``width_mult: 1e300``) thirteen lines of C++
frames. Here the keys are checked against what the builder can take (its parameters, those of
the helpers and the model class it calls, and the keys it pops from ``**kwargs``), numbers are
bounded, and anything the builder still raises becomes one line naming the kwargs.
"""

from __future__ import annotations

import enum
import inspect
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from torchvision import models as tvm

# Keys MushCAM sets itself: the class count comes from the checkpoint, weights from the file.
RESERVED_KEYS: dict[str, str] = {
    "num_classes": "the class count comes from the checkpoint and the manifest's class list",
    "weights": "the weights come from the entry's checkpoint",
    "pretrained": "the weights come from the entry's checkpoint",
}

# No architecture setting (a width, a depth, an image size, a rate) is anywhere near this.
MAX_NUMBER = 1_000_000
_SKIPPED_PARAMETERS = frozenset({"self", "weights", "progress", "kwargs", "args"})
_FOLLOW_DEPTH = 3


def kwargs_text(kwargs: Mapping[str, Any]) -> str:
    """The kwargs as JSON, for messages (``{"width_mult": 1e+300}``)."""
    return json.dumps(dict(kwargs), default=str)


def _numbers(value: Any, where: str) -> list[tuple[str, float]]:
    """Every number inside ``value`` (lists and dicts followed), with where it sits."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(where, value)]
    if isinstance(value, Mapping):
        return [n for k, v in value.items() for n in _numbers(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{where}[{i}]")]
    return []


def _is_absurd(number: float) -> bool:
    try:
        return not math.isfinite(number) or abs(number) > MAX_NUMBER
    except OverflowError:  # an int too large for a float
        return True


def value_problem(kwargs: Mapping[str, Any]) -> str | None:
    """Why a kwarg's value cannot be an architecture setting: a reserved key, or a number that
    is not finite or beyond ±:data:`MAX_NUMBER`; None if all are plausible."""
    for key in kwargs:
        if key in RESERVED_KEYS:
            return f"kwargs {key!r} may not be set: {RESERVED_KEYS[key]}; remove it"
    for where, number in (n for k, v in kwargs.items() for n in _numbers(v, k)):
        if _is_absurd(number):
            shown = f"{number:.3g}" if isinstance(number, float) else f"a {len(str(abs(number)))}-digit number"
            return (f"kwargs {where} = {shown} is not a plausible architecture setting (numbers in kwargs must be "
                    f"finite and within ±{MAX_NUMBER:,})")
    return None


def _parameters(target: Callable[..., Any]) -> tuple[set[str], set[str], bool]:
    """Named parameters of a function or class, those with a default, and whether it takes ``**kwargs``."""
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return set(), set(), True
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return ({p.name for p in named}, {p.name for p in named if p.default is not p.empty},
            any(p.kind is p.VAR_KEYWORD for p in parameters))


def _callees(function: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The torchvision functions and model classes ``function`` names (where its kwargs may go)."""
    code = getattr(function, "__code__", None)
    namespace = getattr(function, "__globals__", {})
    found = []
    for name in code.co_names if code else ():
        target = namespace.get(name)
        module = getattr(target, "__module__", "") or ""
        if not module.startswith("torchvision.models") or name.startswith("__"):
            continue
        if (inspect.isclass(target) and not issubclass(target, enum.Enum)) or inspect.isfunction(target):
            found.append(target)
    return found


def _collect(target: Callable[..., Any], depth: int, seen: set[int]) -> tuple[set[str], set[str], set[str]]:
    """(keys ``target`` can take, parameters with a default, popped keys): its own and, where it
    takes ``**kwargs``, those of the torchvision helpers and classes it calls (a few levels down)."""
    if id(target) in seen:
        return set(), set(), set()
    seen.add(id(target))
    function = inspect.unwrap(target.__init__ if inspect.isclass(target) else target)
    named, defaults, passes_on = _parameters(target)
    code = getattr(function, "__code__", None)
    popped = {c for c in (code.co_consts if code else ()) if isinstance(c, str) and c.isidentifier()}
    keys = named | popped
    if passes_on and depth < _FOLLOW_DEPTH:
        for callee in _callees(function):
            more = _collect(callee, depth + 1, seen)
            keys, defaults, popped = keys | more[0], defaults | more[1], popped | more[2]
    return keys, defaults, popped


def _public(keys: set[str]) -> set[str]:
    return {k for k in keys if k not in _SKIPPED_PARAMETERS and k not in RESERVED_KEYS and not k.startswith("_")}


def torchvision_kwargs(arch: str) -> frozenset[str]:
    """Every key torchvision's builder for ``arch`` can take through ``**kwargs`` (generous:
    a parameter or a popped key anywhere down its chain; a key outside it is surely wrong)."""
    keys, _, _ = _collect(inspect.unwrap(tvm.get_model_builder(arch)), 0, set())
    return frozenset(_public(keys))


def torchvision_settings(arch: str) -> list[str]:
    """The keys to name in a message: the chain's parameters that have a default, and the
    parameters it pops from ``**kwargs`` (ViT's ``image_size``), in a stable order."""
    keys, defaults, popped = _collect(inspect.unwrap(tvm.get_model_builder(arch)), 0, set())
    return sorted(_public(defaults | (popped & keys & _named_anywhere(arch))))


def _named_anywhere(arch: str) -> set[str]:
    """Parameter names (not string constants) down ``arch``'s builder chain."""
    names: set[str] = set()
    pending, seen = [inspect.unwrap(tvm.get_model_builder(arch))], set()
    while pending and len(seen) < 32:
        target = pending.pop()
        if id(target) in seen:
            continue
        seen.add(id(target))
        names |= _parameters(target)[0]
        pending += _callees(inspect.unwrap(target.__init__ if inspect.isclass(target) else target))
    return names


def shown_keys(model_class: type) -> list[str]:
    """A model class's own settings (its parameters with a default): the hint for timm models."""
    try:
        parameters = inspect.signature(model_class).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.default is not p.empty and p.name not in RESERVED_KEYS
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def unknown_keys_problem(arch: str, kwargs: Mapping[str, Any]) -> str | None:
    """Why a torchvision ``arch`` cannot take these keys (naming the ones it can), or None."""
    accepted = torchvision_kwargs(arch)
    unknown = [k for k in kwargs if k not in accepted]
    if not unknown:
        return None
    shown = torchvision_settings(arch)
    return (f"{arch} does not accept kwargs {', '.join(map(repr, unknown))}; it accepts "
            f"{', '.join(shown[:20])}{', …' if len(shown) > 20 else ''}")


def build_failure(arch: str, kwargs: Mapping[str, Any], exc: BaseException, accepted: list[str]) -> str:
    """One line for an exception raised while building ``arch`` with ``kwargs`` (C++ frames dropped)."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    hint = f"; it accepts {', '.join(accepted[:20])}" if accepted and isinstance(exc, TypeError) else ""
    return f"cannot build {arch} with kwargs {kwargs_text(kwargs)}: {type(exc).__name__}: {text}{hint}"


__all__ = [
    "MAX_NUMBER",
    "RESERVED_KEYS",
    "build_failure",
    "kwargs_text",
    "shown_keys",
    "torchvision_kwargs",
    "torchvision_settings",
    "unknown_keys_problem",
    "value_problem",
]
