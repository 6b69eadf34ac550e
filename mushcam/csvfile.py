"""The one way MushCAM writes and reads CSV: spreadsheet formulas defused, line breaks quoted, round trip exact.

Every CSV the library writes (the label-fix list, the comparison tables, ``check-data --csv``)
goes through :func:`csv_text`, so one set of rules holds everywhere:

- **Formula guard** (OWASP "CSV injection"): a text cell whose first non-whitespace character
  is ``= + - @``, or that starts with a tab or a carriage return, or with ``'``, is written
  with a leading ``'``; a spreadsheet then shows it as text instead of running it. Plain
  numbers (``-0.25``, ``1e-3``) are left alone: they cannot run anything.
- **Quoting**: RFC 4180 lines (``\\r\\n``) with minimal quoting, so any cell holding a comma,
  a quote, a CR or an LF is quoted (with ``\\n`` line ends, Python's writer leaves a lone CR
  unquoted, and a reader then starts a new row there).
- **Reading back**: :func:`read_csv_text` / :func:`read_csv_file` remove the guard, keep
  CR and LF inside cells (files are opened with ``newline=''``) and turn the csv module's
  errors (a cell over its 131,072-character limit, a broken quote) into one MushcamError.
  The limit is not raised: it is process-wide state, and our cells stay far below it.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from mushcam.exceptions import MushcamError
from mushcam.files import write_text_atomic

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_FORMULA_START = ("=", "+", "-", "@")


def needs_guard(cell: str) -> bool:
    """True when a spreadsheet could read ``cell`` as a formula (or it starts with the guard itself)."""
    if cell.startswith(("\t", "\r", "'")):
        return True
    stripped = cell.lstrip()
    return stripped.startswith(_FORMULA_START) and not _NUMBER.fullmatch(stripped)


def guard_cell(value: object) -> str:
    """The cell as written: ``str(value)``, with a leading ``'`` where :func:`needs_guard` says so."""
    if isinstance(value, bool | int | float):
        return str(value)
    text = "" if value is None else str(value)
    return "'" + text if needs_guard(text) else text


def unguard_cell(cell: str) -> str:
    """The cell as it was before :func:`guard_cell` (one leading ``'`` removed)."""
    return cell[1:] if cell.startswith("'") else cell


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    """CSV text of ``rows`` (the first is usually the header), every cell guarded and quoted as above."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow([guard_cell(v) for v in row])
    return buffer.getvalue()


def write_csv(path: str | os.PathLike[str], rows: Iterable[Sequence[object]]) -> Path:
    """:func:`csv_text` written atomically to ``path`` (a failure leaves any earlier file whole)."""
    target = Path(path).expanduser()
    write_text_atomic(target, csv_text(rows))
    return target


def read_csv_text(text: str, what: str = "the CSV") -> list[list[str]]:
    """The rows of CSV text as :func:`csv_text` writes it, guards removed."""
    try:
        return [[unguard_cell(c) for c in row] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        raise MushcamError(f"{what} cannot be read as CSV: {exc}; write it again with MushCAM") from None


def read_csv_file(path: str | os.PathLike[str], what: str | None = None) -> list[list[str]]:
    """:func:`read_csv_text` of a file, opened with ``newline=''`` so CR and LF inside cells survive."""
    target = Path(path).expanduser()
    try:
        with target.open(encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise MushcamError(f"cannot read {target}: {getattr(exc, 'strerror', None) or exc}") from None
    return read_csv_text(text, what or str(target))
