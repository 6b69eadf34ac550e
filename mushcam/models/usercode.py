"""Building a model from the user's own code, only when a manifest entry names it.

``"code": "thesis_models.py:MushroomClassifier", "kwargs": {"num_classes": 9}`` imports
that file (it must lie inside the manifest's folder, subfolders allowed), calls the class with the kwargs, and
loads the checkpoint's weights strictly (wrapper prefixes such as ``module.`` and
``_orig_mod.`` removed).

This runs the user's code, so it happens only with consent: :func:`import_class` is the one
place a user file is imported, and it refuses (:class:`CodeConsentError`) unless the
:class:`CodeConsent` it is given trusts the file *as it is now*: its SHA-256 and those of the
other files it could import from its folder tree (``.py``, ``.pyc``, extension modules). The
consent comes from the command line's ``--trust-code`` or from the hashes the user trusted on the Home page
(:mod:`mushcam.settings`); none given means the remembered ones. The bytes that were hashed
are the bytes that run.

``kwargs`` are checked before the class is called: every key must be one of its parameters
(:func:`check_kwargs_signature`), and none may name a file (:func:`check_kwargs_data`).

Any exception inside the user's code becomes one :class:`UserCodeError` line naming the
file, the line and the error; the full traceback is kept on the exception (``details``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
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
from mushcam.models.consent import CodeConsent, CodeConsentError, CodeFile, check_consent

MAX_CODE_BYTES = 16 * 1024 * 1024  # a model file, not a data set
# Every file an entry's code could import is hashed for consent (.py, .pyc, .so...): at most
# this many files, found among at most this many entries of its folder tree.
MAX_CODE_FILES = 500
MAX_CODE_TREE_ENTRIES = 20_000
IMPORTABLE_SUFFIXES: tuple[str, ...] = tuple(importlib.machinery.all_suffixes())

# Keys that name a file or a download in kwargs (timm's checkpoint_path loaded a zip bomb):
# the checkpoint's own checks are the only way weights get in.
PATH_KEYS = frozenset({"file", "filename", "path", "url", "weights_path", "checkpoint", "pretrained_cfg",
                       "pretrained_cfg_overlay"})
PATH_KEY_SUFFIXES = ("_path", "_file", "_dir", "_url", "_filename")


class UserCodeError(MushcamError):
    """The user's model code failed; ``details`` holds the full traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class KwargsError(MushcamError):
    """An entry's ``kwargs`` name a parameter the class does not take, or a file."""


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
        raise UserCodeError(f"code file {file_name!r} is outside the manifest's folder {root}: "
                            "put it beside manifest.json")
    if not path.is_file():
        raise UserCodeError(f"code file not found: {path} (the entry's 'code' names it; put it beside manifest.json)")
    return path


def _read_code(path: Path) -> bytes:
    if path.stat().st_size > MAX_CODE_BYTES:
        raise UserCodeError(f"code file {path.name} is over {MAX_CODE_BYTES // (1024 * 1024)} MiB: "
                            "not a model's source")
    return path.read_bytes()


def code_files(root: Path, code: str) -> list[CodeFile]:
    """The files an entry's ``code`` could run, hashed now: its file first, then every other
    file Python could import from its folder, subfolders included (the folder is on
    ``sys.path`` while it is imported): ``.py``, ``.pyc`` (``__pycache__``), extension modules.
    A change to any of them asks for consent again."""
    path = code_file(root, code)
    others = [p for p in importable_files(path.parent) if p.resolve() != path]
    return [CodeFile(p, hashlib.sha256(_read_code(p)).hexdigest()) for p in [path, *others]]


def importable_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` that an import could load, sorted; links followed once.

    Only folders whose name is a Python identifier can be packages, so others (``.git``,
    ``my-photos``) are not entered. More than :data:`MAX_CODE_TREE_ENTRIES` entries looked
    at, or :data:`MAX_CODE_FILES` files found, is refused: a model's code has a folder of its own.
    """
    found: list[Path] = []
    looked, visited = 0, set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in visited:  # a link back up the tree
            dirs[:] = []
            continue
        visited.add(real)
        looked += len(dirs) + len(names)
        dirs[:] = sorted(d for d in dirs if d.isidentifier())
        found += [Path(top) / n for n in sorted(names) if n.endswith(IMPORTABLE_SUFFIXES) and (Path(top) / n).is_file()]
        if looked > MAX_CODE_TREE_ENTRIES or len(found) > MAX_CODE_FILES:
            raise UserCodeError(_crowded(folder))
    return sorted(found)


def _crowded(folder: Path) -> str:
    return (f"the folder of the entry's code ({folder}) holds more than {MAX_CODE_FILES} importable files or "
            f"{MAX_CODE_TREE_ENTRIES:,} entries; every file the code could import is hashed for consent, so put the "
            "model's code in a folder of its own (e.g. \"code\": \"mycode/model.py:Net\")")


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
    said = f": {text}" if text else ""
    return UserCodeError(f"{what} raised {type(exc).__name__}{said}{_user_line(exc, path)}{hint}", details)


def import_class(root: Path, code: str, consent: CodeConsent | None = None, model_name: str = "") -> type:
    """Import the user's file (its folder on ``sys.path`` during the import) and return the class.

    Only with ``consent`` (default: the remembered one) for the file and its siblings as they
    are now; the bytes hashed are the bytes executed.
    """
    path = code_file(root, code)
    _, class_name = parse_code(code)
    source = _read_code(path)
    files = [CodeFile(path, hashlib.sha256(source).hexdigest()), *code_files(root, code)[1:]]
    check_consent(files, consent if consent is not None else CodeConsent.remembered(), model_name, code)
    digest = hashlib.sha256(str(path).encode() + files[0].sha256.encode()).hexdigest()[:12]
    module_name = f"mushcam_user_{path.stem}_{digest}"
    module = sys.modules.get(module_name) or _execute(path, module_name, source)
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module_name)
        raise UserCodeError(f"{path.name} has no class {class_name!r} "
                            f"(its nn.Module classes: {', '.join(found) or 'none'})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserCodeError(f"{path.name}:{class_name} is not a torch.nn.Module subclass")
    return cls


def _execute(path: Path, module_name: str, source: bytes) -> Any:
    """Run ``source`` (the user's file, already consented to) as module ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"cannot import {path.name}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    folder = str(path.parent)
    sys.path.insert(0, folder)
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # a new __pycache__ file would change the hashed tree, asking consent again
    before = set(sys.modules)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the consented file
    except BaseException as exc:  # noqa: BLE001 - anything the user's file does at import
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _fail(f"importing {path.name}", exc, path) from None
    finally:
        sys.dont_write_bytecode = writes_bytecode
        if folder in sys.path:
            sys.path.remove(folder)
        _forget_folder_modules(set(sys.modules) - before - {module_name}, path.parent)
    return module


def _forget_folder_modules(names: set[str], folder: Path) -> None:
    """Drop the modules this import loaded from the user's folder (``layers.blocks``) from
    ``sys.modules``: another folder's ``layers`` must be its own, imported under its own consent."""
    for name in names:
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin and Path(origin).resolve().is_relative_to(folder.resolve()):
            sys.modules.pop(name, None)


def check_kwargs_signature(cls: type, kwargs: Mapping[str, Any], code: str) -> None:
    """Every key of ``kwargs`` must be a parameter of ``cls`` (unless it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return  # no signature to check against (a C extension type): the call itself will say
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [n for n, p in parameters.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise KwargsError(f"kwargs {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not "
                          f"accepted by {code} (it accepts: {', '.join(accepted) or 'no keyword arguments'})")


def check_kwargs_data(kwargs: Mapping[str, Any], root: Path, where: str = "kwargs") -> None:
    """``kwargs`` are plain settings, never a way to bring in a file: a key named like a path
    (``file``, ``path``, ``url``, ``checkpoint``, ``pretrained_cfg[_overlay]``, ``*_path``,
    ``*_file``, ``*_dir``, ``*_url``) is refused, and so is any text value, at any depth, that
    contains ``/``, ``\\`` or ``://`` or names an existing file (beside the manifest or here)."""
    for key, value in kwargs.items():
        lowered = str(key).lower()
        if lowered in PATH_KEYS or lowered.endswith(PATH_KEY_SUFFIXES):
            raise KwargsError(f"{where}.{key}: kwargs may not name files or downloads (the checkpoint is the "
                              "entry's 'checkpoint', checked before it is read); remove this key")
        _check_value(value, root, f"{where}.{key}")


def _check_value(value: Any, root: Path, where: str) -> None:
    if isinstance(value, Mapping):
        check_kwargs_data(value, root, where)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, root, f"{where}[{i}]")
    elif isinstance(value, str) and value:
        looks_like_path = "/" in value or "\\" in value or "://" in value
        try:
            exists = (root / value).exists() or Path(value).exists()
        except (OSError, ValueError):
            exists = False
        if looks_like_path or exists:
            raise KwargsError(f"{where} = {value[:60]!r}: kwargs may not name files or URLs (a value with '/', "
                              "'\\' or '://', or naming an existing file, is refused)")


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
    root: Path, code: str, kwargs: Mapping[str, Any], checkpoint_path: str | os.PathLike[str],
    consent: CodeConsent | None = None, model_name: str = "",
) -> nn.Module:
    """The user's class built with ``kwargs``, the checkpoint's weights loaded strictly, eval mode.

    Refused (:class:`CodeConsentError`) unless ``consent`` (default: the remembered one) trusts
    the code as it is now; ``kwargs`` are checked before the class is called.
    """
    check_kwargs_data(kwargs, root)
    cls = import_class(root, code, consent, model_name)
    path = code_file(root, code)
    check_kwargs_signature(cls, kwargs, code)
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


# CodeConsent, CodeConsentError and CodeFile live in mushcam.models.consent; re-exported here
# because every caller of build_from_code needs them.
__all__ = [
    "CodeConsent",
    "CodeConsentError",
    "CodeFile",
    "KwargsError",
    "UserCodeError",
    "build_from_code",
    "check_kwargs_data",
    "check_kwargs_signature",
    "code_file",
    "code_files",
    "import_class",
    "importable_files",
    "parse_code",
]
