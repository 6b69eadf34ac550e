"""``gradcam --ray``: the batch Grad-CAM job with its photos spread over Ray workers.

Per model, in turn: the workers (one per GPU, else per CPU) each hold the model and compute,
cache and draw a batch of ``--batch-size`` photos at a time, exactly as the local pass does
for that batch (:meth:`mushcam.pipeline.job.ModelPass.process_items`). The driver checks the
settings (``run.json``), writes ``predictions.csv`` in the photos' order (it is the CSV's only
writer) and adds up the report. A rerun skips what the cache and the files already hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from mushcam.distributed.actors import GradcamBatch, GradcamWorker
from mushcam.distributed.pool import PoolReport, WorkerPool
from mushcam.distributed.progress import DriverProgress
from mushcam.distributed.runtime import RayOptions, placement, ray_session, require_ray
from mushcam.pipeline.config import ModelReport, PipelineConfig
from mushcam.pipeline.items import ImageItem
from mushcam.pipeline.job import ModelPass, check_job
from mushcam.pipeline.writer import CSV_FIELDS


def chunks(items: Sequence, size: int) -> list[list]:  # noqa: ANN001 - any sequence
    """``items`` cut in order into lists of at most ``size``."""
    return [list(items[first:first + size]) for first in range(0, len(items), size)]


class _InOrder:
    """Batch results come back in any order; the CSV gets them in the photos' order (the local run's)."""

    def __init__(self, job: ModelPass, writer, say: Callable[[str], None]) -> None:  # noqa: ANN001
        self.job, self.writer, self.say = job, writer, say
        self.waiting: dict[int, GradcamBatch] = {}
        self.next = 0
        self.said: set[str] = set()

    def __call__(self, index: int, batch: GradcamBatch) -> None:
        self.waiting[index] = batch
        while self.next in self.waiting:
            self._write(self.waiting.pop(self.next))
            self.next += 1

    def _write(self, batch: GradcamBatch) -> None:
        for row in batch.rows:
            self.writer.writerow(row)
        report = self.job.report
        report.images += batch.images
        report.computed += batch.computed
        report.cached += batch.cached
        report.skipped += batch.skipped
        report.failed.extend(batch.failed)
        report.model_loaded |= batch.model_loaded
        for message in batch.messages:
            if message not in self.said:  # a cache warning once, not once per worker
                self.said.add(message)
                self.say(message)


def _one_model(ray: ModuleType, config: PipelineConfig, backbone: str, items: Sequence[ImageItem],
               options: RayOptions, say: Callable[[str], None]) -> tuple[ModelReport, PoolReport]:
    batches = chunks(items, config.batch_size)
    place = placement(ray, options, len(batches))
    pool = WorkerPool(ray, GradcamWorker, (config, backbone), place, options, backbone, say)
    try:
        job = ModelPass(config, backbone, items, say)
        job.layer = job.layer or pool.infos[0].layer  # no layer in the manifest: the first worker's model said
        progress = DriverProgress(backbone, len(items), say, options.progress_seconds)

        def gather(writer) -> None:  # noqa: ANN001 - a csv writer
            writer.writerow(CSV_FIELDS)
            pool.map(((len(b), b) for b in batches), _InOrder(job, writer, say), progress)

        report = job.run(process=gather)
    finally:
        pool.close()
    return report, pool.report


def run_pipeline_on_ray(config: PipelineConfig, items: Sequence[ImageItem], options: RayOptions,
                        progress: Callable[[str], None] | None = None) -> tuple[list[ModelReport], list[PoolReport]]:
    """:func:`mushcam.pipeline.run_pipeline` on Ray: the same files, cache entries and CSV; one report per model,
    and per model where the time went (:class:`PoolReport`)."""
    require_ray()  # before anything is checked or written: without Ray, say how to install it
    say = progress or (lambda message: None)
    check_job(config, items)
    reports, pools = [], []
    with ray_session(options) as ray:
        for backbone in config.backbones:
            report, pool = _one_model(ray, config, backbone, items, options, say)
            reports.append(report)
            pools.append(pool)
    return reports, pools
