"""What a checkpoint file is, judged before anything in it is unpickled.

A ``.pt`` file is either a zip archive (``torch.save`` since 1.6: entries stored, not
compressed), a legacy raw pickle stream, or a ``.safetensors`` file (an 8-byte header length,
a JSON header, raw tensor bytes). Everything here reads bytes only: the archive's central
directory (declared sizes) and the pickle's opcodes (which Python globals it would import),
so a zip bomb is refused before it inflates and a pickle that would run code is named
without running it.
"""

from __future__ import annotations

import io
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

# torch.save stores tensors uncompressed, so a genuine archive declares about its own size.
# Refuse when the declared total exceeds this many times the file size, plus a small floor
# (a sparse or re-zipped checkpoint may compress a little; a bomb compresses ~1000x).
MAX_INFLATION = 8
INFLATION_FLOOR_BYTES = 64 << 20

# Globals that do harm when called; their presence means the file is an attack, not a model.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "commands", "sys", "shutil", "socket", "pty", "runpy",
    "importlib", "ctypes", "webbrowser", "code", "pickle", "marshal", "pathlib", "io", "urllib",
    "requests", "http", "multiprocessing", "signal", "tempfile", "asyncio",
}
_DANGEROUS_BUILTINS = {
    "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "input", "breakpoint", "apply", "execfile",
}


@dataclass(frozen=True)
class FileKind:
    """``kind``: zip | pickle | safetensors | empty | text | unknown; ``detail`` for messages."""

    kind: str
    detail: str = ""


def sniff(path: Path) -> FileKind:
    """Classify a file by its first bytes (never unpickles)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return FileKind("empty")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return FileKind("zip")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return FileKind("pickle")
    if len(head) >= 10:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return FileKind("safetensors")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return FileKind("unknown")
    if text.startswith("version https://git-lfs"):
        return FileKind("lfs")
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return FileKind("text", first)
    return FileKind("unknown")


def check_zip_sizes(path: Path, max_inflation: int = MAX_INFLATION) -> str | None:
    """Why a zip checkpoint must not be opened (declared sizes too large), or None if fine.

    Reads only the central directory: cost is independent of what the entries would inflate to.
    """
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # damaged: torch.load's own failure says so, and it reads no sizes from it
    limit = max_inflation * size + INFLATION_FLOOR_BYTES
    if declared > limit:
        return (
            f"its archive declares {_human(declared)} of data in a {_human(size)} file "
            f"({declared / max(size, 1):.0f}x compression; torch.save writes weights uncompressed), "
            "so it looks like a zip bomb. If the file is genuine, load it in Python and save the "
            "state dict again with torch.save"
        )
    return None


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def pickle_bytes(path: Path, kind: str) -> bytes:
    """The pickle stream of a checkpoint: ``*/data.pkl`` of a zip, or the raw file (capped)."""
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not names:
                return b""
            info = archive.getinfo(names[0])
            if info.file_size > 256 << 20:
                return b""
            return archive.read(names[0])
    with open(path, "rb") as handle:
        return handle.read(64 << 20)


def pickle_globals(data: bytes) -> list[str]:
    """Every ``module.name`` a pickle stream would import, read from its opcodes (not run).

    Legacy torch files hold several pickles one after another; all are scanned. STACK_GLOBAL
    takes its module and name from the two strings pushed (or memo-fetched) before it.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        start = stream.tell()
        strings: list[str] = []
        memo: dict[int, str] = {}
        memo_count = 0
        last: str | None = None  # the string on top of the stack, if the last push was one
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name = opcode.name
                pushed: str | None = None
                if name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    pushed = str(arg)
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    if last is not None:
                        memo[int(arg)] = last
                    pushed = last
                elif name == "MEMOIZE":
                    if last is not None:
                        memo[memo_count] = last
                    memo_count += 1
                    pushed = last
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    pushed = memo.get(int(arg))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                if pushed is not None and name not in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                    strings.append(pushed)
                last = pushed
        except Exception:  # noqa: BLE001 - raw tensor bytes after the pickles, or a damaged stream
            break
        if stream.tell() == start:
            break
    return list(dict.fromkeys(found))


def dangerous_globals(names: list[str]) -> list[str]:
    """The globals among ``names`` that would run commands, code or touch files when called."""
    bad = []
    for full in names:
        module, _, attr = full.rpartition(".")
        root = module.split(".")[0]
        if root in _DANGEROUS_MODULES or (root in ("builtins", "__builtin__", "") and attr in _DANGEROUS_BUILTINS):
            bad.append(full)
        elif not module and full in _DANGEROUS_BUILTINS:
            bad.append(full)
    return bad


# Pickle protocol 2 writes Python 2 module names; show the names people know.
_PY2_NAMES = {"__builtin__": "builtins", "commands": "subprocess", "copy_reg": "copyreg"}


def readable(name: str) -> str:
    """``commands.Popen`` -> ``subprocess.Popen``; ``__builtin__.eval`` -> ``builtins.eval``."""
    module, _, attr = name.rpartition(".")
    return f"{_PY2_NAMES.get(module, module)}.{attr}" if module else name


def is_torch_internal(name: str) -> bool:
    """Globals a weights-only file may legitimately name (tensor rebuilders, dtypes, containers)."""
    return readable(name).startswith(("torch.", "collections.", "_codecs.", "numpy.core.multiarray._reconstruct",
                                      "builtins.set", "builtins.frozenset", "builtins.slice"))


__all__ = [
    "FileKind",
    "MAX_INFLATION",
    "check_zip_sizes",
    "dangerous_globals",
    "is_torch_internal",
    "pickle_bytes",
    "pickle_globals",
    "readable",
    "sniff",
]
