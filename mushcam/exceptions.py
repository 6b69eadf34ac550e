"""The library's one error family.

Every failure caused by what a user brings (an image, a checkpoint, a manifest, a results
store, a cache folder, a command-line option) is a :class:`MushcamError` whose message says
what to do. It is raised at the boundary where a foreign exception enters (json, torch.load,
sqlite3, PIL, os), so pages and the CLI catch this family and nothing else: anything outside
it is a bug and is shown as one.

:class:`MushcamError` and :class:`UsageError` live here. The other members stay beside the
code that raises them and are importable from here too (``from mushcam.exceptions import
StoreError``): they are loaded on first access (PEP 562), so this module imports nothing and
has no import cycle with the modules that subclass :class:`MushcamError`. Some of those
modules import torch, so asking for their error loads torch.
"""

from __future__ import annotations

import importlib


class MushcamError(ValueError):
    """Base class of every input-caused failure in MushCAM (subclasses name the input)."""


class UsageError(MushcamError):
    """A command-line argument (or an option given to a job) is wrong; the message says which."""


# Error name -> the module that defines it (imported when the name is first asked for).
_DEFINED_IN: dict[str, str] = {
    "ArchitectureError": "mushcam.models.registry",
    "CheckpointError": "mushcam.models.checkpoint",
    "DataFolderError": "mushcam.data",
    "FaithfulnessError": "mushcam.trust.faithfulness",
    "GradCAMError": "mushcam.cam.core",
    "HeadError": "mushcam.models.heads",
    "ImageLoadError": "mushcam.data",
    "LayerError": "mushcam.models.layers",
    "ManifestError": "mushcam.manifest",
    "NonFiniteOutputError": "mushcam.finite",
    "OutputError": "mushcam.files",
    "OutsideDataFolder": "mushcam.review.paths",
    "PretrainedWeightsUnavailable": "mushcam.models.registry",
    "SanityError": "mushcam.trust.sanity",
    "StoreError": "mushcam.store.records",
    "UnknownMethodError": "mushcam.cam.registry",
    "UserCodeError": "mushcam.models.usercode",
}


def __getattr__(name: str) -> type[MushcamError]:
    """The error class ``name`` from the module that defines it (PEP 562 lazy attribute)."""
    if name not in _DEFINED_IN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_DEFINED_IN[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_DEFINED_IN])


__all__ = ["MushcamError", "UsageError", *sorted(_DEFINED_IN)]
