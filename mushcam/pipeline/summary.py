"""The table printed at the end of a ``gradcam`` run: per model, images, cache hits, speed, memory."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mushcam.cam import DEFAULT_METHOD, METHOD_LABELS
from mushcam.pipeline.config import ModelReport


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def format_summary(reports: Sequence[ModelReport], total_seconds: float, device: torch.device,
                   method: str = DEFAULT_METHOD) -> str:
    """The table printed at the end of a run."""
    lines = [f"{METHOD_LABELS[method]} on {device}: {total_seconds:.1f} s in all"]
    header = (f"{'model':<20} {'images':>6} {'computed':>8} {'cached':>6} {'seconds':>8} {'img/s':>7} "
              f"{'peak RSS':>9} {'above start':>11}")
    if device.type == "cuda":
        header += f" {'CUDA max alloc':>14}"
    lines.append(header)
    for r in reports:
        above = None if r.peak_rss_bytes is None or r.rss_start_bytes is None else r.peak_rss_bytes - r.rss_start_bytes
        line = (f"{(r.label or r.backbone):<20} {r.images:>6} {r.computed:>8} {r.cached:>6} "
                f"{r.seconds:>8.2f} {r.images_per_second:>7.1f} {_mb(r.peak_rss_bytes):>9} {_mb(above):>11}")
        if device.type == "cuda":
            line += f" {_mb(r.cuda_max_allocated_bytes):>14}"
        lines.append(line)
    if reports and not reports[0].peak_is_per_model:
        lines.append("(peak RSS is the process's high-water mark so far: it could not be reset per model here)")
    failed = [f for r in reports for f in (f"{r.backbone}: {x}" for x in r.failed)]
    if failed:
        lines.append(f"{len(failed)} images could not be processed:")
        lines.extend(f"  {f}" for f in failed[:20])
        if len(failed) > 20:
            lines.append(f"  … {len(failed) - 20} more")
    return "\n".join(lines)
