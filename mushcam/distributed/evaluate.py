"""``evaluate --ray``: each model's predictions computed by Ray workers, saved by the driver.

The photos are cut into the local job's batches (``--batch-size`` in order), each batch
goes to a worker holding the model (:func:`mushcam.evaluate.predict.predict_images`), and
the driver, the store's single writer, saves one run per model exactly as the local job
does (:func:`mushcam.evaluate.predict.save_evaluation`): the same rows, the same skipped list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from mushcam.distributed.actors import EvaluateWorker
from mushcam.distributed.gradcam import chunks
from mushcam.distributed.pool import PoolReport, WorkerPool
from mushcam.distributed.progress import DriverProgress
from mushcam.distributed.runtime import RayOptions, placement, ray_session, require_ray
from mushcam.evaluate.predict import (
    BatchOutput,
    EvaluationPass,
    RunSummary,
    evaluate_each,
    prepare_evaluation,
    save_evaluation,
    utc_now,
)
from mushcam.evaluate.scan import TestImage, TestSet
from mushcam.manifest import Manifest
from mushcam.models import file_sha256
from mushcam.store import Predictions, Skipped


def merge_outputs(outputs: Sequence[BatchOutput], seconds: float) -> BatchOutput:
    """The batches' predictions end to end (in batch order), as one ``predict_images`` call would give them."""
    kept = [o.predictions for o in outputs if len(o.predictions)]
    if not kept:
        empty = Predictions((), (), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0),
                            np.zeros((0, 0), dtype=np.float32))
        return BatchOutput(empty, tuple(s for o in outputs for s in o.skipped), seconds)
    merged = Predictions(
        image_paths=tuple(p for k in kept for p in k.image_paths),
        image_sha256=tuple(h for k in kept for h in k.image_sha256),
        true_idx=np.concatenate([k.true_idx for k in kept]),
        pred_idx=np.concatenate([k.pred_idx for k in kept]),
        confidence=np.concatenate([k.confidence for k in kept]),
        probabilities=np.concatenate([k.probabilities for k in kept]),
    )
    return BatchOutput(merged, tuple(s for o in outputs for s in o.skipped), seconds)


class _Evaluation:
    """One model at a time on Ray: what :func:`mushcam.evaluate.predict.evaluate_each` calls per model."""

    def __init__(self, ray: ModuleType, manifest: Manifest, test_set: TestSet, out: Path, batch_size: int,
                 options: RayOptions, log: Callable[[str], None]) -> None:
        self.ray, self.manifest, self.test_set, self.out = ray, manifest, test_set, out
        self.batch_size, self.options, self.log = batch_size, options, log
        self.pools: list[PoolReport] = []

    def __call__(self, backbone: str, images: Sequence[TestImage],
                 unreadable: Sequence[Skipped]) -> tuple[RunSummary, tuple[Skipped, ...]]:
        started, digest = utc_now(), file_sha256(self.manifest.checkpoint_path(backbone))
        batches = chunks(images, self.batch_size)
        place = placement(self.ray, self.options, len(batches))
        pool = WorkerPool(self.ray, EvaluateWorker, (self.manifest, backbone), place, self.options, backbone, self.log)
        try:
            outputs: list[BatchOutput | None] = [None] * len(batches)
            progress = DriverProgress(backbone, len(images), self.log, self.options.progress_seconds)
            pool.map(((len(b), b) for b in batches), outputs.__setitem__, progress)
        finally:
            pool.close()
        self.pools.append(pool.report)
        # seconds: the predictions' own time, as the local run counts it (the workers' start is in the pool report)
        output = merge_outputs([o for o in outputs if o is not None], pool.report.seconds)
        job = EvaluationPass(backbone, self.manifest, self.test_set, self.out, self.batch_size, started, digest,
                             str(pool.infos[0].layer))
        return save_evaluation(job, output, unreadable, self.log)


def evaluate_models_on_ray(data_root: str | Path, manifest: Manifest, out: str | Path, options: RayOptions,
                           models: Sequence[str] | None = None, batch_size: int = 16,
                           log: Callable[[str], None] = print) -> tuple[list[RunSummary], list[PoolReport]]:
    """:func:`mushcam.evaluate.predict.evaluate_models` on Ray: the same runs in the store; and per model where
    the time went."""
    require_ray()  # before anything is checked or written: without Ray, say how to install it
    chosen, out, test_set = prepare_evaluation(data_root, manifest, out, list(models or []), batch_size, log)
    with ray_session(options) as ray:
        one = _Evaluation(ray, manifest, test_set, out, batch_size, options, log)
        summaries = evaluate_each(chosen, test_set, one)
    log(f"results written to {out}; print them with: python -m mushcam report {out}")
    return summaries, one.pools
