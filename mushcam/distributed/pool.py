"""The driver's side of one model: its workers started, batches streamed to them, results gathered.

Each worker is a Ray actor (``max_restarts`` / ``max_task_retries`` = ``RayOptions.max_retries``):
when its process dies, Ray starts it again (the model is loaded again) and re-runs the
batches it had been given. At most ``batches_in_flight`` batches wait on each worker, so the
workers hold at most that many batches of photo paths and one batch of decoded photos.

Counting retries: every batch's result carries the process id that ran it. A batch handed to
a worker while its process was P and answered by another process was run again after P
died: a retried task. (The driver submits to a worker only when one of its batches comes
back, so no batch is handed to a new process before the driver has seen that process.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from mushcam.distributed.actors import BatchStats, WorkerInfo
from mushcam.distributed.progress import DriverProgress
from mushcam.distributed.runtime import DistributedError, Placement, RayOptions
from mushcam.exceptions import MushcamError


@dataclass
class WorkerTally:
    """What one worker did in a pass: batches, photos, busy seconds, its peak memory, restarts seen."""

    worker: int
    pid: int
    node: str
    device: str
    load_seconds: float
    batches: int = 0
    photos: int = 0
    busy_seconds: float = 0.0
    peak_rss_bytes: int | None = None
    restarts: int = 0


@dataclass
class PoolReport:
    """One model's distributed pass: wall time, tasks, retries, the driver's own time, per worker."""

    label: str
    seconds: float = 0.0
    tasks: int = 0
    retried: int = 0
    driver_seconds: float = 0.0  # the driver's work on results (store, CSV), outside waiting
    workers: list[WorkerTally] = field(default_factory=list)

    @property
    def photos_per_second(self) -> float:
        return sum(w.photos for w in self.workers) / self.seconds if self.seconds > 0 else 0.0


def _unwrap(ray: ModuleType, label: str, refs: Any) -> Any:  # noqa: ANN401 - whatever the worker returned
    """``ray.get`` whose failures are ours: an input error raised in a worker is raised here as itself."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MushcamError | KeyboardInterrupt):
            raise cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        kind = type(exc).__name__
        raise DistributedError(f"{label}: a Ray worker died more often than it may be restarted ({kind}); what was "
                               "finished is kept: run the same command again to go on") from None


class WorkerPool:
    """The actors of one model (``worker_class(*args)``, each with ``.info()`` and ``.run_batch(payload)``)."""

    def __init__(self, ray: ModuleType, worker_class: type, args: tuple[Any, ...], place: Placement,
                 options: RayOptions, label: str, say: Callable[[str], None]) -> None:
        self.ray, self.options, self.label = ray, options, label
        remote = ray.remote(worker_class).options(
            num_cpus=place.num_cpus, num_gpus=place.num_gpus,
            max_restarts=options.max_retries, max_task_retries=options.max_retries)
        self.actors = [remote.remote(*args, place.device) for _ in range(place.workers)]
        infos: list[WorkerInfo] = _unwrap(ray, label, [a.info.remote() for a in self.actors])
        self.infos = infos
        self.pids = [info.pid for info in infos]
        self.report = PoolReport(label, workers=[WorkerTally(i, info.pid, info.node, info.device, info.load_seconds)
                                                 for i, info in enumerate(infos)])
        say(f"Ray · {label}: {len(infos)} workers started on {place.device} "
            f"(pids {', '.join(str(p) for p in self.pids)}; nodes {', '.join(sorted({i.node for i in infos}))})")

    def map(self, batches: Iterable[tuple[int, Any]], on_result: Callable[[int, Any], None],
            progress: DriverProgress) -> PoolReport:
        """Run every ``(photos, payload)`` batch; ``on_result(index, result)`` on the driver as each one comes back."""
        started = time.perf_counter()
        queue = enumerate(batches)
        pending: dict[Any, tuple[int, int, int]] = {}  # ref -> (worker, batch index, the worker's pid when handed)

        def hand(worker: int) -> None:
            for index, (_photos, payload) in queue:
                pending[self.actors[worker].run_batch.remote(payload)] = (worker, index, self.pids[worker])
                return

        for _ in range(self.options.batches_in_flight):  # round robin: every worker gets its first batch first
            for worker in range(len(self.actors)):
                hand(worker)
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            worker, index, handed_pid = pending.pop(ready[0])
            result, stats = _unwrap(self.ray, self.label, ready[0])
            self._count(worker, handed_pid, stats)
            hand(worker)
            before = time.perf_counter()
            on_result(index, result)
            self.report.driver_seconds += time.perf_counter() - before
            progress.update(stats.photos)
        self.report.seconds += time.perf_counter() - started
        return self.report

    def _count(self, worker: int, handed_pid: int, stats: BatchStats) -> None:
        tally = self.report.workers[worker]
        self.report.tasks += 1
        if stats.pid != handed_pid:
            self.report.retried += 1
        if stats.pid != self.pids[worker]:
            self.pids[worker] = tally.pid = stats.pid
            tally.restarts += 1
        tally.batches += 1
        tally.photos += stats.photos
        tally.busy_seconds += stats.seconds
        if stats.peak_rss_bytes is not None:
            tally.peak_rss_bytes = max(tally.peak_rss_bytes or 0, stats.peak_rss_bytes)

    def close(self) -> None:
        """End the actors (their models are freed with their processes)."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
