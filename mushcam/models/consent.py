"""Consent to run a manifest entry's own code: who decided what, and how a refusal reads.

:class:`CodeConsent` is the decision, passed explicitly down to the one place user code is
imported (:func:`mushcam.models.usercode.import_class`): everything for one command (the
CLI's ``--trust-code``) or the files whose SHA-256 the user trusted on the Home page
(remembered by :mod:`mushcam.settings`). A refusal is a :class:`CodeConsentError` that says
how to consent. Nothing here reads or imports the user's files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mushcam.exceptions import MushcamError
from mushcam.settings import read_trusted_code


class CodeConsentError(MushcamError):
    """A manifest entry wants to run code the user has not trusted; ``files`` lists (file, sha256)."""

    def __init__(self, message: str, files: Sequence[tuple[Path, str]] = ()) -> None:
        super().__init__(message)
        self.files = list(files)


@dataclass(frozen=True)
class CodeFile:
    """One user file an entry would run: where, and its SHA-256 as it is now."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class CodeConsent:
    """Which user code may run: all of it for this call (``trust_code``, the CLI's
    ``--trust-code``), else only files whose SHA-256 is in ``trusted`` (the Home page's
    remembered choice). ``warning``: why the remembered choice could not be read, if so."""

    trust_code: bool = False
    trusted: frozenset[str] = frozenset()
    warning: str = ""

    @classmethod
    def remembered(cls) -> CodeConsent:
        """The consent the user gave on the Home page (:func:`mushcam.settings.read_trusted_code`)."""
        found = read_trusted_code()
        return cls(False, found.hashes, found.warning)

    def allows(self, files: Sequence[CodeFile]) -> bool:
        """Whether every one of ``files``, as hashed now, may run."""
        return self.trust_code or all(f.sha256 in self.trusted for f in files)


def consent_reason(files: Sequence[CodeFile], warning: str = "", base: Path | None = None) -> str:
    """"needs your consent to run model.py (sha256 ab12…): pass --trust-code, or press …".

    Files are named relative to ``base`` (default: the first file's folder, the code entry's
    own), so ``layers/blocks.py`` of a package beside the model reads as such."""
    base = base if base is not None else (files[0].path.parent if files else Path())
    names = [f"{_relative(f.path, base)} (sha256 {f.sha256[:12]}…)" for f in files]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more files" if len(names) > 4 else "")
    return (f"needs your consent to run {shown}: pass --trust-code, or press 'Trust and run' on the Home page"
            + (f" ({warning})" if warning else ""))


def _relative(path: Path, base: Path) -> str:
    """``model.py``, ``layers/blocks.py``: a file of the entry's folder tree as the user knows it."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def consent_message(files: Sequence[CodeFile], model_name: str = "", code: str = "", warning: str = "",
                    base: Path | None = None) -> str:
    """"model 'x' needs your consent to run model.py (sha256 ab12…): pass --trust-code, or …"."""
    who = f"model {model_name!r}" if model_name else (f"{code!r}" if code else "this entry")
    return f"{who} {consent_reason(files, warning, base)}"


def check_consent(files: Sequence[CodeFile], consent: CodeConsent, model_name: str = "", code: str = "") -> None:
    """Raise :class:`CodeConsentError` unless ``consent`` allows ``files`` as they are now."""
    if consent.allows(files):
        return
    untrusted = [f for f in files if f.sha256 not in consent.trusted]
    base = files[0].path.parent if files else None  # the entry's code file comes first
    raise CodeConsentError(consent_message(untrusted, model_name, code, consent.warning, base),
                           [(f.path, f.sha256) for f in files])


__all__ = ["CodeConsent", "CodeConsentError", "CodeFile", "check_consent", "consent_message", "consent_reason"]
