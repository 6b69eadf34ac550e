"""The device a job runs on (``--device``) and giving memory back after each model."""

from __future__ import annotations

import ctypes
import gc
import sys

import torch

from mushcam import device as devices
from mushcam.exceptions import UsageError


def release_memory(device: torch.device) -> None:
    """Return freed memory: garbage-collect, trim the C heap, empty the CUDA cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``: :func:`mushcam.device.resolve_device`,
    its refusal raised as the command line's :class:`UsageError`."""
    try:
        return devices.resolve_device(name)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
