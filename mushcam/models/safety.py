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
import os
import pickletools
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

# torch.save stores tensors uncompressed, so a genuine archive declares about its own size.
# Refuse when the declared total exceeds this many times the file size, plus a small floor
# (a sparse or re-zipped checkpoint may compress a little; a bomb compresses ~1000x).
MAX_INFLATION = 8
INFLATION_FLOOR_BYTES = 64 << 20

# How many tensors a checkpoint may hold, and how long a safetensors header may be: the
# largest image classifiers hold ~1,500 tensors in a header of ~200 KB; a file of a million
# tiny tensors took 45 s and 2.2 GB before it could be refused, so it is refused from its
# header (or a zip's end record) before anything is parsed.
MAX_TENSORS = 100_000
MAX_SAFETENSORS_HEADER_BYTES = 8 << 20

# Folders of the operating system's pseudo-files (/proc/self/mem, /dev/stdin -> /proc/self/fd/0):
# never weights, though stat calls them regular files. /dev's devices are caught by their type
# (and /dev/shm holds ordinary files).
SYSTEM_FOLDERS: tuple[str, ...] = ("/proc", "/sys")

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
        return FileKind("text", _text_kind(text))
    return FileKind("unknown")


def _text_kind(text: str) -> str:
    """What sort of text a file holds, in words, without quoting any of it (it may be a secret)."""
    start = text.lstrip()
    if start.startswith(("{", "[")):
        return "a text file (it looks like JSON)"
    if start.startswith("<"):
        return "a text file (it looks like HTML or XML)"
    if start.startswith("#!"):
        return "a text file (a script)"
    return "a text file"


def special_file(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file of data (links followed), else None.

    A device (``/dev/zero`` never ends), a named pipe (opening it waits forever), a socket,
    or a pseudo-file of the system (``/proc/self/mem`` reads fail, ``stat`` says 0 bytes).
    Missing paths and folders are the caller's to say (``os.stat`` raises for them).
    """
    mode = os.stat(path).st_mode
    for test, what in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    real = os.path.realpath(path)
    if any(real == root or real.startswith(root + "/") for root in SYSTEM_FOLDERS):
        return "a special file of the operating system"
    return None


def safetensors_problem(path: Path, max_header: int = MAX_SAFETENSORS_HEADER_BYTES,
                        max_tensors: int = MAX_TENSORS) -> str | None:
    """Why a safetensors file must not be parsed (damaged, header or tensor count over the
    limits), or None. Reads the 8-byte header length and at most ``max_header`` bytes; the
    tensors are counted as the header's ``"data_offsets"`` keys, without parsing the JSON."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or length + 8 > size:
            return "its safetensors header is damaged or the file is truncated"
        if length > max_header:
            return (f"its safetensors header is {_human(length)} (the limit is {_human(max_header)}); a classifier's "
                    "is well under 1 MB, so this is not one")
        count = handle.read(length).count(b'"data_offsets"')
    if count > max_tensors:
        return (f"it holds {count:,} tensors (the limit is {max_tensors:,}); an image classifier holds a few "
                "thousand at most, so this is not one")
    return None


def zip_entry_count(path: Path) -> int | None:
    """The entry count a zip's end-of-central-directory record declares (zip64 too), or None.

    Reads the file's last 64 KB only: a zip of a million entries is judged before
    :mod:`zipfile` builds a million records.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - (65536 + 22 + 20)))
        tail = handle.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) < end + 22:
            return None
        count = int.from_bytes(tail[end + 10:end + 12], "little")
        locator = tail.rfind(b"PK\x06\x07", 0, end)
        if count != 0xFFFF or locator < 0:
            return count
        handle.seek(int.from_bytes(tail[locator + 8:locator + 16], "little"))
        record = handle.read(56)
    return int.from_bytes(record[32:40], "little") if record[:4] == b"PK\x06\x06" else None


def check_zip_sizes(path: Path, max_inflation: int = MAX_INFLATION) -> str | None:
    """Why a zip checkpoint must not be opened (declared sizes too large), or None if fine.

    Reads only the central directory: cost is independent of what the entries would inflate to.
    """
    size = path.stat().st_size
    entries = zip_entry_count(path)
    if entries is not None and entries > MAX_TENSORS:
        return (f"its archive holds {entries:,} entries (the limit is {MAX_TENSORS:,} tensors); an image "
                "classifier holds a few thousand at most, so this is not one")
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


# torch's legacy (pre-1.6) format starts with this number pickled, then the protocol version.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def pickle_protocol(path: Path, kind: str) -> int | None:
    """The pickle protocol a checkpoint's (first) pickle declares, from its first two bytes."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                with archive.open(names[0]) as handle:
                    head = handle.read(2)
        else:
            with open(path, "rb") as handle:
                head = handle.read(2)
    except (OSError, IndexError, zipfile.BadZipFile, ValueError):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def is_torch_legacy(path: Path) -> bool:
    """Whether a raw pickle file is torch's legacy format (its first pickle is torch's magic
    number) rather than a plain ``pickle.dump``."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(head)):
            if opcode.name not in ("PROTO", "FRAME"):
                return opcode.name == "LONG1" and arg == TORCH_LEGACY_MAGIC
    except (ValueError, EOFError):
        return False
    return False


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
    "MAX_SAFETENSORS_HEADER_BYTES",
    "MAX_TENSORS",
    "SYSTEM_FOLDERS",
    "TORCH_LEGACY_MAGIC",
    "check_zip_sizes",
    "dangerous_globals",
    "is_torch_internal",
    "is_torch_legacy",
    "pickle_bytes",
    "pickle_globals",
    "pickle_protocol",
    "readable",
    "safetensors_problem",
    "sniff",
    "special_file",
    "zip_entry_count",
]
