"""``python -m mushcam <command> ...``: the parser built from the command modules, and error handling.

Each module in :data:`COMMAND_MODULES` registers its sub-commands through an
``add_cli(subparsers)`` function; the order of the tuple is the order of ``--help``. A user
error (bad image, bad checkpoint, bad manifest...: any :class:`MushcamError`, or an OS error
at the edge) prints one line and exits with status 2; set ``MUSHCAM_DEBUG=1`` to see the
traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mushcam.cli import checkpoint, compare, evaluate, explain, patterns, pipeline, review, train, trust
from mushcam.exceptions import MushcamError

# The modules that contribute sub-commands through ``add_cli(subparsers)``, in ``--help`` order.
COMMAND_MODULES = (explain, checkpoint, compare, evaluate, train, pipeline, review, trust, patterns)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mushcam`` parser with every command module's sub-commands."""
    parser = argparse.ArgumentParser(prog="python -m mushcam", description="MushCAM: Grad-CAM for mushroom classifiers")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command: its status, 2 for a user error, 130 for Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MushcamError, OSError) as exc:
        # The library's own errors (raised where json, torch.load, sqlite3, PIL or os failed)
        # and OS errors at the edge (a full disk, a permission): one line, no traceback.
        if os.environ.get("MUSHCAM_DEBUG"):
            raise
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        return 2


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message, with an OS error's file name shown readably."""
    if isinstance(exc, OSError) and not isinstance(exc, MushcamError) and exc.strerror:
        where = f": {os.fsencode(exc.filename).decode('utf-8', 'backslashreplace')}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)
