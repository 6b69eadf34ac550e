"""Building a model from the user's own code, only when a manifest entry names it.

``"code": "thesis_models.py:MushroomClassifier", "kwargs": {"num_classes": 9}`` imports
that file (it must lie inside the manifest's folder), calls the class with the kwargs, and
loads the checkpoint's weights strictly (wrapper prefixes such as ``module.`` and
``_orig_mod.`` removed). This runs the user's code: the Home page says so. Any exception
inside it becomes one :class:`UserCodeError` line naming the file, the line and the error;
the full traceback is kept on the exception (``details``) for an expander or a log.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.models import checkpoint as ckpt
from mushcam.models.checkpoint import CheckpointError


class UserCodeError(MushcamError):
    """The user's model code failed; ``details`` holds the full traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def parse_code(code: str) -> tuple[str, str]:
    """``"file.py:Class"`` -> (file, class)."""
    file_name, _, class_name = code.partition(":")
    if not file_name or not class_name:
        raise UserCodeError(f"'code' must be 'file.py:ClassName'; got {code!r}")
    return file_name, class_name


def code_file(root: Path, code: str) -> Path:
    """The user's file for an entry's ``code``; it must lie inside the manifest's folder."""
    file_name, _ = parse_code(code)
    path = (root / file_name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UserCodeError(f"code file {file_name!r} is outside the manifest's folder {root}: put it beside manifest.json")
    if not path.is_file():
        raise UserCodeError(f"code file not found: {path} (the entry's 'code' names it; put it beside manifest.json)")
    return path


def _user_line(exc: BaseException, path: Path) -> str:
    """`` (thesis_models.py line 12)`` for the deepest frame in the user's file, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path]
    return f" ({path.name} line {frames[-1].lineno})" if frames else ""


def _fail(what: str, exc: BaseException, path: Path) -> UserCodeError:
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    hint = ""
    if "download" in details.lower() or "urlopen" in details.lower() or "URLError" in details:
        hint = (" — it tried to download pretrained weights; the checkpoint holds all the weights, so build "
                "the backbone with weights=None (e.g. a 'pretrained' argument set to false in 'kwargs'), or drop "
                "'code' and let MushCAM recognise the checkpoint on its own")
    return UserCodeError(f"{what} raised {type(exc).__name__}{': ' + text if text else ''}{_user_line(exc, path)}{hint}", details)


def import_class(root: Path, code: str) -> type:
    """Import the user's file (its folder on ``sys.path`` during the import) and return the class."""
    path = code_file(root, code)
    _, class_name = parse_code(code)
    digest = hashlib.sha256(str(path).encode() + str(path.stat().st_mtime_ns).encode()).hexdigest()[:12]
    module_name = f"mushcam_user_{path.stem}_{digest}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UserCodeError(f"cannot import {path.name}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look classes up here
        folder = str(path.parent)
        sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - anything the user's file does at import
            sys.modules.pop(module_name, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise _fail(f"importing {path.name}", exc, path) from None
        finally:
            if folder in sys.path:
                sys.path.remove(folder)
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module_name)
        raise UserCodeError(f"{path.name} has no class {class_name!r} (its nn.Module classes: {', '.join(found) or 'none'})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserCodeError(f"{path.name}:{class_name} is not a torch.nn.Module subclass")
    return cls


def _strip_to_fit(state: Mapping[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with the one leading prefix removed that makes its keys the model's, if any."""
    if set(state) >= {k for k in expected if not k.endswith("num_batches_tracked")}:
        return dict(state)
    prefixes = {k[: i + 1] for k in state for i, ch in enumerate(k) if ch == "."}
    for prefix in sorted(prefixes, key=len):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if set(stripped) >= {k for k in expected if not k.endswith("num_batches_tracked")}:
            return stripped
    return dict(state)


def build_from_code(
    root: Path, code: str, kwargs: Mapping[str, Any], checkpoint_path: str | os.PathLike[str]
) -> nn.Module:
    """The user's class built with ``kwargs``, the checkpoint's weights loaded strictly, eval mode."""
    cls = import_class(root, code)
    path = code_file(root, code)
    try:
        model = cls(**dict(kwargs))
    except BaseException as exc:  # noqa: BLE001 - anything the user's constructor does
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _fail(f"{code} with kwargs {dict(kwargs)}", exc, path) from None
    if not isinstance(model, nn.Module):
        raise UserCodeError(f"{code} did not build a torch.nn.Module")
    name = Path(checkpoint_path).name
    state, _ = ckpt.find_state_dict(ckpt.read_checkpoint(checkpoint_path), name)
    ckpt.check_finite(state, name)
    state = ckpt.as_float32(state)
    expected = model.state_dict()
    state = _strip_to_fit(state, set(expected))
    for key in expected:
        if key not in state and key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing keys ({', '.join(missing[:5])})"] if missing else []
        parts += [f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:5])})"] if unexpected else []
        parts += [f"{len(shapes)} shape mismatches ({', '.join(shapes[:5])})"] if shapes else []
        raise CheckpointError(
            f"{name} does not fit {code} built with kwargs {dict(kwargs)}: " + "; ".join(parts)
            + " (check 'kwargs', e.g. the number of classes)"
        )
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise _fail(f"loading weights into {code}", exc, path) from None
    return model.float().eval()


__all__ = ["UserCodeError", "build_from_code", "code_file", "import_class", "parse_code"]
