"""Helpers shared by the command modules: the manifest named by ``--manifest``, argparse types."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from mushcam.exceptions import MushcamError, UsageError

if TYPE_CHECKING:
    from mushcam.manifest import Manifest


def resolve_manifest(manifest_arg: str | None) -> Manifest:
    """The manifest named on the command line, or the default checkpoint folder's one.

    A manifest that Python's json cannot even hold (nesting deep enough for RecursionError,
    an integer of more than 4,300 digits) is a user error here too, not a traceback.
    """
    from mushcam.manifest import ManifestError, default_checkpoint_dir, load_manifest

    where = manifest_arg if manifest_arg else default_checkpoint_dir()
    try:
        return load_manifest(where)
    except MushcamError:
        raise
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            reason = "it is nested too deeply to be a manifest"
        elif "digits" in str(exc):
            reason = "it holds a number with more than 4,300 digits"
        else:
            reason = str(exc)
        raise ManifestError(f"the manifest in {where} cannot be read: {reason}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (argparse names the option in its message)."""
    return count_at_least(1)(text)


def count_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type for a count option (``--limit``, ``--images``, ``--n`` ...): a whole number >= ``minimum``.

    One parser for every count, so ``--limit 0`` (which once meant "all") and ``--limit -3``
    (which once said "no images") both answer ``argument --limit: must be at least 1; got 0``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; got {value}")
        return value

    parse.__name__ = f"count_at_least_{minimum}"  # argparse names the type in some messages
    return parse


# The largest cache a command accepts: 10 TB. Far beyond any disk's map cache, and small
# enough that the size in bytes is an ordinary integer (1e308 MB overflowed int()).
MAX_MEGABYTES = 10_000_000


def check_megabytes(value: float, option: str) -> float:
    """A size option in megabytes, positive, finite and at most :data:`MAX_MEGABYTES`; else a
    :class:`UsageError` naming ``option`` (one ``error:`` line, exit 2, like every option check)."""
    if not (math.isfinite(value) and 0 < value <= MAX_MEGABYTES):
        raise UsageError(f"{option} must be a positive, finite number of megabytes, at most {MAX_MEGABYTES:,} "
                         f"(10 TB); got {value}")
    return value


__all__ = ["MAX_MEGABYTES", "check_megabytes", "count_at_least", "positive_int", "resolve_manifest"]
