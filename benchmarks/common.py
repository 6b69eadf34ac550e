"""Shared by the benchmark scripts: the host calibration probe.

The host is shared: each script times this fixed probe before and after its measurements,
so that a run disturbed by a neighbour can be recognised (and its ratios trusted over its
absolute times).
"""

from __future__ import annotations

import time

import torch


def probe_ms() -> float:
    """Milliseconds for ten 512x512 float32 matmuls on the current torch threads."""
    a = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    return (time.perf_counter() - start) * 1000
