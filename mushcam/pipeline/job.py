"""The job itself: each model in turn over every image -- the lazy model, batches, the cache,
the files and the CSV (:func:`run_pipeline`)."""

from __future__ import annotations

import csv
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from mushcam.cache import CachedCam, cam_key, entry_fits, roundtrip, store_explanation
from mushcam.cam import cam as compute_cam
from mushcam.catalog import cache_digest, cam_layer, entry_fingerprint, load_catalog_entry
from mushcam.data import ImageLoadError, decode_image, image_sha256, preprocess, read_bytes
from mushcam.exceptions import UsageError
from mushcam.explain import Explanation
from mushcam.finite import naming_model
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from mushcam.models.checkpoint import CheckpointError, what_is_there
from mushcam.pipeline.config import ModelReport, PipelineConfig
from mushcam.pipeline.device import release_memory
from mushcam.pipeline.items import ImageItem
from mushcam.pipeline.writer import (
    CSV_FIELDS,
    check_run_settings,
    csv_row,
    model_folder_name,
    output_paths,
    run_settings,
    write_image_files,
)
from mushcam.render import fit_within

MAX_QUEUE = 256  # done images (no pixels held) waiting for a batch to fill: bounds a mostly-cached run
# Drawing and PNG encoding (about 60 % of a CPU pass at 224 px) run in one worker thread, overlapped with
# the next image's decoding and map (PIL's encoder, cv2 and torch release the GIL); at most this many
# images wait to be drawn, so at most batch_size + MAX_DRAWING decoded images are held.
MAX_DRAWING = 2
PROGRESS_SECONDS = 10.0


@dataclass
class _Pending:
    item: ImageItem
    image_sha: str
    target: int | None
    entry: CachedCam | None  # the cached map, or None: to compute
    image: Image.Image | None = None  # decoded (display size) when it must be rendered
    tensor: torch.Tensor | None = None  # model input when the map must be computed
    render: bool = True


def _class_target(config: PipelineConfig, item: ImageItem) -> int | None:
    if config.target == "predicted":
        return None
    if config.target == "true":
        assert item.label is not None  # checked before the run
        return config.manifest.class_index(item.label)
    return int(config.target)


def check_targets(config: PipelineConfig, items: Sequence[ImageItem]) -> None:
    """Fail before any work when ``--target true`` cannot be honoured for some image."""
    if config.target != "true":
        return
    unlabelled = [item.relpath for item in items if item.label is None]
    if unlabelled:
        raise UsageError(
            f"--target true needs class folders (root/<Class>/image.jpg); {len(unlabelled)} images have none "
            f"(e.g. {unlabelled[0]})"
        )
    known = {name.lower() for name in config.manifest.class_names}
    unknown = sorted({item.label for item in items if item.label is not None and item.label.lower() not in known})
    if unknown:
        raise UsageError(
            f"--target true: class folders {', '.join(unknown)} are not classes of the manifest "
            f"({', '.join(config.manifest.class_names)})"
        )


def start_measuring(report: ModelReport, device: torch.device) -> None:
    """Reset the peaks (resident memory, CUDA) so that the report's are this model's own."""
    report.peak_is_per_model = reset_peak_rss()
    report.rss_start_bytes = current_rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def stop_measuring(report: ModelReport, device: torch.device) -> None:
    """The pass's peaks into ``report``: peak = max(loading, work), the work's own kept beside it."""
    report.peak_rss_bytes = peak_rss_bytes()
    if report.load_peak_rss_bytes is not None and report.peak_rss_bytes is not None:
        report.work_peak_rss_bytes = report.peak_rss_bytes
        report.peak_rss_bytes = max(report.peak_rss_bytes, report.load_peak_rss_bytes)
    if device.type == "cuda":
        report.cuda_max_allocated_bytes = int(torch.cuda.max_memory_allocated(device))


def prepare_item(config: PipelineConfig, out_dir: Path, cache_sha: str, layer: str | None, item: ImageItem,
                 failed: list[str]) -> _Pending | None:
    """Read and hash one image; look its map up; decide what remains to do (None: unreadable, noted in ``failed``)."""
    manifest = config.manifest
    try:
        data = read_bytes(item.path)
    except ImageLoadError as exc:
        failed.append(f"{item.relpath}: {exc}")
        return None
    image_sha = image_sha256(data)
    target = _class_target(config, item)
    key = cam_key(cache_sha, image_sha, layer, target, manifest.input, config.method)
    entry = None if config.force else config.cache.get_entry(key)
    if entry is not None and not entry_fits(entry, manifest.input, manifest.num_classes):
        entry = None  # recorded without what the CSV needs: recompute
    pending = _Pending(item, image_sha, target, entry)
    if entry is not None:
        paths = output_paths(out_dir, item.relpath, config.views)
        pending.render = config.force or not all(path.is_file() for path in paths.values())
        if not pending.render:
            return pending
    try:
        image = decode_image(data)
    except ImageLoadError as exc:
        failed.append(f"{item.relpath}: {exc}")
        return None
    if entry is None:
        pending.tensor = preprocess(image, manifest.input)
    pending.image = fit_within(image, config.max_side)
    return pending


def write_csv_atomically(out_dir: Path, shard: tuple[int, int] | None, fill: Callable[[csv.writer], None]) -> None:
    """``predictions.csv`` (``predictions.shard-k-of-N.csv``) from ``fill(writer)``, via a temp file and a rename:
    an interrupted pass leaves the previous CSV, never a partial one."""
    csv_name = "predictions.csv" if shard is None else "predictions.shard-{}-of-{}.csv".format(*shard)
    csv_tmp = out_dir / f".{csv_name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(csv_tmp, "w", newline="", encoding="utf-8") as handle:
            fill(csv.writer(handle, lineterminator="\n"))
        os.replace(csv_tmp, out_dir / csv_name)
    finally:
        csv_tmp.unlink(missing_ok=True)


class ModelPass:
    """One backbone over all images: lazy model, batches, cache, files, CSV."""

    def __init__(self, config: PipelineConfig, backbone: str, items: Sequence[ImageItem],
                 progress: Callable[[str], None]) -> None:
        self.config = config
        self.backbone = backbone
        self.items = items
        self.progress = progress
        self.manifest = config.manifest
        self.layer = cam_layer(self.manifest, backbone)  # None: found when the model is loaded
        self.checkpoint = self.manifest.checkpoint_path(backbone)
        self.out_dir = config.out / model_folder_name(backbone, config.method)
        self.model: torch.nn.Module | None = None
        self.report = ModelReport(backbone, label=self.manifest.display_name(backbone),
                                  arch=self.manifest.models[backbone].arch)
        self.checkpoint_sha = ""  # the weights file's SHA-256 (run.json)
        self.cache_sha = ""  # what the CAM cache keys this model's maps by (catalog.cache_digest)
        self.cache_warned = False
        self.drawer: ThreadPoolExecutor | None = None  # the drawing thread, during run()
        self.drawing: deque[Future[None]] = deque()  # files being drawn, oldest first

    # -- the pass
    def prepare(self) -> None:
        """The weights' digest, the cache's key for them and the layer (loading the model only if no entry names it)."""
        self.checkpoint_sha = self.config.cache.checkpoint_sha256(self.checkpoint)  # once per run, memoised
        self.cache_sha = cache_digest(self.checkpoint_sha, entry_fingerprint(self.manifest, self.backbone))
        if self.layer is None:  # the entry names no layer: the model says which (loaded now, not lazily)
            self._model()

    def run(self, process: Callable[[csv.writer], None] | None = None) -> ModelReport:
        """The whole pass: settings checked, the CSV written by ``process(writer)`` (default: computed here by
        :meth:`process_items`; :mod:`mushcam.distributed` gathers the rows from workers), the report."""
        device = self.config.device
        start_measuring(self.report, device)
        started = time.perf_counter()
        self.prepare()
        check_run_settings(self.out_dir, run_settings(self.config, self.backbone, self.checkpoint_sha, self.layer),
                            self.config.force)
        self.drawer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mushcam-draw")
        try:
            write_csv_atomically(self.out_dir, self.config.shard, process or self._process_and_draw)
        finally:
            for future in self.drawing:  # an error or Ctrl-C: files not started are not drawn
                future.cancel()
            self.drawer.shutdown(wait=True)  # a file being written is finished (written atomically)
            self.drawer, self.drawing = None, deque()
            if self.model is not None:  # a full collection costs ~0.4 s here: only when there is a model to free
                self.model = None
                release_memory(device)
        self.report.seconds = time.perf_counter() - started
        stop_measuring(self.report, device)
        return self.report

    def _process_and_draw(self, writer: csv.writer) -> None:
        """Every item computed here, and every file drawn before the CSV is renamed into place."""
        self._process_items(writer)
        self._wait_drawing(0)

    def _process_items(self, writer: csv.writer) -> None:
        writer.writerow(CSV_FIELDS)
        self.process_items(self.items, writer, report_progress=True)

    def process_items(self, items: Sequence[ImageItem], writer: csv.writer, report_progress: bool = False) -> None:
        """``items`` in order into batches of at most ``batch_size`` decoded images; each one's CSV row to ``writer``.

        Called once for the whole list by a local run, and once per batch of photos by a
        :mod:`mushcam.distributed` worker (``writer`` then gathers the rows for the driver).
        """
        last_progress = time.monotonic()
        queue: list[_Pending] = []
        # photos that needed work: decoded (held in memory: at most one batch, to compute or only to draw) or
        # unreadable. An unreadable one takes its place too, so that a run's batches are the same consecutive
        # photos however the list is cut into batches of batch_size (mushcam.distributed gives the same maps)
        filled = 0
        for done, item in enumerate(items, start=1):
            pending = prepare_item(self.config, self.out_dir, self.cache_sha, self.layer, item, self.report.failed)
            if pending is not None:
                queue.append(pending)
            filled += pending is None or pending.image is not None
            if filled >= self.config.batch_size or len(queue) >= MAX_QUEUE:
                self._flush(queue, writer)
                queue, filled = [], 0
            if report_progress and time.monotonic() - last_progress >= PROGRESS_SECONDS:
                self.progress(f"{self.backbone}: {done}/{len(items)} images")
                last_progress = time.monotonic()
        self._flush(queue, writer)

    def _flush(self, queue: list[_Pending], writer: csv.writer) -> None:
        """Compute the queue's missing maps in one batch, then write every image's files in order."""
        missing = [p for p in queue if p.entry is None]
        computed: dict[int, tuple[torch.Tensor, torch.Tensor, int, bool]] = {}
        if missing:
            model = self._model()
            inputs = torch.stack([p.tensor for p in missing])
            targets = None if self.config.target == "predicted" else [p.target for p in missing]
            with naming_model(self.backbone):
                result = compute_cam(model, inputs, self.layer, targets, method=self.config.method)
            cams = result.cams.detach().cpu()
            probabilities = result.probabilities.detach().cpu()
            classes = result.class_idx.detach().cpu()
            predicted = result.predicted.detach().cpu()
            for pending, cam, probs, cls, top in zip(missing, cams, probabilities, classes, predicted, strict=True):
                computed[id(pending)] = (cam, probs, int(cls), int(cls) == int(top))
            del result, inputs
        for pending in queue:
            self._finish(pending, computed.get(id(pending)), writer)
            pending.image = None
            pending.tensor = None

    def _finish(self, pending: _Pending, fresh: tuple[torch.Tensor, torch.Tensor, int, bool] | None,
                writer: csv.writer) -> None:
        report = self.report
        item = pending.item
        if fresh is not None:
            cam, probabilities, class_idx, is_predicted = fresh
            try:
                stored = roundtrip(cam)
            except ValueError as exc:  # a map with NaN/inf: the model's output is broken for this image
                report.failed.append(f"{item.relpath}: {exc}")
                return
            self._store(cam, probabilities, class_idx, is_predicted, pending.image_sha)
            report.computed += 1
        else:
            assert pending.entry is not None
            stored, probabilities, class_idx = pending.entry.cam, pending.entry.probabilities, pending.entry.class_idx
            assert probabilities is not None and class_idx is not None
            report.cached += 1
            if not pending.render:
                report.skipped += 1
        report.images += 1
        if pending.render:
            assert pending.image is not None
            explanation = Explanation(stored, probabilities, class_idx, self.layer, self.config.method)
            self._draw(item, pending.image, explanation)
        writer.writerow(csv_row(self.manifest.class_names, item, stored, probabilities, class_idx))

    def _store(self, cam: torch.Tensor, probabilities: torch.Tensor, class_idx: int, is_predicted: bool,
               image_sha: str) -> None:
        try:
            store_explanation(self.config.cache, cam, probabilities, class_idx, is_predicted, self.cache_sha, image_sha,
                              self.layer, self.manifest.input, self.config.method)
        except OSError as exc:  # a full or read-only cache must not stop the job; the files are still written
            if not self.cache_warned:
                self.progress(f"warning: cannot write the cache at {self.config.cache.root} ({exc}); "
                              "continuing without caching")
                self.cache_warned = True

    def _draw(self, item: ImageItem, image: Image.Image, explanation: Explanation) -> None:
        """Hand the image's files to the drawing thread; wait while ``MAX_DRAWING`` are already waiting."""
        if self.drawer is None:  # outside run(): draw here
            self._write_files(item, image, explanation)
            return
        self._wait_drawing(MAX_DRAWING - 1)
        self.drawing.append(self.drawer.submit(self._write_files, item, image, explanation))

    def _wait_drawing(self, at_most: int) -> None:
        """Wait for the oldest drawings until at most ``at_most`` remain; a drawing's error is raised here."""
        while len(self.drawing) > at_most:
            self.drawing[0].result()
            self.drawing.popleft()

    def _write_files(self, item: ImageItem, image: Image.Image, explanation: Explanation) -> None:
        write_image_files(self.config, self.out_dir, self.report.label, item.relpath, image, explanation)

    def _model(self) -> torch.nn.Module:
        """The backbone, loaded on first need (a fully cached pass never loads it)."""
        if self.model is None:
            loaded = load_catalog_entry(self.manifest, self.backbone)
            model = loaded.model
            self.layer = cam_layer(self.manifest, self.backbone, loaded)
            for parameter in model.parameters():
                parameter.requires_grad_(False)  # no parameter gradient can ever be kept
            self.model = model.to(self.config.device)
            self.report.model_loaded = True
            if self.report.peak_is_per_model:  # split the pass's peak: loading vs. the work per image
                self.report.load_peak_rss_bytes = peak_rss_bytes()
                self.report.rss_after_load_bytes = current_rss_bytes()
                reset_peak_rss()
        return self.model


_ModelPass = ModelPass  # the name tests patch (and older callers used)


def check_job(config: PipelineConfig, items: Sequence[ImageItem]) -> None:
    """Before any work: the targets, every model in the manifest with its checkpoint, the output folders made."""
    check_targets(config, items)
    for backbone in config.backbones:
        if backbone not in config.manifest.models:
            raise UsageError(f"{backbone} is not in the manifest (it lists: {', '.join(config.manifest.models)})")
        path = config.manifest.checkpoint_path(backbone)
        if not path.is_file():  # a device, pipe or broken link is said as such, not "not found"
            reason = what_is_there(path)
            if reason:
                raise CheckpointError(reason)
            raise FileNotFoundError(f"checkpoint for {backbone} not found: {path}")
    config.out.mkdir(parents=True, exist_ok=True)
    for backbone in config.backbones:
        (config.out / model_folder_name(backbone, config.method)).mkdir(parents=True, exist_ok=True)


def run_pipeline(
    config: PipelineConfig,
    items: Sequence[ImageItem],
    progress: Callable[[str], None] | None = None,
) -> list[ModelReport]:
    """Grad-CAM of ``items`` (already sharded) for each backbone in turn; one report per model."""
    say = progress or (lambda message: None)
    check_job(config, items)
    reports = []
    for backbone in config.backbones:
        reports.append(ModelPass(config, backbone, items, say).run())
    return reports
