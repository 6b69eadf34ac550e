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
    """Hex SHA-256 of a file's bytes: identifies a checkpoint in caches and result stores."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike[str]) -> object:
    """The object stored in a checkpoint file, read without running code.

    Raises :class:`CheckpointError` for a missing path, a folder, an empty or text file, a
    zip bomb, a pickle holding Python objects (named, with the way out), or a damaged file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a weights file: "
                              "name the .pt/.pth/.safetensors file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        kind = safety.sniff(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc.strerror or exc}") from None
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
            f"cannot read checkpoint {path.name}: it is a text file (starts with {kind.detail!r}), not "
            "PyTorch weights; point the manifest's 'checkpoint' at the .pt/.pth/.safetensors file"
        )
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
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, kind.kind, str(exc)) from None
    except MemoryError:
        raise CheckpointError(f"cannot read checkpoint {path.name}: not enough memory to hold it") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad storage, any torch.load failure
        raise CheckpointError(
            f"cannot read checkpoint {path.name}: it is damaged or truncated ({_first_line(exc)}); save it again"
        ) from None


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
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or int.from_bytes(head, "little") + 8 > size:
        raise CheckpointError(f"cannot read checkpoint {path.name}: its safetensors header is damaged "
                              "or the file is truncated")
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
    if isinstance(raw, Mapping) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return {str(k): v for k, v in raw.items()}, ""
    if isinstance(raw, Mapping):
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
    """Refuse weights with NaN or infinite values, naming the tensors (diverged or damaged training)."""
    bad = []
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                bad.append(f"{key} ({int((~finite).sum())} of {value.numel()})")
    if bad:
        shown = ", ".join(bad[:5]) + (f", … {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{name} has {len(bad)} tensors whose values are not finite (NaN or infinite): {shown}. The training "
            "diverged or the file is damaged; use an earlier checkpoint"
        )


def as_float32(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Half-precision (float16/bfloat16) weights as float32: the model computes in float32."""
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
    "file_sha256",
    "find_state_dict",
    "read_checkpoint",
    "read_weights",
]
