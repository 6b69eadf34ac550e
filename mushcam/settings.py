"""The user's local settings: which model-code files they trusted, by SHA-256.

A manifest entry with ``"code": "model.py:Net"`` runs that file; MushCAM imports it only
after the user consented to the file *as it is now*. The Home page's "Trust and run" button
remembers that consent here, one record per file hash, so a changed file asks again:

``$MUSHCAM_CONFIG_DIR/trusted_code.json`` (default ``$XDG_CONFIG_HOME/mushcam``, else
``~/.config/mushcam``)::

    {"version": 1, "trusted": {"<sha256>": {"file": "/abs/model.py", "trusted_at": "2026-12-02T01:00:00Z"}}}

The file is written atomically (temp file + rename). A damaged or unreadable file reads as
"nothing trusted", with a warning that says so; it never stops the app or a command.
The command line's ``--trust-code`` (:func:`add_trust_code_option`) is per command and is
not remembered.

The Errors page's reviewer name lives beside it, in ``reviewer.json`` (``{"version": 1,
"reviewer": "Ana"}``), so a new browser session starts with the last name used. A name is
not a secret; a damaged, oversized or unreadable file reads as "no name".
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mushcam.files import write_json_atomic

CONFIG_DIR_ENV = "MUSHCAM_CONFIG_DIR"
TRUSTED_CODE_FILE = "trusted_code.json"
REVIEWER_FILE = "reviewer.json"
MAX_REVIEWER_CHARS = 200
SETTINGS_VERSION = 1
MAX_SETTINGS_BYTES = 4 * 1024 * 1024  # far above any real list of trusted files
TRUST_CODE_HELP = (
    "run the Python files that manifest entries name in 'code' (model.py:Net): they run with your "
    "permissions, so pass this only for a folder whose code you have read or whose author you trust "
    "(not remembered; the Home page's 'Trust and run' remembers per file hash)"
)


def config_dir() -> Path:
    """The settings folder: ``$MUSHCAM_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/mushcam``, else ``~/.config/mushcam``."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "mushcam"


def trusted_code_path() -> Path:
    """Where the remembered consent lives (see the module docstring for the format)."""
    return config_dir() / TRUSTED_CODE_FILE


@dataclass(frozen=True)
class TrustedCode:
    """The SHA-256 digests the user trusted, and ``warning`` when the file could not be used."""

    hashes: frozenset[str] = frozenset()
    records: dict[str, dict[str, str]] | None = None
    warning: str = ""


def read_trusted_code(path: Path | None = None) -> TrustedCode:
    """The remembered consent; an absent file is nothing trusted, a damaged one too (with ``warning``)."""
    path = path or trusted_code_path()
    try:
        if not path.is_file():
            return TrustedCode(records={})
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            return _damaged(path, f"it is over {MAX_SETTINGS_BYTES // (1024 * 1024)} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _damaged(path, f"{type(exc).__name__}: {exc}")
    trusted = data.get("trusted") if isinstance(data, dict) else None
    if not isinstance(trusted, dict):
        return _damaged(path, "it has no 'trusted' object")
    records = {k: dict(v) for k, v in trusted.items()
               if isinstance(k, str) and _is_sha256(k) and isinstance(v, dict)}
    return TrustedCode(frozenset(records), records)


def _damaged(path: Path, reason: str) -> TrustedCode:
    return TrustedCode(records={}, warning=(
        f"the settings file {path} cannot be read ({reason}): no model code is trusted until you trust it "
        "again (pressing 'Trust and run' rewrites the file)"
    ))


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def remember_trusted_code(files: Iterable[tuple[Path, str]], path: Path | None = None) -> Path:
    """Add ``(file, sha256)`` pairs to the remembered consent (a damaged file is replaced); returns its path."""
    path = path or trusted_code_path()
    current = read_trusted_code(path)
    records = dict(current.records or {})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for file, sha256 in files:
        if not _is_sha256(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        records[sha256] = {"file": str(file), "trusted_at": now}
    write_json_atomic(path, {"version": SETTINGS_VERSION, "trusted": records}, str(path))
    return path


def reviewer_name_path() -> Path:
    """Where the last reviewer name lives (``reviewer.json`` in :func:`config_dir`)."""
    return config_dir() / REVIEWER_FILE


def _clean_name(name: object) -> str:
    """Whitespace collapsed, at most MAX_REVIEWER_CHARS; anything but a string is no name."""
    return " ".join(name.split())[:MAX_REVIEWER_CHARS] if isinstance(name, str) else ""


def read_reviewer_name(path: Path | None = None) -> str:
    """The remembered reviewer name; '' when there is none or the file is damaged (never raises)."""
    path = path or reviewer_name_path()
    try:
        if not path.is_file() or path.stat().st_size > 64 * 1024:
            return ""
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return ""
    return _clean_name(data.get("reviewer")) if isinstance(data, dict) else ""


def remember_reviewer_name(name: str, path: Path | None = None) -> Path:
    """Write ``name`` (cleaned; '' forgets it) atomically as the remembered reviewer; returns the file's path."""
    path = path or reviewer_name_path()
    write_json_atomic(path, {"version": SETTINGS_VERSION, "reviewer": _clean_name(name)}, str(path))
    return path


def add_trust_code_option(parser: argparse.ArgumentParser) -> None:
    """``--trust-code`` on a command that loads models from a manifest (``args.trust_code``)."""
    parser.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)


__all__ = [
    "CONFIG_DIR_ENV",
    "REVIEWER_FILE",
    "TRUSTED_CODE_FILE",
    "TrustedCode",
    "add_trust_code_option",
    "config_dir",
    "read_reviewer_name",
    "read_trusted_code",
    "remember_reviewer_name",
    "remember_trusted_code",
    "reviewer_name_path",
    "trusted_code_path",
]
