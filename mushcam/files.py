"""Writing output files so that nothing is ever half-written, and JSON that stays JSON.

Every output (PNG, CSV, JSON, ``.npy``) goes to a temp file in the same folder and is then
renamed over the target (``os.replace`` is atomic on one file system): a reader, or a
re-run after Ctrl-C or a full disk, sees the old file or the new one, never an empty or
partial one. JSON is written with ``allow_nan=False``: ``NaN`` and ``Infinity`` are not JSON,
and a file holding them is refused by strict readers, so a non-finite number is an error
that names the field instead.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from mushcam.data import printable
from mushcam.exceptions import MushcamError


class OutputError(MushcamError):
    """An output file cannot be written (the message says which and why)."""


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    The folder is created if needed. On any failure (including KeyboardInterrupt) the temp
    file is removed and ``path`` is left as it was. OS errors become :class:`OutputError`.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """:func:`write_bytes_atomic` of UTF-8 text (refused before any file is touched if it cannot be encoded)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OutputError(
            f"cannot write {printable(path)}: the text holds characters that are not valid UTF-8 ({exc.reason})"
        ) from None
    write_bytes_atomic(path, data)


def check_output_file(path: str | os.PathLike[str], what: str = "the output") -> None:
    """Raise :class:`OutputError` now if :func:`write_bytes_atomic` could not write ``path`` later.

    For a command that works for minutes before it writes: a folder given as the file, a
    missing or read-only folder is reported before the work, not after. A temp file is
    created in the target's folder and removed at once; ``path`` itself is not touched.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what} {printable(path)} is a folder; give a file name")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {what} {printable(path)}: the folder {printable(path.parent)} does not "
                          "exist; create it or choose another path")
    probe = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {what} {printable(path)}: {exc.strerror or exc}") from None
    finally:
        _unlink_quietly(probe)


def non_finite_fields(value: Any, where: str = "") -> list[str]:
    """Dotted paths of every float in ``value`` (dicts, lists, tuples) that is NaN or infinite."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "(value)"]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in non_finite_fields(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [f for i, v in enumerate(value) for f in non_finite_fields(v, f"{where}[{i}]")]
    return []


def dumps_json(value: Any, what: str = "the output", indent: int | None = 2) -> str:
    """``json.dumps`` that refuses NaN and infinities with a message naming the fields."""
    bad = non_finite_fields(value)
    if bad:
        fields = ", ".join(bad[:5])
        raise OutputError(f"{what} would hold non-finite numbers (NaN or infinity) in: {fields}; nothing was written")
    return json.dumps(value, indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike[str], value: Any, what: str | None = None) -> None:
    """Strict JSON (see :func:`dumps_json`), written atomically, with a final newline."""
    write_text_atomic(path, dumps_json(value, what or printable(path)) + "\n")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


__all__ = [
    "OutputError", "check_output_file", "dumps_json", "non_finite_fields", "write_bytes_atomic", "write_json_atomic",
    "write_text_atomic",
]
