"""Where the Trust page may read a run's photos from: only under a folder the user chose.

A faithfulness run records the data folder it scored and paths relative to it, but a store
is a file anyone can hand over: its ``data_root`` may be a folder never evaluated, ``/``, or
its paths may climb out (``../../etc/passwd``). So the page reads photos through the same
one path-under-root check as the Errors page (:func:`mushcam.review.paths.dataset_file`),
under the folder the *user* gives; the recorded folder is used only when the user picks it.
On top of that check, a folder that is the whole file system (``/``, a drive) is refused
outright: a test folder is never the file system, and opening it on the Explain page would
walk every file on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from mushcam.review.paths import OutsideDataFolder, dataset_file, refuse_file_system_root


def data_folder(folder: str | os.PathLike[str], whose: str = "the image folder") -> Path:
    """``folder`` resolved, when it is an existing folder that is not a file-system root.

    ``whose`` names it in the message ("the image folder", "the folder this store records").
    Raises :class:`OutsideDataFolder` for ``/`` (or a drive), ImageLoadError (through
    :func:`dataset_file`'s rules) is left to the per-photo check.
    """
    text = str(folder).strip()
    if not text:
        raise OutsideDataFolder(f"{whose} is empty; give the test folder (ROOT/<Class>/<image>)")
    path = Path(text).expanduser()
    resolved = path.resolve()
    refuse_file_system_root(resolved, text, whose)
    if not resolved.is_dir():
        raise OutsideDataFolder(f"{whose} {text!r} is not an existing folder; choose the test folder the store "
                                "was evaluated on")
    return resolved


def run_photo(folder: str | os.PathLike[str], relpath: str) -> Path:
    """The stored photo ``relpath`` under the user's ``folder`` (the one check; never outside it)."""
    return dataset_file(data_folder(folder), relpath)


def same_folder(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two folder names are the same folder once resolved (the recorded one may then be used)."""
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
