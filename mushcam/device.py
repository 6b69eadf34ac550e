"""The one reading of a ``--device`` value: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

Every job that runs a model (train, the batch pipeline, ...) resolves its device here, so
the same value is accepted or refused with the same words everywhere.
"""

from __future__ import annotations

import re

import torch

from mushcam.exceptions import MushcamError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceError(MushcamError):
    """A ``--device`` value that is unknown or names a device this machine lacks."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    ``cuda``/``cuda:N`` without that GPU is a :class:`DeviceError` saying what to pass instead.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        return _cuda_device(name)
    raise DeviceError(f"--device must be {DEVICE_CHOICES}; got {name!r}")


def _cuda_device(name: str) -> torch.device:
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {name}: no CUDA GPU is available here (torch.cuda.is_available() is False); "
            "use --device auto or cpu"
        )
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(f"--device {name}: there are only {count} CUDA devices; use cuda:0 to cuda:{count - 1}")
    return device


__all__ = ["DEVICE_CHOICES", "DeviceError", "resolve_device"]
