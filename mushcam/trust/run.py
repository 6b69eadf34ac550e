"""Faithfulness and sanity over a test folder, per model x method, streamed into the results store.

One model at a time (loaded, used for every method and image, freed); images are decoded
a batch at a time and their rows written as soon as they are scored, so memory does not
grow with the number of images. The map explains each image's predicted class. Random
draws (tie-breaking, random map, ROAD noise) are seeded per image from the settings' seed
and the image's bytes, so a result does not depend on the order or the batch size.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from mushcam.cam import METHODS, UnknownMethodError, cam, check_method
from mushcam.catalog import load_catalog_entry
from mushcam.data import ImageLoadError, decode_image, image_sha256, preprocess, read_bytes
from mushcam.evaluate.predict import Progress, scanned_test_set
from mushcam.evaluate.scan import TestImage
from mushcam.exceptions import MushcamError
from mushcam.manifest import Manifest
from mushcam.memory import peak_rss_bytes, reset_peak_rss
from mushcam.models import file_sha256
from mushcam.models.checkpoint import what_is_there
from mushcam.trust import store as trust_store
from mushcam.trust.faithfulness import FaithfulnessSettings, ImageFaithfulness, evaluate_map
from mushcam.trust.sanity import Progress as SanityProgress
from mushcam.trust.sanity import method_explainer, sanity_check


@dataclass(frozen=True)
class TrustRunSummary:
    model: str
    method: str
    n_images: int
    seconds: float
    peak_rss_mb: float | None


def check_methods(methods: Sequence[str]) -> list[str]:
    """The CAM method names, de-duplicated in order; none, or an unknown one, is an :class:`UnknownMethodError`."""
    chosen = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not chosen:
        raise UnknownMethodError(f"no CAM method given; choose from {', '.join(METHODS)}")
    return [check_method(name) for name in chosen]


def image_generator(seed: int, image_sha: str) -> torch.Generator:
    """The random stream of one image: the same for the same seed and image bytes."""
    return torch.Generator().manual_seed((seed * 1_000_003 + int(image_sha[:12], 16)) % (2**63 - 1))


def choose_models(manifest: Manifest, models: Sequence[str] | None, log: Callable[[str], None]) -> list[str]:
    """The named models (each must have a checkpoint), or every manifest model that has one."""
    if models:
        chosen = list(dict.fromkeys(models))
        for name in chosen:
            if name not in manifest.models:
                raise MushcamError(f"the manifest has no model named {name!r} (models: {', '.join(manifest.models)})")
            if not manifest.checkpoint_path(name).is_file():
                path = manifest.checkpoint_path(name)
                raise MushcamError(what_is_there(path) or f"checkpoint for {name} not found: {path}")
        return chosen
    chosen = [name for name in manifest.models if manifest.checkpoint_path(name).is_file()]
    for name in manifest.models:
        if name not in chosen:
            log(f"skipping {name}: checkpoint not found at {manifest.checkpoint_path(name)}")
    if not chosen:
        raise MushcamError("none of the manifest's checkpoints exist; nothing to score")
    return chosen


@dataclass(frozen=True)
class Decoded:
    """A batch of images read for scoring: tensors, the (item, SHA-256) they came from, and what failed."""

    tensors: list[torch.Tensor]
    kept: list[tuple[TestImage, str]]
    failed: list[tuple[str, str]]  # (relative path, reason)


def decode_items(items: Sequence[TestImage], manifest: Manifest, log: Callable[[str], None]) -> Decoded:
    """Read and preprocess ``items``; an unreadable one is logged and left out with its reason."""
    decoded = Decoded([], [], [])
    for item in items:
        try:
            data = read_bytes(item.path)
            decoded.tensors.append(preprocess(decode_image(data), manifest.input))
        except ImageLoadError as exc:
            log(f"skipped {item.relpath}: unreadable image: {exc}")
            decoded.failed.append((item.relpath, str(exc)))
            continue
        decoded.kept.append((item, image_sha256(data)))
    return decoded


def none_readable(count: int, root: Path, failed: Sequence[tuple[str, str]]) -> MushcamError:
    """The error when not one of ``count`` images could be read: the first reasons and what to do."""
    reasons = "; ".join(f"{path}: {reason}" for path, reason in failed[:3])
    more = f"; ... {len(failed) - 3} more" if len(failed) > 3 else ""
    return ImageLoadError(f"none of the {count} images in {root} could be read: {reasons}{more}; "
                          "replace the damaged files or choose another folder")


def scanned_images(data_root: str | Path, manifest: Manifest, limit: int | None,
                   log: Callable[[str], None]) -> tuple[Path, list[TestImage]]:
    """The test folder's images (``limit`` of them, spread over the classes), the skipped files logged
    with their reasons as ``evaluate`` logs them (a non-UTF-8 name: "rename the file")."""
    test_set = scanned_test_set(data_root, manifest, log)
    images = spread(list(test_set.images), limit) if limit else list(test_set.images)
    return test_set.root, images


def faithfulness_over_folder(
    data_root: str | Path,
    manifest: Manifest,
    out: str | Path,
    methods: Sequence[str],
    models: Sequence[str] | None = None,
    settings: FaithfulnessSettings = FaithfulnessSettings(),
    cam_batch_size: int = 8,
    limit: int | None = None,
    log: Callable[[str], None] = print,
    progress_stream: TextIO | None = None,
) -> list[TrustRunSummary]:
    """Score every (model, method) on every image under ``data_root/<Class>/`` into ``out``."""
    chosen_methods, chosen_models, root, images = prepare_faithfulness(data_root, manifest, methods, models,
                                                                       settings, limit, log, out)
    summaries = []
    for name in chosen_models:
        reset_peak_rss()  # the peak printed below is this model's own
        digest = file_sha256(manifest.checkpoint_path(name))
        loaded = load_catalog_entry(manifest, name)
        try:
            for method in chosen_methods:
                key = trust_store.RunKey(name, digest, str(root), method, loaded.layer)
                summaries.append(faithfulness_pass(out, key, loaded, images, manifest, settings, cam_batch_size,
                                                   log, progress_stream))
        finally:
            del loaded
            gc.collect()
    log(f"results written to {out}; print them with: python -m mushcam report {out}")
    return summaries


def prepare_faithfulness(
    data_root: str | Path,
    manifest: Manifest,
    methods: Sequence[str],
    models: Sequence[str] | None,
    settings: FaithfulnessSettings,
    limit: int | None,
    log: Callable[[str], None],
    out: str | Path | None = None,
) -> tuple[list[str], list[str], Path, list[TestImage]]:
    """Everything checked before any model runs: methods, models, the store ``out`` writable, the
    test folder and the images scored (logged, skipped files with their reasons)."""
    chosen_methods = check_methods(methods)
    chosen_models = choose_models(manifest, models, log)
    if out is not None:
        trust_store.check_writable(out)  # a read-only store is said now, not after the work
    root, images = scanned_images(data_root, manifest, limit, log)
    if not images:
        raise MushcamError(f"no images of the manifest's classes under {root}")
    log(f"{len(images)} images in {root}; baseline {settings.baseline}, {settings.steps} steps, "
        f"ROAD at {', '.join(map(str, settings.road_percentages)) or 'no'} %")
    return chosen_methods, chosen_models, root, images


FaithfulnessRow = tuple[str, str, int, ImageFaithfulness]  # image path, image SHA-256, true class, scores


@dataclass(frozen=True)
class ScoredBatch:
    """What one batch gave: the rows to store, how many photos were read, and those that failed (path, reason)."""

    rows: list[FaithfulnessRow]
    read: int
    failed: list[tuple[str, str]]


def score_batch(loaded, items: Sequence[TestImage], manifest: Manifest, method: str,  # noqa: ANN001
                settings: FaithfulnessSettings, log: Callable[[str], None],
                done_before: Mapping[str, str] | None = None) -> ScoredBatch:
    """One batch of photos: decoded, the maps of those not yet scored in one call, each map scored
    (``loaded``: .model and .layer; ``done_before``: path -> SHA-256 of photos a resumed run holds).

    The unit of work of a local pass and of a :mod:`mushcam.distributed` worker alike.
    """
    decoded = decode_items(items, manifest, log)
    done_before = done_before or {}
    todo = [i for i, (item, sha) in enumerate(decoded.kept) if done_before.get(item.relpath) != sha]
    rows = _score_batch(loaded, method, decoded, todo, settings) if todo else []
    return ScoredBatch(rows, len(decoded.kept), decoded.failed)


def resume_pass(out: str | Path, key: trust_store.RunKey, settings: FaithfulnessSettings,
                images: Sequence[TestImage], log: Callable[[str], None]) -> tuple[int, dict[str, str]]:
    """The run to write into and the photos an interrupted run of the same identity already scored (logged)."""
    frun_id, done_before = trust_store.resume_faithfulness(out, key, settings)
    if done_before:
        already = len(done_before.keys() & {item.relpath for item in images})
        log(f"{key.model} · {key.method}: resuming an interrupted run, {already} of {len(images)} images already "
            "scored (a photo whose bytes changed since is scored again)")
    return frun_id, done_before


def finish_pass(out: str | Path, key: trust_store.RunKey, frun_id: int, images: Sequence[TestImage],
                seconds: float, read: int, failed: Sequence[tuple[str, str]],
                log: Callable[[str], None]) -> TrustRunSummary:
    """Mark the run complete (only ``images``' rows kept), log its time and this process's peak memory;
    its summary. Not one photo read is the error :func:`none_readable`, and the run stays open."""
    if not read:
        raise none_readable(len(images), Path(key.data_root), failed)
    trust_store.finish_faithfulness(out, frun_id, seconds, keep=[item.relpath for item in images])
    peak = peak_rss_bytes()
    log(f"{key.model} · {key.method}: {len(images)} images in {seconds:.1f} s"
        + (f"; peak resident memory {peak / 2**20:.0f} MB" if peak else ""))
    return TrustRunSummary(key.model, key.method, len(images), seconds, peak / 2**20 if peak else None)


def faithfulness_pass(
    out: str | Path,
    key: trust_store.RunKey,
    loaded,  # noqa: ANN001 - mushcam.catalog's loaded entry: .model and .layer
    images: Sequence[TestImage],
    manifest: Manifest,
    settings: FaithfulnessSettings,
    cam_batch_size: int,
    log: Callable[[str], None],
    progress_stream: TextIO | None,
) -> TrustRunSummary:
    """One (model, method) over ``images``: each batch's maps scored and appended to the store as it goes.

    An interrupted run of the same identity and settings is resumed: the images it already
    scored (same path, same bytes) are not scored again, and the finished run equals an
    uninterrupted one (each image's random stream depends only on the seed and its bytes).
    """
    frun_id, done_before = resume_pass(out, key, settings, images, log)
    bar = Progress(f"{key.model} · {key.method}", len(images), progress_stream)
    start = time.perf_counter()
    done, read, failed = 0, 0, []
    for first in range(0, len(images), cam_batch_size):
        batch = score_batch(loaded, images[first:first + cam_batch_size], manifest, key.method, settings, log,
                            done_before)
        read, failed = read + batch.read, failed + batch.failed
        if batch.rows:
            trust_store.append_faithfulness(out, frun_id, batch.rows)
        done += min(cam_batch_size, len(images) - first)
        bar.update(done)
    return finish_pass(out, key, frun_id, images, time.perf_counter() - start, read, failed, log)


def _score_batch(loaded, method: str, decoded: Decoded, todo: Sequence[int],  # noqa: ANN001 - a catalog entry
                 settings: FaithfulnessSettings) -> list[FaithfulnessRow]:
    """The maps of the ``todo`` images of a decoded batch, each scored: rows for the store."""
    batch = torch.stack([decoded.tensors[i] for i in todo])
    result = cam(loaded.model, batch, loaded.layer, None, method)
    rows = []
    for j, i in enumerate(todo):
        item, sha = decoded.kept[i]
        scores = evaluate_map(loaded.model, batch[j], result.cams[j], int(result.class_idx[j]), settings,
                              image_generator(settings.seed, sha))
        rows.append((item.relpath, sha, item.true_idx, scores))
    return rows


def sanity_over_folder(
    data_root: str | Path,
    manifest: Manifest,
    out: str | Path | None,
    model: str,
    method: str,
    n_images: int = 8,
    seed: int = 0,
    log: Callable[[str], None] = print,
    progress: SanityProgress | None = None,
) -> trust_store.SanityRun:
    """The sanity check of one model x method on ``n_images`` spread over the folder's classes.

    The store is checked writable before the work; a folder whose images all fail to decode
    is one error naming the first reasons.
    """
    if n_images < 1:
        raise MushcamError(f"the sanity check needs at least 1 image; got {n_images}")
    check_methods([method])
    choose_models(manifest, [model], log)
    if out:
        trust_store.check_writable(out)
    root, images = scanned_images(data_root, manifest, n_images, log)
    decoded = decode_items(images, manifest, log)
    if not decoded.tensors:
        raise none_readable(len(images), root, decoded.failed)
    loaded = load_catalog_entry(manifest, model)
    start = time.perf_counter()
    result = sanity_check(loaded.model, torch.stack(decoded.tensors), method_explainer(loaded.layer, method),
                          seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    digest = file_sha256(manifest.checkpoint_path(model))
    key = trust_store.RunKey(model, digest, str(root), method, loaded.layer)
    paths = tuple(item.relpath for item, _ in decoded.kept)
    srun_id = trust_store.save_sanity(out, key, paths, result, seed, seconds) if out else -1
    return trust_store.SanityRun(srun_id, key, result.blocks, paths, result.spearman, result.ssim)


class StepProgress:
    """The sanity check's progress on a stream: maps done / total, time so far and about how long is left.

    ETA = elapsed / done x (total - done): every map of the cascade costs about the same.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        left = elapsed / max(done, 1) * (total - done)
        line = (f"{self.label}: map {done}/{total} ({done / max(total, 1):.0%}), {elapsed:.1f} s so far, "
                f"about {left:.0f} s left")
        self.stream.write(("\r" + line + ("\n" if done >= total else "")) if self.tty else line + "\n")
        self.stream.flush()


def spread(items: Sequence[TestImage], n: int) -> list[TestImage]:
    """``n`` items taken at even intervals (the folder is sorted by class: every class gets its share)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
