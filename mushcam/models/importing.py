"""``python -m mushcam import-checkpoint FILE --trust [--code DIR] --out DIR``.

A whole pickled model (``torch.save(model)``) can only be read by unpickling it, which runs
whatever code the file names: MushCAM never does that on its own. This command does it
once, only with ``--trust``, and writes what MushCAM loads without trust: a weights-only
checkpoint (``OUT/<name>.pt``) and the manifest entry that loads it
(``OUT/<name>.entry.json``), verified by comparing logits with the unpickled model. The
model's class must be importable: ``--code DIR`` puts DIR on ``sys.path``, so the module the
pickle names is imported from there; a class pickled from a training script's ``__main__``
is looked up in DIR's files by reading them (no import), and only the file that defines it
is imported. Nothing else in DIR runs.

``--trust`` means what it says: a trusted pickle can run anything. A file whose pickle names
an obvious payload (``os.system``, ``subprocess``, ``eval``...) is refused, with or without
``--trust``, but that list cannot catch every payload; it is a courtesy, not a safety check.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import pickle
import re
import shutil
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mushcam.exceptions import MushcamError
from mushcam.models import checkpoint as ckpt
from mushcam.models import safety
from mushcam.models.checkpoint import CheckpointError
from mushcam.models.guess import guess_architecture
from mushcam.models.loading import load_checkpoint
from mushcam.models.usercode import CodeConsent, build_from_code
from mushcam.text import file_safe_name

TOLERANCE = 1e-4


@dataclass(frozen=True)
class ImportResult:
    """What ``import-checkpoint`` wrote and how it checked it."""

    weights: Path
    entry_file: Path
    name: str
    entry: dict[str, Any]
    verified: str


def _defines_class(path: Path, name: str) -> bool:
    """Whether ``path`` defines a top-level class ``name``, read with ``ast`` (nothing runs)."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.ClassDef) and node.name == name for node in tree.body)


def _import_file(path: Path) -> types.ModuleType:
    """Import one ``.py`` file of ``--code`` under its own name (trusted by the user)."""
    module = sys.modules.get(path.stem)
    if module is not None and Path(getattr(module, "__file__", "") or "").resolve() == path.resolve():
        return module
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise MushcamError(f"cannot import {path.name} from --code: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed to import
        sys.modules.pop(path.stem, None)
        raise MushcamError(f"importing {path.name} from --code failed: {type(exc).__name__}: {exc}") from None
    return module


def _code_modules(code_dir: Path | None, names: list[str]) -> list[types.ModuleType]:
    """The ``--code`` files that define the pickle's ``__main__`` classes, imported; no other file."""
    wanted = [n.split(".", 1)[1] for n in names if n.startswith("__main__.")]
    if code_dir is None or not wanted:
        return []
    files = sorted(code_dir.glob("*.py"))
    chosen = [next((p for p in files if _defines_class(p, name)), None) for name in wanted]
    return [_import_file(path) for path in dict.fromkeys(p for p in chosen if p is not None)]


def _trusted_pickle(modules: list[types.ModuleType]) -> types.ModuleType:
    """A pickle module whose Unpickler finds ``__main__.X`` classes in the --code files."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "__main__":
                for candidate in modules:
                    if hasattr(candidate, name):
                        return getattr(candidate, name)
                raise MushcamError(
                    f"the model's class {name} was defined in the training script itself (__main__): put the class "
                    "in a .py file in a folder and pass that folder with --code DIR"
                )
            return super().find_class(module, name)

    module = types.ModuleType("mushcam_trusted_pickle")
    module.Unpickler = Unpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kw: Unpickler(file, **kw).load()  # type: ignore[attr-defined]
    module.__name__ = "pickle"
    return module


@contextmanager
def _on_path(folder: Path | None) -> Iterator[None]:
    if folder is None:
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))


def _find_module(obj: object) -> nn.Module | None:
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping):
        for key in (*ckpt.STATE_KEYS, *obj.keys()):
            value = obj.get(key)
            if isinstance(value, nn.Module):
                return value
    return None


def unpickle_trusted(path: Path, code_dir: Path | None) -> nn.Module:
    """Unpickle a whole model (runs code: only after the user said --trust)."""
    kind = safety.sniff(path)
    if kind.kind == "zip" and (reason := safety.check_zip_sizes(path)):
        raise CheckpointError(f"refused {path.name}: {reason}")
    names = safety.pickle_globals(safety.pickle_bytes(path, kind.kind))
    dangerous = safety.dangerous_globals([safety.readable(n) for n in names])
    if dangerous:
        raise CheckpointError(
            f"refused {path.name} even with --trust: unpickling it would call {', '.join(dangerous[:3])}, which no "
            "model needs (run commands or code); it is not a model file and may be malicious"
        )
    with _on_path(code_dir):
        modules = _code_modules(code_dir, names)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_trusted_pickle(modules))
        except MushcamError:
            raise
        except (ModuleNotFoundError, AttributeError) as exc:
            raise MushcamError(
                f"cannot unpickle {path.name}: {exc}; the model's class must be importable: pass the folder holding "
                "its .py file with --code DIR"
            ) from None
        except Exception as exc:  # noqa: BLE001 - anything unpickling raises
            raise CheckpointError(f"cannot unpickle {path.name}: {type(exc).__name__}: {exc}") from None
    module = _find_module(obj)
    if module is None:
        raise CheckpointError(f"{path.name} holds a {type(obj).__name__}, "
                              "not a torch.nn.Module (or a dict holding one)")
    return module.float().eval()


def _verify(source: nn.Module, loaded: nn.Module, size: int) -> float:
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((source(x) - loaded(x)).abs().max())


def import_checkpoint(
    file: str | Path,
    out: str | Path,
    trust: bool = False,
    code_dir: str | Path | None = None,
    name: str | None = None,
    arch: str | None = None,
    size: int = 224,
) -> ImportResult:
    """Convert a whole pickled model into a weights-only checkpoint and its manifest entry."""
    path = Path(file)
    if name is not None and (not name or file_safe_name(name) != name):
        raise MushcamError(f"--name {name!r} cannot name a file: use letters, digits, '.', '_' and '-' only "
                           f"(for example {file_safe_name(name)!r}); it names OUT/<name>.pt and the manifest entry")
    try:
        ckpt.find_state_dict(ckpt.read_checkpoint(path), path.name)
    except CheckpointError as exc:
        if "holds Python objects" not in str(exc):
            raise
    else:
        raise MushcamError(
            f"{path.name} is already a weights-only checkpoint: nothing to import; name it in the manifest's "
            "'checkpoint' (with 'arch')"
        )
    if not trust:
        _refuse_code_payload(path)
        raise MushcamError(
            f"{path.name} is a whole pickled model: reading it runs code named in the file. If you trust its "
            "source, run again with --trust (and --code DIR for the folder holding the model's class)"
        )
    code = Path(code_dir).resolve() if code_dir else None
    source = unpickle_trusted(path, code)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or path.stem
    weights = out_dir / f"{name}.pt"
    torch.save(source.state_dict(), weights)
    entry, verified = _entry_for(source, weights, out_dir, code, arch, size)
    entry_file = out_dir / f"{name}.entry.json"
    entry_file.write_text(json.dumps({"models": {name: entry}}, indent=2) + "\n", encoding="utf-8")
    return ImportResult(weights, entry_file, name, entry, verified)


def _refuse_code_payload(path: Path) -> None:
    """A pickle that names ``os.system``, ``eval``... is not a model: say what it would run."""
    kind = safety.sniff(path)
    names = safety.pickle_globals(safety.pickle_bytes(path, kind.kind))
    dangerous = safety.dangerous_globals([safety.readable(n) for n in names])
    if dangerous:
        shown = [re.sub(r"^(posix|nt)\.", "os.", name) for name in dangerous[:3]]  # as the user would write it
        raise CheckpointError(
            f"refused {path.name}: this file would run code: {', '.join(shown)}. It is not a pickled model "
            "and may be malicious: do not pass --trust"
        )


def _entry_for(source: nn.Module, weights: Path, out_dir: Path, code: Path | None, arch: str | None,
               size: int) -> tuple[dict[str, Any], str]:
    """The manifest entry that loads ``weights`` without trust, checked against ``source``'s logits."""
    state = source.state_dict()
    candidates = [arch] if arch else []
    guess = guess_architecture(state)
    if guess and guess.total and guess.arch not in candidates:
        candidates.append(guess.arch)
    reasons = []
    for candidate in candidates:
        try:
            loaded = load_checkpoint(weights, candidate)
            diff = _verify(source, loaded.model, size)
        except (MushcamError, RuntimeError) as exc:
            reasons.append(f"{candidate}: {exc}")
            continue
        if diff <= TOLERANCE:
            entry = {"checkpoint": weights.name, "arch": candidate}
            return entry, f"recognised as {loaded.how}; logits equal to the pickled model's (max |Δ| {diff:.1e})"
        reasons.append(f"{candidate}: logits differ by {diff:.2e}")
    source_file = Path(inspect.getsourcefile(type(source)) or "")
    if code is None or not source_file.is_file() or not source_file.resolve().is_relative_to(code):
        raise MushcamError(
            f"wrote {weights.name}, but no architecture reproduces the model without its code "
            f"({'; '.join(reasons) or 'no torchvision trunk found'}); pass the folder holding class "
            f"{type(source).__name__} with --code DIR to write a 'code' entry"
        )
    shutil.copy2(source_file, out_dir / source_file.name)
    entry = {"checkpoint": weights.name, "code": f"{source_file.name}:{type(source).__name__}", "kwargs": {}}
    try:
        # the class's file already ran (it unpickled the model, with --trust): checking it runs it again
        built = build_from_code(out_dir, entry["code"], {}, weights, CodeConsent(trust_code=True))
        diff = _verify(source, built, size)
        verified = f"built by {entry['code']}; logits equal to the pickled model's (max |Δ| {diff:.1e})"
    except MushcamError as exc:
        verified = f"could not check it ({exc}): fill in the entry's 'kwargs' with the class's arguments"
    return entry, verified


__all__ = ["ImportResult", "import_checkpoint", "unpickle_trusted"]
