"""``faithfulness --ray``: every model x method scored by Ray workers, streamed into the store by the driver.

Per model, workers holding it score the local job's batches (``cam_batch_size`` photos in
order: :func:`mushcam.trust.run.score_batch`); per method the driver opens the run, appends
each batch's rows as it comes back (it is the store's single writer) and closes it, as the
local job does, so the store holds the same runs and rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mushcam.distributed.actors import FaithfulnessWorker
from mushcam.distributed.gradcam import chunks
from mushcam.distributed.pool import PoolReport, WorkerPool
from mushcam.distributed.progress import DriverProgress
from mushcam.distributed.runtime import RayOptions, placement, ray_session, require_ray
from mushcam.evaluate.scan import TestImage
from mushcam.manifest import Manifest
from mushcam.models import file_sha256
from mushcam.trust import store as trust_store
from mushcam.trust.faithfulness import FaithfulnessSettings
from mushcam.trust.run import ScoredBatch, TrustRunSummary, finish_pass, prepare_faithfulness, resume_pass


def _method_pass(pool: WorkerPool, out: str | Path, key: trust_store.RunKey, settings: FaithfulnessSettings,
                 batches: list[list[TestImage]], options: RayOptions, log: Callable[[str], None]) -> TrustRunSummary:
    images = [item for batch in batches for item in batch]
    frun_id, done_before = resume_pass(out, key, settings, images, log)
    started = time.perf_counter()
    read, failed = 0, []

    def append(_index: int, result: tuple[ScoredBatch, list[str]]) -> None:
        nonlocal read
        scored, logged = result
        for line in logged:
            log(line)
        read += scored.read
        failed.extend(scored.failed)
        if scored.rows:
            trust_store.append_faithfulness(out, frun_id, scored.rows)

    def work(batch: list[TestImage]) -> tuple[str, list[TestImage], dict[str, str]]:
        return key.method, batch, {i.relpath: done_before[i.relpath] for i in batch if i.relpath in done_before}

    progress = DriverProgress(f"{key.model} · {key.method}", len(images), log, options.progress_seconds)
    pool.map(((len(b), work(b)) for b in batches), append, progress)
    return finish_pass(out, key, frun_id, images, time.perf_counter() - started, read, failed, log)


def faithfulness_on_ray(
    data_root: str | Path,
    manifest: Manifest,
    out: str | Path,
    methods: Sequence[str],
    options: RayOptions,
    models: Sequence[str] | None = None,
    settings: FaithfulnessSettings = FaithfulnessSettings(),
    cam_batch_size: int = 8,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[TrustRunSummary], list[PoolReport]]:
    """:func:`mushcam.trust.run.faithfulness_over_folder` on Ray; and per model where the time went."""
    require_ray()  # before anything is checked or written: without Ray, say how to install it
    chosen_methods, chosen_models, root, images = prepare_faithfulness(data_root, manifest, methods, models,
                                                                       settings, limit, log, out)
    batches = chunks(images, cam_batch_size)
    summaries, pools = [], []
    with ray_session(options) as ray:
        for name in chosen_models:
            digest = file_sha256(manifest.checkpoint_path(name))
            pool = WorkerPool(ray, FaithfulnessWorker, (manifest, name, settings),
                              placement(ray, options, len(batches)), options, name, log)
            try:
                layer = str(pool.infos[0].layer)
                for method in chosen_methods:
                    key = trust_store.RunKey(name, digest, str(root), method, layer)
                    summaries.append(_method_pass(pool, out, key, settings, batches, options, log))
            finally:
                pool.close()
            pools.append(pool.report)
    log(f"results written to {out}; print them with: python -m mushcam report {out}")
    return summaries, pools
