"""Where images may be read from: only under the folder the user gave (the trust boundary).

A results store records the data folder it was evaluated on, but a store is a file anyone
can hand over; reading that folder would let a store make the app read anything. So the
Errors page and ``review-report`` read images only under a folder the *user* names, and
take from the store nothing but paths relative to it. Rules, for a relative path
``Class/photo.jpg`` under the user's ``root``:

- it must be relative, without ``..`` (a store naming ``../../etc/passwd`` is refused);
- every folder on the way must stay inside ``root`` once links are followed (a class
  folder linking to ``/`` is refused and never walked);
- the file itself may be a symbolic link to anywhere: datasets made of linked files are
  common, and the user chose the folder that holds the links.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from mushcam.data import IMAGE_EXTENSIONS, ImageLoadError
from mushcam.exceptions import MushcamError


class OutsideDataFolder(MushcamError):
    """A path that would leave the folder the user chose."""


def _inside(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def refuse_file_system_root(resolved: Path, text: str, whose: str = "the image folder") -> None:
    """Refuse ``/`` (or a drive) as a data folder: MushCAM never reads or walks the whole file system."""
    if resolved == Path(resolved.anchor):
        raise OutsideDataFolder(
            f"{whose} is {text!r}, the whole file system, not a test folder: MushCAM does not read or walk it; "
            "choose the folder that holds the class folders (ROOT/<Class>/<image>)"
        )


def dataset_file(root: str | os.PathLike[str], relpath: str) -> Path:
    """``root / relpath`` under the rules above; raises :class:`OutsideDataFolder` (also for a
    root that is the whole file system) or ImageLoadError."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ImageLoadError(f"the image folder {base} does not exist; choose the folder the store was evaluated on")
    base = base.resolve()
    refuse_file_system_root(base, str(root))
    pure = PurePosixPath(str(relpath).replace("\\", "/"))
    if not str(relpath) or "\x00" in str(relpath) or pure.is_absolute() or ".." in pure.parts:
        raise OutsideDataFolder(f"refused path outside the data folder: {relpath!r}")
    folder = base
    for part in pure.parts[:-1]:
        folder = (folder / part).resolve()
        if not _inside(folder, base):
            raise OutsideDataFolder(
                f"refused path outside the data folder: {relpath!r} (a folder on the way links out)"
            )
    target = folder / pure.parts[-1]
    if not target.is_file():
        if target.exists():
            raise ImageLoadError(f"{relpath} is not a file")
        raise ImageLoadError(f"image not found: {target} (is {base} the folder the store was evaluated on?)")
    return target


def image_files(folder: Path, root: Path) -> Iterator[Path]:
    """Image files under ``folder`` (sorted), never following folder links out of ``root``.

    Folder links are not followed at all while walking; linked *files* are listed.
    """
    base = root.resolve()
    if not _inside(folder.resolve(), base):
        return
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(current) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.is_file():  # follows a file link; drops dangling ones
                yield path
