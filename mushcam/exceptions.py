"""The library's one error family.

Every failure caused by what a user brings (an image, a checkpoint, a manifest, a results
store, a cache folder, a command-line option) is a :class:`MushcamError` whose message says
what to do. It is raised at the boundary where a foreign exception enters (json, torch.load,
sqlite3, PIL, os), so pages and the CLI catch this family and nothing else: anything outside
it is a bug and is shown as one.
"""

from __future__ import annotations


class MushcamError(ValueError):
    """Base class of every input-caused failure in MushCAM (subclasses name the input)."""


__all__ = ["MushcamError"]
