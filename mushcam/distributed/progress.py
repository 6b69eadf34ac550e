"""What the driver says while a distributed pass runs (photos done, photos/s, ETA) and where the time went."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mushcam.distributed.pool import PoolReport


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class DriverProgress:
    """A progress line per model, at most every ``every_seconds`` (and always at the end).

    rate = photos done / seconds since the start; ETA = (total - done) / rate.
    """

    def __init__(self, label: str, total: int, say: Callable[[str], None], every_seconds: float = 10.0) -> None:
        self.label, self.total, self.say, self.every = label, total, say, every_seconds
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, photos: int) -> None:
        self.done += photos
        now = time.perf_counter()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.say(f"{self.label}: {self.done}/{self.total} photos, {rate:.1f} photos/s, ETA {_duration(eta)}")


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def format_pool_report(report: PoolReport) -> str:
    """Where one model's time went: the pass, its retries, the driver, and per worker busy time and memory.

    busy % = the seconds a worker spent inside its batches / the pass's wall-clock seconds.
    """
    lines = [
        f"Ray · {report.label}: {len(report.workers)} workers, {report.tasks} tasks in {report.seconds:.1f} s "
        f"({report.photos_per_second:.1f} photos/s); {report.retried} tasks retried after a worker died; "
        f"driver {report.driver_seconds:.1f} s on results",
        f"  {'worker':>6} {'node':<16} {'pid':>8} {'device':<6} {'batches':>7} {'photos':>6} {'busy s':>7} "
        f"{'busy %':>6} {'load s':>6} {'peak RSS':>9} {'restarts':>8}",
    ]
    for w in report.workers:
        busy = 100.0 * w.busy_seconds / report.seconds if report.seconds > 0 else 0.0
        lines.append(f"  {w.worker:>6} {w.node[:16]:<16} {w.pid:>8} {w.device:<6} {w.batches:>7} {w.photos:>6} "
                     f"{w.busy_seconds:>7.1f} {busy:>5.0f}% {w.load_seconds:>6.1f} {_mb(w.peak_rss_bytes):>9} "
                     f"{w.restarts:>8}")
    return "\n".join(lines)


def format_pool_reports(reports: Sequence[PoolReport]) -> str:
    """Every model's report, then the total of tasks retried."""
    retried = sum(r.retried for r in reports)
    return "\n".join([*(format_pool_report(r) for r in reports),
                      f"Ray: {sum(r.tasks for r in reports)} tasks in all, retried {retried}"])
