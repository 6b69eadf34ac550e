"""The workers: one actor per model and device, holding that model loaded, fed photos a batch at a time.

Each class is a plain Python class (so it can be built and tested without Ray);
:class:`mushcam.distributed.pool.WorkerPool` turns it into a Ray actor. Every batch runs
the same function as the local job does for one batch (``ModelPass.process_items``,
``predict_images``, ``score_batch``), so a distributed run gives the local run's numbers.
A worker holds at most one batch of decoded photos; what it returns is small (CSV rows,
probabilities, scores), never pixels. Cache entries and output files are written by the
worker itself, atomically (temp file, then rename), into the shared folders.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import torch

from mushcam.catalog import load_catalog_entry
from mushcam.evaluate.predict import BatchOutput, predict_images
from mushcam.evaluate.scan import TestImage
from mushcam.exceptions import MushcamError
from mushcam.finite import naming_model
from mushcam.manifest import Manifest
from mushcam.memory import current_rss_bytes, peak_rss_bytes
from mushcam.pipeline.config import ModelReport, PipelineConfig
from mushcam.pipeline.items import ImageItem
from mushcam.pipeline.job import ModelPass
from mushcam.trust.faithfulness import FaithfulnessSettings
from mushcam.trust.run import ScoredBatch, score_batch


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is: its process (which changes when Ray restarts it), node, device, layer, loading cost."""

    pid: int
    node: str
    device: str
    layer: str | None
    load_seconds: float
    rss_bytes: int | None


@dataclass(frozen=True)
class BatchStats:
    """What one batch cost its worker: the process that ran it, photos, seconds, the process's peak memory."""

    pid: int
    photos: int
    seconds: float
    peak_rss_bytes: int | None


class ModelWorker:
    """What every worker shares: its identity and a stopwatch for each batch."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.layer: str | None = None
        self.load_seconds = 0.0
        self.failure: Exception | None = None

    def setup(self, load: Callable[[], None]) -> None:
        """Run the worker's loading; an input error is kept and raised by :meth:`info`, a task, so the driver gets
        it as itself (an error raised while Ray builds an actor reaches the driver only as text)."""
        try:
            load()
        except (MushcamError, OSError) as exc:
            self.failure = exc

    def info(self) -> WorkerInfo:
        """Who this worker is (called once when the pool starts); a loading error is raised here."""
        if self.failure is not None:
            raise self.failure
        return WorkerInfo(os.getpid(), socket.gethostname(), str(self.device), self.layer, self.load_seconds,
                          current_rss_bytes())

    def pid(self) -> int:
        return os.getpid()

    def stats(self, photos: int, started: float) -> BatchStats:
        return BatchStats(os.getpid(), photos, time.perf_counter() - started, peak_rss_bytes())

    def load(self, manifest: Manifest, name: str) -> None:
        """The model, loaded once for this worker and moved to its device, as ``self.loaded`` (``.model``,
        ``.layer``)."""
        started = time.perf_counter()
        loaded = load_catalog_entry(manifest, name)
        self.loaded = SimpleNamespace(model=loaded.model.to(self.device), layer=loaded.layer)
        self.layer = loaded.layer
        self.load_seconds = time.perf_counter() - started


class _Rows:
    """A csv.writer stand-in that keeps the rows, for the driver to write in order."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def writerow(self, row: list[str]) -> None:
        self.rows.append(list(row))


@dataclass
class GradcamBatch:
    """One batch of the ``gradcam`` job: its CSV rows in order and what the pass's report counts."""

    rows: list[list[str]]
    images: int = 0
    computed: int = 0
    cached: int = 0
    skipped: int = 0
    model_loaded: bool = False
    failed: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class GradcamWorker(ModelWorker):
    """``gradcam`` for one model: the local job's pass, fed one batch of photos at a time.

    The model is loaded on first need (a batch whose maps are all cached never loads it) and
    kept for every later batch; maps go into the shared cache and files into ``OUT/<model>/``.
    """

    def __init__(self, config: PipelineConfig, backbone: str, device: str) -> None:
        super().__init__(device)
        self.messages: list[str] = []
        self.job = ModelPass(replace(config, device=self.device), backbone, (), self.messages.append)
        self.setup(self._prepare)

    def _prepare(self) -> None:
        started = time.perf_counter()
        self.job.prepare()  # digests; the model is loaded here only when the manifest names no layer
        self.layer = self.job.layer
        self.load_seconds = time.perf_counter() - started

    def run_batch(self, items: list[ImageItem]) -> tuple[GradcamBatch, BatchStats]:
        started = time.perf_counter()
        self.job.report = ModelReport(self.job.backbone, label=self.job.report.label, arch=self.job.report.arch)
        rows = _Rows()
        self.job.process_items(items, rows)  # type: ignore[arg-type]
        r = self.job.report
        batch = GradcamBatch(rows.rows, r.images, r.computed, r.cached, r.skipped, self.job.model is not None,
                             list(r.failed), list(self.messages))
        self.messages.clear()
        return batch, self.stats(len(items), started)


class EvaluateWorker(ModelWorker):
    """``evaluate`` for one model: softmax probabilities of a batch of photos (``predict_images``)."""

    def __init__(self, manifest: Manifest, name: str, device: str) -> None:
        super().__init__(device)
        self.name, self.spec = name, manifest.input
        self.setup(lambda: self.load(manifest, name))

    def run_batch(self, items: list[TestImage]) -> tuple[BatchOutput, BatchStats]:
        started = time.perf_counter()
        with naming_model(self.name):
            output = predict_images(self.loaded.model, items, self.spec, max(1, len(items)))
        return output, self.stats(len(items), started)


class FaithfulnessWorker(ModelWorker):
    """``faithfulness`` for one model: a batch of photos' maps by one method, each scored (``score_batch``)."""

    def __init__(self, manifest: Manifest, name: str, settings: FaithfulnessSettings, device: str) -> None:
        super().__init__(device)
        self.manifest, self.settings = manifest, settings
        self.setup(lambda: self.load(manifest, name))

    def run_batch(self, work: tuple[str, list[TestImage], dict[str, str]]) -> tuple[tuple[ScoredBatch, list[str]],
                                                                                    BatchStats]:
        started = time.perf_counter()
        method, items, done_before = work
        logged: list[str] = []
        scored = score_batch(self.loaded, items, self.manifest, method, self.settings, logged.append, done_before)
        return (scored, logged), self.stats(len(items), started)
