"""The memory-frugal batch Grad-CAM job: ``python -m mushcam gradcam``.

Section 4.4.4 of the thesis, as a command. What keeps memory low:

- one model at a time: a model is loaded lazily (only when a map is missing from the
  cache), used for every image, then deleted before the next model is loaded (garbage
  collection, ``malloc_trim`` on Linux, ``torch.cuda.empty_cache()`` on GPU);
- images are streamed: only a file list is held; a batch of ``--batch-size`` images is
  decoded, explained and written, then dropped;
- the engine differentiates only the model's head (:mod:`mushcam.gradcam`), so no
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
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import hashlib
import io
import json
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mushcam.cache import (
    DEFAULT_MAX_BYTES,
    CachedCam,
    CamCache,
    cam_key,
    default_cache_dir,
    entry_fits,
    roundtrip,
    store_explanation,
)
from mushcam.data import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    decode_image,
    image_sha256,
    preprocess,
    is_utf8_name,
    printable,
    read_bytes,
    scan_images,
)
from mushcam.cli import UsageError, resolve_manifest
from mushcam.files import write_bytes_atomic, write_json_atomic
from mushcam.finite import naming_model
from mushcam.explain import Explanation, render_explanation
from mushcam.manifest import Manifest
from mushcam.methods import DEFAULT_METHOD, METHOD_LABELS, METHODS
from mushcam.methods import cam as compute_cam
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from mushcam.catalog import cache_digest, cam_layer, entry_fingerprint, load_catalog_entry
from mushcam.manifest import file_safe_name
from mushcam.render import (
    COLORMAPS,
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    fit_within,
    to_png,
)

VIEW_NAMES: tuple[str, ...] = ("original", "heatmap", "overlay", "combined")
DEFAULT_VIEWS: tuple[str, ...] = ("overlay", "heatmap", "combined")
DEFAULT_MAX_SIDE = 1024  # views are rendered at most this large (as in the app)
MAX_MAX_SIDE = 8192  # the largest --max-side: a combined figure is then at most ~25,000 px wide
DEFAULT_PNG_LEVEL = 1  # zlib level: PNG encoding is the costliest step after the model (see README)
MAX_QUEUE = 256  # done images (no pixels held) waiting for a batch to fill: bounds a mostly-cached run
PROGRESS_SECONDS = 10.0
RUN_FORMAT = 1
CSV_FIELDS = ("image", "true_class", "predicted", "confidence", "explained_class", "explained_probability", "cam_max")


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ImageItem:
    """One input image: its file, its path relative to the data root, its class folder."""

    path: Path
    relpath: str
    label: str | None  # the class folder's name (ImageFolder layout), None for a flat folder or a file


def collect_images(
    sources: Sequence[str | os.PathLike[str]],
    on_skip: Callable[[str, str], None] | None = None,
) -> list[ImageItem]:
    """The images named by ``--data``: folders and/or files, sorted by relative path.

    A folder contributes the images directly inside it (no class) and those under each
    sub-folder ``<Class>/`` (the class is the folder's name: the ImageFolder layout).
    Relative paths are taken from the deepest folder common to all sources, so the same
    command line gives the same relative paths (and shards) on every machine. Symlinked
    image files are accepted (their relative path is where the link lies, not where it
    points). Files that cannot be used (a name that is not valid UTF-8, a broken link) are
    reported through ``on_skip(path, reason)`` and left out.
    """
    if not sources:
        raise UsageError("--data names no folder or file")
    skip = on_skip or (lambda path, reason: None)
    roots: list[Path] = []
    found: list[tuple[Path, Path, str | None]] = []  # (file to read, where it lies, class)
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            root = path.resolve()
            roots.append(root)
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS and not child.name.startswith("."):
                    if is_utf8_name(child.name):
                        found.append((child.resolve(), root / child.name, None))
                    else:
                        skip(printable(child.name), "the file name is not valid UTF-8; rename the file")
            scan = scan_images(path)
            for relpath, reason in scan.skipped:
                skip(relpath, reason)
            found.extend((item.path, root / item.relpath, item.label) for item in scan.images)
        elif path.is_file():
            if not is_utf8_name(path):
                raise UsageError(f"--data: the file name {printable(path)} is not valid UTF-8; rename the file")
            where = path.parent.resolve() / path.name
            roots.append(where.parent)
            found.append((path.resolve(), where, None))
        else:
            raise UsageError(f"--data: no such file or folder: {printable(path)}")
    base = Path(os.path.commonpath([str(r) for r in roots]))
    items: dict[str, ImageItem] = {}
    for path, where, label in found:
        relpath = where.relative_to(base).as_posix()
        items.setdefault(relpath, ImageItem(path, relpath, label))
    if not items:
        raise UsageError(
            f"no images found in {', '.join(printable(s) for s in sources)} "
            f"(looked for {', '.join(IMAGE_EXTENSIONS)} directly inside and in class folders)"
        )
    return [items[key] for key in sorted(items)]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"k/N"`` -> (k, N) with 1 <= k <= N; None for no sharding."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--shard must look like k/N (for example 2/4); got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text}: k must be between 1 and N (shards are numbered 1..N)")
    return k, n


def shard_of(relpath: str, n: int) -> int:
    """The shard (1..n) an image belongs to: a hash of its relative path, stable everywhere."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select_shard(items: Sequence[ImageItem], shard: tuple[int, int] | None) -> list[ImageItem]:
    """The items of shard k of N (all items without sharding)."""
    if shard is None:
        return list(items)
    k, n = shard
    return [item for item in items if shard_of(item.relpath, n) == k]


# ----------------------------------------------------------------------------- memory


def release_memory(device: torch.device) -> None:
    """Return freed memory: garbage-collect, trim the C heap, empty the CUDA cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available here (torch.cuda.is_available() is False)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
        return device
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")


# ----------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs besides the image list."""

    manifest: Manifest
    out: Path
    cache: CamCache
    backbones: tuple[str, ...]
    target: str | int = "predicted"  # "predicted", "true" or a class index
    batch_size: int = 1
    views: tuple[str, ...] = DEFAULT_VIEWS
    alpha: float = DEFAULT_ALPHA
    colormap: str = DEFAULT_COLORMAP
    device: torch.device = torch.device("cpu")
    force: bool = False
    max_side: int = DEFAULT_MAX_SIDE
    png_level: int = DEFAULT_PNG_LEVEL
    shard: tuple[int, int] | None = None
    method: str = DEFAULT_METHOD  # a mushcam.methods.METHODS name


@dataclass
class ModelReport:
    """What one model's pass did and cost."""

    backbone: str  # the model's manifest name
    images: int = 0
    computed: int = 0  # maps computed by the model
    cached: int = 0  # maps served by the cache
    skipped: int = 0  # images whose map and files were all there already
    failed: list[str] = field(default_factory=list)  # "relpath: reason"
    seconds: float = 0.0
    model_loaded: bool = False
    rss_start_bytes: int | None = None
    peak_rss_bytes: int | None = None  # VmHWM during this model's pass (process-wide if it could not be reset)
    peak_is_per_model: bool = False
    rss_after_load_bytes: int | None = None  # resident memory with the model loaded
    load_peak_rss_bytes: int | None = None  # high-water mark up to the end of loading (weights read + model built)
    work_peak_rss_bytes: int | None = None  # high-water mark after loading: images, Grad-CAM, rendering
    cuda_max_allocated_bytes: int | None = None
    label: str = ""  # the model's display name
    arch: str = ""

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    item: ImageItem
    image_sha: str
    target: int | None
    entry: CachedCam | None  # the cached map, or None: to compute
    image: Image.Image | None = None  # decoded (display size) when it must be rendered
    tensor: torch.Tensor | None = None  # model input when the map must be computed
    render: bool = True


def output_paths(out_dir: Path, relpath: str, views: Sequence[str]) -> dict[str, Path]:
    """The files one image gets in a backbone's folder: one PNG per view and the raw map."""
    paths = {view: out_dir / f"{relpath}.{view}.png" for view in views}
    paths["cam"] = out_dir / f"{relpath}.cam.npy"
    return paths


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    write_bytes_atomic(path, data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _run_settings(config: PipelineConfig, backbone: str, checkpoint_sha: str, layer: str) -> dict[str, object]:
    spec = config.manifest.input
    return {
        "format": RUN_FORMAT,
        "backbone": backbone,  # the model's manifest name
        "checkpoint_sha256": checkpoint_sha,
        "layer": layer,
        "classes": config.manifest.class_names,
        "input": {"size": spec.size, "resize": spec.resize, "mean": list(spec.mean), "std": list(spec.std)},
        "target": config.target,
        "views": list(config.views),
        "alpha": config.alpha,
        "colormap": config.colormap,
        "max_side": config.max_side,
        "png_level": config.png_level,
        # the architecture, where the name does not say it (runs of older versions had none)
        **({"arch": arch} if (arch := config.manifest.models[backbone].arch) != backbone else {}),
        # head activation / user code / kwargs, where the entry sets them (catalog.entry_fingerprint)
        **({"entry": fingerprint} if (fingerprint := entry_fingerprint(config.manifest, backbone)) else {}),
        # Grad-CAM runs keep the settings (and folders) of runs made before other methods existed.
        **({} if config.method == DEFAULT_METHOD else {"method": config.method}),
    }


def _check_run_settings(out_dir: Path, settings: dict[str, object], force: bool) -> None:
    """Refuse to mix files made with other settings into one folder (unless --force)."""
    path = out_dir / "run.json"
    if path.is_file() and not force:
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != settings:
            differing = (
                sorted(k for k in settings if previous.get(k) != settings[k]) if isinstance(previous, dict) else ["run.json"]
            )
            raise UsageError(
                f"{out_dir} holds results made with other settings ({', '.join(differing)} differ); "
                "choose another --out, or pass --force to recompute and overwrite them"
            )
    write_atomic(path, (json.dumps(settings, indent=2) + "\n").encode("utf-8"))


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


class _ModelPass:
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
        # Grad-CAM keeps the folder layout of earlier runs; another method gets its own folder.
        folder = file_safe_name(backbone)
        self.out_dir = config.out / (folder if config.method == DEFAULT_METHOD else f"{folder}-{config.method}")
        self.model: torch.nn.Module | None = None
        self.report = ModelReport(backbone, label=self.manifest.display_name(backbone),
                                  arch=self.manifest.models[backbone].arch)
        self.checkpoint_sha = ""  # the weights file's SHA-256 (run.json)
        self.cache_sha = ""  # what the CAM cache keys this model's maps by (catalog.cache_digest)
        self.cache_warned = False

    # -- the pass
    def run(self) -> ModelReport:
        device = self.config.device
        report = self.report
        report.peak_is_per_model = reset_peak_rss()
        report.rss_start_bytes = current_rss_bytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        self.checkpoint_sha = self.config.cache.checkpoint_sha256(self.checkpoint)  # once per run, memoised
        self.cache_sha = cache_digest(self.checkpoint_sha, entry_fingerprint(self.manifest, self.backbone))
        if self.layer is None:  # the entry names no layer: the model says which (loaded now, not lazily)
            self._model()
        _check_run_settings(self.out_dir, _run_settings(self.config, self.backbone, self.checkpoint_sha, self.layer),
                            self.config.force)
        csv_name = "predictions.csv" if self.config.shard is None else "predictions.shard-{}-of-{}.csv".format(*self.config.shard)
        csv_tmp = self.out_dir / f".{csv_name}.{uuid.uuid4().hex}.tmp"
        last_progress = time.monotonic()
        try:
            with open(csv_tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(CSV_FIELDS)
                queue: list[_Pending] = []
                decoded = 0  # images held in memory: at most one batch, whether to compute or only to draw
                for done, item in enumerate(self.items, start=1):
                    pending = self._prepare(item)
                    if pending is not None:
                        queue.append(pending)
                        decoded += pending.image is not None
                    if decoded >= self.config.batch_size or len(queue) >= MAX_QUEUE:
                        self._flush(queue, writer)
                        queue, decoded = [], 0
                    if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                        self.progress(f"{self.backbone}: {done}/{len(self.items)} images")
                        last_progress = time.monotonic()
                self._flush(queue, writer)
            os.replace(csv_tmp, self.out_dir / csv_name)
        finally:
            csv_tmp.unlink(missing_ok=True)
            if self.model is not None:  # a full collection costs ~0.4 s here: only when there is a model to free
                self.model = None
                release_memory(device)
        report.seconds = time.perf_counter() - started
        report.peak_rss_bytes = peak_rss_bytes()
        if report.load_peak_rss_bytes is not None and report.peak_rss_bytes is not None:
            report.work_peak_rss_bytes = report.peak_rss_bytes
            report.peak_rss_bytes = max(report.peak_rss_bytes, report.load_peak_rss_bytes)
        if device.type == "cuda":
            report.cuda_max_allocated_bytes = int(torch.cuda.max_memory_allocated(device))
        return report

    def _prepare(self, item: ImageItem) -> _Pending | None:
        """Read and hash one image; look its map up; decide what remains to do."""
        config = self.config
        try:
            data = read_bytes(item.path)
        except ImageLoadError as exc:
            self.report.failed.append(f"{item.relpath}: {exc}")
            return None
        image_sha = image_sha256(data)
        target = _class_target(config, item)
        key = cam_key(self.cache_sha, image_sha, self.layer, target, self.manifest.input, config.method)
        entry = None if config.force else config.cache.get_entry(key)
        if entry is not None and not entry_fits(entry, self.manifest.input, self.manifest.num_classes):
            entry = None  # recorded without what the CSV needs: recompute
        pending = _Pending(item, image_sha, target, entry)
        if entry is not None:
            paths = output_paths(self.out_dir, item.relpath, config.views)
            pending.render = config.force or not all(path.is_file() for path in paths.values())
            if not pending.render:
                return pending
        try:
            image = decode_image(data)
        except ImageLoadError as exc:
            self.report.failed.append(f"{item.relpath}: {exc}")
            return None
        if entry is None:
            pending.tensor = preprocess(image, self.manifest.input)
        pending.image = fit_within(image, config.max_side)
        return pending

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
            self._write_files(item, pending.image, explanation)
        names = self.manifest.class_names
        predicted = int(probabilities.argmax())
        writer.writerow([
            item.relpath,
            item.label or "",
            names[predicted],
            f"{float(probabilities[predicted]):.6f}",
            names[class_idx],
            f"{float(probabilities[class_idx]):.6f}",
            repr(float(stored.max())) if stored.numel() else "0.0",
        ])

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

    def _write_files(self, item: ImageItem, image: Image.Image, explanation: Explanation) -> None:
        views = render_explanation(image, explanation, self.manifest, self.report.label,
                                   self.config.alpha, self.config.colormap, max_side=self.config.max_side)
        pixels = {name.lower(): array for name, array in views.as_dict().items()}
        paths = output_paths(self.out_dir, item.relpath, self.config.views)
        for view in self.config.views:
            write_atomic(paths[view], to_png(pixels[view], self.config.png_level))
        write_atomic(paths["cam"], _npy_bytes(explanation.cam.numpy().astype(np.float32)))

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


def run_pipeline(
    config: PipelineConfig,
    items: Sequence[ImageItem],
    progress: Callable[[str], None] | None = None,
) -> list[ModelReport]:
    """Grad-CAM of ``items`` (already sharded) for each backbone in turn; one report per model."""
    say = progress or (lambda message: None)
    check_targets(config, items)
    for backbone in config.backbones:
        if backbone not in config.manifest.models:
            raise UsageError(f"{backbone} is not in the manifest (it lists: {', '.join(config.manifest.models)})")
        path = config.manifest.checkpoint_path(backbone)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint for {backbone} not found: {path}")
    config.out.mkdir(parents=True, exist_ok=True)
    reports = []
    for backbone in config.backbones:
        (config.out / file_safe_name(backbone)).mkdir(parents=True, exist_ok=True)
        reports.append(_ModelPass(config, backbone, items, say).run())
    return reports


# ----------------------------------------------------------------------------- command line


def _split_list(values: Sequence[str] | None) -> list[str]:
    if not values:
        return []
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def format_summary(reports: Sequence[ModelReport], total_seconds: float, device: torch.device,
                   method: str = DEFAULT_METHOD) -> str:
    """The table printed at the end of a run."""
    lines = [f"{METHOD_LABELS[method]} on {device}: {total_seconds:.1f} s in all"]
    header = f"{'model':<20} {'images':>6} {'computed':>8} {'cached':>6} {'seconds':>8} {'img/s':>7} {'peak RSS':>9} {'above start':>11}"
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


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gradcam",
        help="batch Grad-CAM: many images, several models, one model at a time, cached and resumable",
        description="Grad-CAM of many images for several models, one model at a time, with an on-disk "
        "cache of the raw maps shared with the app. A re-run skips what is done; --force recomputes.",
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="ROOT_OR_FILES",
                        help="a folder (root/<Class>/*.jpg gives the true class; or a flat folder) or image files")
    parser.add_argument("--model", "--models", "--backbone", "--backbones", dest="models", nargs="+", metavar="NAME",
                        help="models to run by their manifest name, space- or comma-separated (default: every "
                        "model in the manifest); --backbones is the old spelling")
    parser.add_argument("--target", default="predicted",
                        help="class to explain: predicted (default), true (the class folder), or a class name/index")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1: least memory)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help="CAM method (default gradcam); another method writes to OUT/<model>-<method>/")
    parser.add_argument("--views", default=",".join(DEFAULT_VIEWS),
                        help=f"PNG views to write, comma-separated, from {', '.join(VIEW_NAMES)} "
                        f"(default {','.join(DEFAULT_VIEWS)}); the raw map is always written")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"heat map opacity 0..1 (default {DEFAULT_ALPHA})")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, help=f"{', '.join(COLORMAPS)} (default {DEFAULT_COLORMAP})")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or checkpoints/)")
    parser.add_argument("--cache", help="cache folder (default: $MUSHCAM_CACHE or ~/.cache/mushcam/cams, shared with the app)")
    parser.add_argument("--cache-max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                        help=f"cache size cap; least recently used maps are evicted (default {DEFAULT_MAX_BYTES // 2**20})")
    parser.add_argument("--shard", metavar="k/N", help="process only shard k of N (1..N), for N independent jobs")
    parser.add_argument("--force", action="store_true", help="recompute every map and rewrite every file")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"longest side of the written views in pixels (default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--png-level", type=int, default=DEFAULT_PNG_LEVEL,
                        help=f"PNG zlib compression 0-9 (default {DEFAULT_PNG_LEVEL}: fast; 6 gives files ~8%% smaller "
                        "for ~2.7x the encoding time, see benchmarks/bench_pipeline.py)")
    parser.add_argument("--summary", metavar="FILE", help="also write the run's summary as JSON to FILE")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.set_defaults(handler=run_gradcam)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Validate the command line (errors name the option) and build the run's configuration."""
    manifest = resolve_manifest(args.manifest)
    backbones = _split_list(args.models) or list(manifest.models)
    if not backbones:
        raise UsageError("the manifest lists no models; add one under \"models\" or pass --manifest")
    for backbone in backbones:
        if backbone not in manifest.models:
            raise UsageError(f"--model: no model named {backbone!r} in the manifest; "
                             f"choose from {', '.join(manifest.models)}")
    backbones = list(dict.fromkeys(backbones))
    target_text = str(args.target).strip()
    if target_text.lower() in ("predicted", "true"):
        target: str | int = target_text.lower()
    elif re.fullmatch(r"[0-9]+", target_text):  # ASCII digits only: '²'.isdigit() is True
        target = int(target_text)
        if not 0 <= target < manifest.num_classes:
            raise UsageError(f"--target {target} is out of range: there are {manifest.num_classes} classes")
    else:
        try:
            target = manifest.class_index(target_text)
        except KeyError as exc:
            raise UsageError(f"--target {target_text!r}: {exc.args[0]}") from None
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1; got {args.batch_size}")
    views = tuple(dict.fromkeys(_split_list([args.views])))
    bad = [v for v in views if v not in VIEW_NAMES]
    if bad or not views:
        raise UsageError(f"--views must list some of {', '.join(VIEW_NAMES)}; got {args.views!r}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {args.colormap!r}")
    if not 16 <= args.max_side <= MAX_MAX_SIDE:
        raise UsageError(f"--max-side must be between 16 and {MAX_MAX_SIDE} pixels (views are for people); got {args.max_side}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder (it is created)")
    if not 0 <= args.png_level <= 9:
        raise UsageError(f"--png-level must be between 0 and 9; got {args.png_level}")
    if not (math.isfinite(args.cache_max_mb) and args.cache_max_mb > 0):
        raise UsageError(f"--cache-max-mb must be a positive, finite number of megabytes; got {args.cache_max_mb}")
    cache = CamCache(Path(args.cache) if args.cache else default_cache_dir(), max_bytes=int(args.cache_max_mb * 2**20))
    return PipelineConfig(
        manifest=manifest,
        out=Path(args.out),
        cache=cache,
        backbones=tuple(backbones),
        target=target,
        batch_size=args.batch_size,
        views=views,
        alpha=float(args.alpha),
        colormap=args.colormap,
        device=resolve_device(args.device),
        force=bool(args.force),
        max_side=int(args.max_side),
        png_level=int(args.png_level),
        shard=parse_shard(args.shard),
        method=args.method,
    )


def run_gradcam(args: argparse.Namespace) -> int:
    """``python -m mushcam gradcam``: exit 0, or 1 when some images could not be processed."""
    rss_after_import = current_rss_bytes()  # torch and the rest are imported: the process's floor
    config = config_from_args(args)
    def skipped(path: str, reason: str) -> None:
        print(f"skipped {path}: {reason}", file=sys.stderr)

    items = select_shard(collect_images(args.data, on_skip=skipped), config.shard)
    shard_note = "" if config.shard is None else " (shard {}/{})".format(*config.shard)
    print(f"{len(items)} images{shard_note}, {len(config.backbones)} models, device {config.device}, "
          f"cache {config.cache.root}", file=sys.stderr)
    started = time.perf_counter()
    startup_peak = peak_rss_bytes()  # before the per-model resets: imports, scanning
    reports = run_pipeline(config, items, progress=lambda message: print(message, file=sys.stderr, flush=True))
    total = time.perf_counter() - started
    peaks = [p for p in [startup_peak, *(r.peak_rss_bytes for r in reports)] if p is not None]
    print(format_summary(reports, total, config.device, config.method))
    if args.summary:
        summary = {
            "device": str(config.device),
            "seconds": total,
            "images": len(items),
            "shard": list(config.shard) if config.shard else None,
            "rss_after_import_bytes": rss_after_import,
            "process_peak_rss_bytes": max(peaks) if peaks else None,
            "models": [{**asdict(r), "images_per_second": r.images_per_second} for r in reports],
        }
        write_json_atomic(Path(args.summary), summary, "the run summary")
    return 1 if any(r.failed for r in reports) else 0
