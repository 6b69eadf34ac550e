"""The memory-frugal batch Grad-CAM job: ``python -m mushcam gradcam``.

Section 4.4.4 of the thesis, as a command. What keeps memory low:

- one model at a time: a model is loaded lazily (only when a map is missing from the
  cache), used for every image, then deleted before the next model is loaded (garbage
  collection, ``malloc_trim`` on Linux, ``torch.cuda.empty_cache()`` on GPU);
- images are streamed: only a file list is held; a batch of ``--batch-size`` images is
  decoded, explained and written, then dropped;
- the engine differentiates only the model's head (:mod:`mushcam.cam`), so no
  autograd graph of the trunk and no parameter gradients exist at any time.

What keeps it fast and resumable: every map goes into the shared on-disk cache
(:mod:`mushcam.cache`) before its files are written, and every file is written atomically.
A re-run skips an image whose map is cached and whose files exist; an interrupted run
resumes where it stopped and ends with the same bytes as an uninterrupted one (outputs are
always drawn from the map as stored, so a fresh map and a cached one render identically).
``--force`` recomputes everything. ``--shard k/N`` takes the images whose relative path
hashes to k (of 1..N), so N independent jobs split a set without talking to each other.

Output (``--out DIR``)::

    DIR/<model>/run.json                          settings the files were made with
    DIR/<model>/<relpath>.<view>.png              overlay / heatmap / combined / original
    DIR/<model>/<relpath>.cam.npy                 the raw map (float32 h x w, as cached)
    DIR/<model>/predictions.csv                   one row per image (predictions.shard-k-of-N.csv)

``<model>`` is the model's manifest name (made file-safe when it is not: see
:func:`mushcam.manifest.file_safe_name`).

The package, one module per role: :mod:`~mushcam.pipeline.items` (the images and shards),
:mod:`~mushcam.pipeline.device` (``--device``, freeing memory), :mod:`~mushcam.pipeline.config`
(the run's settings and per-model report), :mod:`~mushcam.pipeline.writer` (output files and
``run.json``), :mod:`~mushcam.pipeline.job` (the model passes) and :mod:`~mushcam.pipeline.summary`
(the closing table). Everything public is re-exported here: ``from mushcam.pipeline import X`` works.
The command's options and their checks are in :mod:`mushcam.cli.pipeline`.
"""

from __future__ import annotations

from mushcam.pipeline.config import (
    DEFAULT_MAX_SIDE,
    DEFAULT_PNG_LEVEL,
    DEFAULT_VIEWS,
    MAX_MAX_SIDE,
    VIEW_NAMES,
    ModelReport,
    PipelineConfig,
)
from mushcam.pipeline.device import release_memory, resolve_device
from mushcam.pipeline.items import ImageItem, collect_images, parse_shard, select_shard, shard_of
from mushcam.pipeline.job import MAX_QUEUE, PROGRESS_SECONDS, check_targets, run_pipeline
from mushcam.pipeline.summary import format_summary
from mushcam.pipeline.writer import CSV_FIELDS, RUN_FORMAT, output_paths, write_atomic

__all__ = [
    "CSV_FIELDS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_PNG_LEVEL",
    "DEFAULT_VIEWS",
    "MAX_MAX_SIDE",
    "MAX_QUEUE",
    "PROGRESS_SECONDS",
    "RUN_FORMAT",
    "VIEW_NAMES",
    "ImageItem",
    "ModelReport",
    "PipelineConfig",
    "check_targets",
    "collect_images",
    "format_summary",
    "output_paths",
    "parse_shard",
    "release_memory",
    "resolve_device",
    "run_pipeline",
    "select_shard",
    "shard_of",
    "write_atomic",
]
