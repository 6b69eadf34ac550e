"""The command line: ``python -m mushcam ...`` and the ``mushcam`` console script.

One module per command group: :mod:`~mushcam.cli.explain`, :mod:`~mushcam.cli.checkpoint`
(``import-checkpoint``), :mod:`~mushcam.cli.compare`, :mod:`~mushcam.cli.evaluate` (``evaluate``,
``report``), :mod:`~mushcam.cli.train`, :mod:`~mushcam.cli.pipeline` (``gradcam``),
:mod:`~mushcam.cli.review` (``review-report``, ``export-labels``, ``check-data``) and
:mod:`~mushcam.cli.trust` (``faithfulness``, ``sanity``); :mod:`~mushcam.cli.common` holds their
shared helpers and :mod:`~mushcam.cli.main` the parser and the error handling.

Nothing in the library imports this package. ``UsageError`` lives in :mod:`mushcam.exceptions`
and ``resolve_manifest`` in :mod:`mushcam.cli.common`; both stay importable from here.
``parse_target`` and ``with_checkpoint`` (of :mod:`~mushcam.cli.explain`, which imports torch)
are loaded on first use, so that ``python -m mushcam --help`` imports no command module.
"""

from __future__ import annotations

import importlib
from typing import Any

from mushcam.cli.common import positive_int, resolve_manifest
from mushcam.cli.main import build_parser, describe_error, main
from mushcam.exceptions import MushcamError, UsageError

__all__ = [
    "MushcamError",
    "UsageError",
    "build_parser",
    "describe_error",
    "main",
    "parse_target",
    "positive_int",
    "resolve_manifest",
    "with_checkpoint",
]


def __getattr__(name: str) -> Any:
    """``parse_target`` and ``with_checkpoint``, imported from :mod:`mushcam.cli.explain` on first use."""
    if name in ("parse_target", "with_checkpoint"):
        return getattr(importlib.import_module("mushcam.cli.explain"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
