"""``python -m mushcam <command> ...``: the parser built from the command modules, and error handling.

Each module in :data:`COMMANDS` registers its sub-commands through an ``add_cli(subparsers)``
function; the order of the table is the order of ``--help``. Only the module of the command
being run is imported (each imports torch and its job's modules: importing all nine took ~4.8 s
on the 2-core host, one ~2.4 s, and ``--help`` imports none); the others are listed by name and
help from the table, which ``tests/unit/cli/test_cli_lazy.py`` checks against the modules. A user
error (bad image, bad checkpoint, bad manifest...: any :class:`MushcamError`, or an OS error at
the edge) prints one line and exits with status 2; set ``MUSHCAM_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from mushcam.exceptions import MushcamError
from mushcam.text import terminal_safe

# Module -> the sub-commands its add_cli registers, with their one-line help (as --help lists them).
COMMANDS: dict[str, tuple[tuple[str, str], ...]] = {
    "mushcam.cli.explain": (
        ("explain", "Grad-CAM of one image: original/heatmap/overlay/combined PNGs, cam.npy, prediction.json"),),
    "mushcam.cli.checkpoint": (
        ("import-checkpoint", "convert a whole pickled model (torch.save(model)) into a weights-only checkpoint + "
                              "manifest entry"),),
    "mushcam.cli.compare": (
        ("compare", "the models side by side on several images: grid PNG with agreement and focus numbers, CSV"),),
    "mushcam.cli.evaluate": (
        ("evaluate", "run each model over a test set (ROOT/<Class>/<image>) and store every prediction in SQLite"),
        ("report", "print accuracy, per-class scores, confusion matrix and toxicity-aware error rates")),
    "mushcam.cli.train": (
        ("train", "train backbones on ROOT/train, select on ROOT/val; write checkpoints + manifest.json into --out"),),
    "mushcam.cli.pipeline": (
        ("gradcam", "batch Grad-CAM: many images, several models, one model at a time, cached and resumable"),),
    "mushcam.cli.review": (
        ("review-report", "write the error analysis (Markdown + self-contained HTML) from a store's runs and reviews"),
        ("export-labels", "CSV of errors tagged 'label doubtful': path, current label, suggested label, note, "
                          "reviewer"),
        ("check-data", "find near-duplicate photos across ROOT/train, val and test (perceptual hash, robust to "
                       "crops and watermarks)")),
    "mushcam.cli.trust": (
        ("faithfulness", "deletion/insertion AUC, Average Drop, ROAD of every model x method over a test folder, "
                         "into the results store"),
        ("sanity", "cascading-randomisation sanity check of one model x method")),
    "mushcam.cli.patterns": (
        ("patterns", "what each model relies on across a test folder: strategy clusters, shortcut flags, focus on "
                     "the object, concepts; Markdown + HTML + patterns.json"),),
}


def command_module(command: str | None) -> str | None:
    """The module that registers ``command`` (None: not a command of the table)."""
    return next((module for module, commands in COMMANDS.items() if any(name == command for name, _ in commands)),
                None)


def build_parser(command: str | None = "") -> argparse.ArgumentParser:
    """The ``python -m mushcam`` parser listing every command.

    ``command`` names the one that will run: only its module is imported and its options built;
    the others are listed by name and help. ``""`` (the default) imports every module, as before.
    """
    parser = argparse.ArgumentParser(prog="python -m mushcam", description="MushCAM: Grad-CAM for mushroom classifiers")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = command_module(command)
    for module, commands in COMMANDS.items():
        if command == "" or module == wanted:
            importlib.import_module(module).add_cli(subparsers)
        else:
            for name, help_text in commands:
                subparsers.add_parser(name, help=help_text)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command in ``argv``: its first word that is not an option (the top level takes only -h)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command: its status, 2 for a user error, 130 for Ctrl-C."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(words))
    args = parser.parse_args(words)
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
    """One line for the user: the message, with an OS error's file name shown readably, and every
    control or format character a name in it carries (ESC, CR, a bidi override) escaped, so that a
    file name cannot recolour the terminal or rewrite the line (line breaks and tabs are kept)."""
    if isinstance(exc, OSError) and not isinstance(exc, MushcamError) and exc.strerror:
        where = f": {os.fsencode(exc.filename).decode('utf-8', 'backslashreplace')}" if exc.filename else ""
        text = f"{exc.strerror}{where}"
    else:
        text = str(exc)
    return "\n".join("\t".join(terminal_safe(part) for part in line.split("\t")) for line in text.split("\n"))


def __getattr__(name: str) -> tuple[ModuleType, ...]:
    """``COMMAND_MODULES``, the old public tuple of command modules: imported on first use."""
    if name == "COMMAND_MODULES":
        return tuple(importlib.import_module(module) for module in COMMANDS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
