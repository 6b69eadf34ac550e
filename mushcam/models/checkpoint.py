"""Reading a checkpoint file safely into a flat ``{name: tensor}`` state dict.

A checkpoint is untrusted input: ``torch.load(..., weights_only=True)`` only (pickle can
run code), ``.safetensors`` through the safetensors library, and every failure one
:class:`CheckpointError` that says what the file is and what to do. The file is judged
before it is unpickled (see :mod:`mushcam.models.safety`): empty, text, folder, zip bomb,
a pickle that would call ``os.system``, a whole pickled model (``torch.save(model)``).
Training dicts (``state_dict``, ``model_state_dict``, ``model``, ``ema``... beside optimizer
state, epochs and class lists) are unwrapped here; prefixes are left for recognition.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from mushcam.exceptions import MushcamError
from mushcam.models import safety

# Where training code keeps the model's weights inside a bigger dict, in order of preference
# (the live weights before their exponential moving average).
STATE_KEYS: tuple[str, ...] = (
    "state_dict", "model_state_dict", "model", "net", "network", "module", "weights", "params",
    "ema", "model_ema", "state_dict_ema", "ema_state_dict", "ema_model",
)

IMPORT_COMMAND = "python -m mushcam import-checkpoint {file} --trust [--code DIR] --out DIR"


class CheckpointError(MushcamError):
    """A checkpoint could not be read or does not fit the model (the message says what to do)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes: identifies a checkpoint in caches and result stores.

    Only a regular file is hashed (:func:`check_regular_file`): a link to ``/dev/zero`` would
    be read for ever by the caches and stores that hash a checkpoint before loading it.
    """
    check_regular_file(Path(path))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike[str]) -> object:
    """The object stored in a checkpoint file, read without running code.

    Raises :class:`CheckpointError` for a missing path, a folder, a device, pipe or system
    pseudo-file, an empty or text file, a zip bomb, too many tensors, a pickle holding Python
    objects (named, with the way out), a pickle protocol torch cannot read safely, or a damaged
    file. torch's own warnings are kept out of the user's terminal: the message says it all.
    """
    path = Path(path)
    check_regular_file(path)
    try:
        kind = safety.sniff(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc.strerror or exc}") from None
    _refuse_by_kind(path, kind)
    if kind.kind == "safetensors" or path.suffix == ".safetensors":
        return _read_safetensors(path)
    if kind.kind == "zip":
        reason = safety.check_zip_sizes(path)
        if reason:
            raise CheckpointError(f"refused checkpoint {path.name}: {reason}")
    if kind.kind == "unknown":
        raise CheckpointError(
            f"cannot read checkpoint {path.name}: not a PyTorch (.pt/.pth) or safetensors weights file, "
            "or it is damaged"
        )
    return _torch_load(path, kind.kind)


def check_regular_file(path: Path) -> None:
    """Refuse anything but a regular file, links followed, naming what it is instead."""
    real = os.path.realpath(path)
    link = f" (a link to {real})" if path.is_symlink() else (f" ({real})" if real != os.path.abspath(path) else "")
    try:
        special = safety.special_file(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise CheckpointError(f"checkpoint {path} is a link to {os.readlink(path)}, which does not exist; "
                                  "point the manifest's 'checkpoint' at the weights file itself") from None
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a weights file: "
                              "name the .pt/.pth/.safetensors file inside it")
    if special:
        raise CheckpointError(f"checkpoint {path}{link} is {special}, not a checkpoint file; point the manifest's "
                              "'checkpoint' at the .pt/.pth/.safetensors file")


def what_is_there(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is no checkpoint file although something is there (a folder, a device, a
    pipe, a system pseudo-file, a broken link), in :func:`check_regular_file`'s words; None for
    a regular file or for nothing at all (callers say "not found" their own way)."""
    if not os.path.lexists(path):
        return None
    try:
        check_regular_file(Path(path))
    except CheckpointError as exc:
        return str(exc)
    return None


def _refuse_by_kind(path: Path, kind: safety.FileKind) -> None:
    """Files that are plainly not weights: empty, a Git LFS pointer, text (never quoted)."""
    if kind.kind == "empty":
        raise CheckpointError(f"cannot read checkpoint {path.name}: the file is empty (0 bytes); "
                              "it was not written completely, save it again")
    if kind.kind == "lfs":
        raise CheckpointError(
            f"cannot read checkpoint {path.name}: it is a Git LFS pointer, not the weights; fetch them with "
            "'git lfs pull' in the repository it came from"
        )
    if kind.kind == "text":
        raise CheckpointError(
            f"cannot read checkpoint {path.name}: it is {kind.detail}, not a PyTorch checkpoint; point the "
            "manifest's 'checkpoint' at the .pt/.pth/.safetensors file"
        )


def _torch_load(path: Path, kind: str) -> object:
    """``torch.load(weights_only=True)`` with every failure one line and torch's warnings
    (pickle protocol, ``weights_only``) captured, not printed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, kind, str(exc)) from None
    except MemoryError:
        raise CheckpointError(f"cannot read checkpoint {path.name}: not enough memory to hold it") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad storage, any torch.load failure
        if kind == "pickle" and not safety.is_torch_legacy(path):
            raise CheckpointError(_plain_pickle_message(path)) from None
        raise CheckpointError(
            f"cannot read checkpoint {path.name}: it is damaged or truncated ({_first_line(exc)}); save it again"
        ) from None


def _plain_pickle_message(path: Path) -> str:
    return (f"cannot read checkpoint {path.name}: it is a plain Python pickle (pickle.dump), not a PyTorch "
            "checkpoint, and unpickling it could run code; save the weights with "
            "torch.save(model.state_dict(), path)")


def _first_line(exc: BaseException) -> str:
    """An exception's first line, without torch's advice to retry with weights_only=False."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "weights_only" in text or "Weights only" in text:
        return type(exc).__name__
    return text[:200]


def _refusal(path: Path, kind: str, message: str) -> CheckpointError:
    """Why a weights-only load was refused, in plain words (torch's advice is never shown)."""
    try:
        names = safety.pickle_globals(safety.pickle_bytes(path, kind))
    except (OSError, ValueError, RuntimeError):
        names = []
    blocked = re.search(r"GLOBAL (\S+) was not an allowed global", message) or re.search(
        r"unsupported GLOBAL (\S+) whose module", message
    )
    foreign = [safety.readable(n) for n in names if not safety.is_torch_internal(n)]
    if blocked and not any(n.endswith(safety.readable(blocked.group(1))) for n in foreign):
        foreign.insert(0, safety.readable(blocked.group(1)))
    foreign = list(dict.fromkeys(foreign))
    dangerous = safety.dangerous_globals(foreign)
    if dangerous:
        return CheckpointError(
            f"refused {path.name}: it holds Python objects that would call {', '.join(dangerous[:3])} when "
            "loaded (run commands or code on this computer). It is not a weights file and may be malicious: "
            "do not load it"
        )
    if kind == "pickle" and not safety.is_torch_legacy(path):
        return CheckpointError(_plain_pickle_message(path))
    protocol = safety.pickle_protocol(path, kind)
    if protocol is not None and protocol >= 4 and "Unsupported operand" in message:
        return CheckpointError(
            f"cannot read checkpoint {path.name}: it was saved with pickle protocol {protocol}, which PyTorch's safe "
            "(weights-only) reader cannot read; save it again with torch.save(state_dict, path) without "
            "pickle_protocol (the default, 2)"
        )
    if foreign:
        shown = ", ".join(foreign[:3])
        return CheckpointError(
            f"refused {path.name}: it holds Python objects ({shown}), not only tensors, and loading it could run "
            "code. If it is a whole pickled model (torch.save(model)) from a source you trust, convert it once with: "
            + IMPORT_COMMAND.format(file=path.name)
            + " ; or save the weights with torch.save(model.state_dict(), ...)"
        )
    return CheckpointError(f"cannot read checkpoint {path.name}: not a PyTorch weights file, or it is damaged")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{path.name} is a .safetensors file: install the safetensors package (pip install safetensors)"
        ) from None
    problem = safety.safetensors_problem(path)
    if problem:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {problem}")
    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path.name}: damaged safetensors file ({_first_line(exc)})"
        ) from None


def find_state_dict(raw: object, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The weights inside what a file held, and where they were (``"state_dict"``, ``""``...).

    A training dict holds the state dict under one of :data:`STATE_KEYS` (searched one level
    down as well, e.g. Lightning's ``{"state_dict": ...}``) beside non-tensor entries.
    """
    if isinstance(raw, Mapping) and not raw:
        raise CheckpointError(f"{name} holds no tensors: it is an empty dict (was it saved before the model was "
                              "built?); save model.state_dict() again")
    if isinstance(raw, Mapping) and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return {str(k): v for k, v in raw.items()}, ""
    if isinstance(raw, Mapping):
        empty = [key for key in STATE_KEYS if isinstance(raw.get(key), Mapping) and not raw[key]]
        if empty and not any(isinstance(v, Mapping) and v for v in raw.values()):
            raise CheckpointError(f"{name} holds no tensors: its {empty[0]!r} is an empty dict; save "
                                  "model.state_dict() again")
        for key in STATE_KEYS:
            inner = raw.get(key)
            if isinstance(inner, Mapping) and inner:
                try:
                    state, where = find_state_dict(inner, name)
                except CheckpointError:
                    continue
                return state, f"{key}.{where}" if where else key
        tensor_dicts = [
            k for k, v in raw.items() if isinstance(v, Mapping) and any(isinstance(t, torch.Tensor) for t in v.values())
        ]
        if len(tensor_dicts) == 1:
            state, where = find_state_dict(raw[tensor_dicts[0]], name)
            key = str(tensor_dicts[0])
            return state, f"{key}.{where}" if where else key
        if not tensor_dicts:
            key, value = next((k, v) for k, v in raw.items() if not isinstance(v, torch.Tensor))
            raise CheckpointError(
                f"{name}: entry {key!r} is a {type(value).__name__}, not a tensor; expected a state dict "
                f"(or a dict with one of: {', '.join(STATE_KEYS[:4])}, ...)"
            )
        raise CheckpointError(
            f"{name} holds several dicts of weights ({', '.join(map(str, tensor_dicts))}) and none under a usual "
            f"name ({', '.join(STATE_KEYS[:4])}, ...): save model.state_dict() on its own"
        )
    raise CheckpointError(f"{name} holds no state dict (found {type(raw).__name__})")


def check_finite(state: Mapping[str, torch.Tensor], name: str) -> None:
    """Refuse weights with NaN or infinite values, naming the tensors (diverged or damaged training).

    Dtypes torch cannot test directly (float8 ``e4m3fn``/``e5m2``...) are upcast to float32 one
    tensor at a time, so the check never holds more than one tensor's copy.
    """
    bad = []
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            finite = _finite_mask(value, key, name)
            if not bool(finite.all()):
                bad.append(f"{key} ({int((~finite).sum())} of {value.numel()})")
    if bad:
        shown = ", ".join(bad[:5]) + (f", … {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{name} has {len(bad)} tensors whose values are not finite (NaN or infinite): {shown}. The training "
            "diverged or the file is damaged; use an earlier checkpoint"
        )


def _finite_mask(value: torch.Tensor, key: str, name: str) -> torch.Tensor:
    """``torch.isfinite(value)``, through float32 for dtypes without their own kernel."""
    try:
        return torch.isfinite(value)
    except (NotImplementedError, RuntimeError):
        pass
    try:
        return torch.isfinite(value.float())
    except (NotImplementedError, RuntimeError):
        raise CheckpointError(
            f"{name}: tensor {key} is {str(value.dtype).replace('torch.', '')}, which cannot be computed with here; "
            "save the weights as float32, float16 or bfloat16"
        ) from None


def as_float32(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Half-precision (float16/bfloat16) and float8 weights as float32: the model computes in float32."""
    return {
        k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v) for k, v in state.items()
    }


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's state dict (float32, finite), and where it sat in the file."""
    path = Path(path)
    state, where = find_state_dict(read_checkpoint(path), path.name)
    check_finite(state, path.name)
    return as_float32(state), where


__all__ = [
    "CheckpointError",
    "IMPORT_COMMAND",
    "STATE_KEYS",
    "as_float32",
    "check_finite",
    "check_regular_file",
    "file_sha256",
    "find_state_dict",
    "read_checkpoint",
    "read_weights",
    "what_is_there",
]
