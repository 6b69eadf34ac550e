"""The device a job runs on (``--device``) and giving memory back after each model."""

from __future__ import annotations

import ctypes
import gc
import re
import sys

import torch

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
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available here (torch.cuda.is_available() is False)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
        return device
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
