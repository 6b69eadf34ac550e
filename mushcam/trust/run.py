"""Faithfulness and sanity over a test folder, per model x method, streamed into the results store.

One model at a time (loaded, used for every method and image, freed); images are decoded
a batch at a time and their rows written as soon as they are scored, so memory does not
grow with the number of images. The map explains each image's predicted class. Random
draws (tie-breaking, random map, ROAD noise) are seeded per image from the settings' seed
and the image's bytes, so a result does not depend on the order or the batch size.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from mushcam.cam import METHODS, UnknownMethodError, cam, check_method
from mushcam.catalog import load_catalog_entry
from mushcam.data import ImageLoadError, decode_image, image_sha256, preprocess, read_bytes
from mushcam.evaluate.predict import Progress
from mushcam.evaluate.scan import TestImage, TestSet, scan_test_set
from mushcam.exceptions import MushcamError
from mushcam.manifest import Manifest
from mushcam.memory import peak_rss_bytes, reset_peak_rss
from mushcam.models import file_sha256
from mushcam.trust import store as trust_store
from mushcam.trust.faithfulness import FaithfulnessSettings, ImageFaithfulness, evaluate_map
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
                raise MushcamError(f"checkpoint for {name} not found: {manifest.checkpoint_path(name)}")
        return chosen
    chosen = [name for name in manifest.models if manifest.checkpoint_path(name).is_file()]
    for name in manifest.models:
        if name not in chosen:
            log(f"skipping {name}: checkpoint not found at {manifest.checkpoint_path(name)}")
    if not chosen:
        raise MushcamError("none of the manifest's checkpoints exist; nothing to score")
    return chosen


def _decoded(items: Sequence[TestImage], manifest: Manifest, log: Callable[[str], None]):  # noqa: ANN202
    tensors, kept = [], []
    for item in items:
        try:
            data = read_bytes(item.path)
            tensors.append(preprocess(decode_image(data), manifest.input))
        except ImageLoadError as exc:
            log(f"skipped {item.relpath}: unreadable image: {exc}")
            continue
        kept.append((item, image_sha256(data)))
    return tensors, kept


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
    chosen_methods, chosen_models, test_set, images = prepare_faithfulness(data_root, manifest, methods, models,
                                                                           settings, limit, log)
    summaries = []
    for name in chosen_models:
        reset_peak_rss()  # the peak printed below is this model's own
        digest = file_sha256(manifest.checkpoint_path(name))
        loaded = load_catalog_entry(manifest, name)
        try:
            for method in chosen_methods:
                key = trust_store.RunKey(name, digest, str(test_set.root), method, loaded.layer)
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
) -> tuple[list[str], list[str], TestSet, list[TestImage]]:
    """Everything checked before any model runs: methods, models, the test set and the images scored (logged)."""
    chosen_methods = check_methods(methods)
    chosen_models = choose_models(manifest, models, log)
    test_set = scan_test_set(data_root, manifest)
    images = spread(list(test_set.images), limit) if limit else list(test_set.images)
    if not images:
        raise MushcamError(f"no images of the manifest's classes under {test_set.root}")
    log(f"{len(images)} images in {test_set.root}; baseline {settings.baseline}, {settings.steps} steps, "
        f"ROAD at {', '.join(map(str, settings.road_percentages)) or 'no'} %")
    return chosen_methods, chosen_models, test_set, images


FaithfulnessRow = tuple[str, str, int, ImageFaithfulness]  # image path, image SHA-256, true class, scores


def score_batch(loaded, items: Sequence[TestImage], manifest: Manifest, method: str,  # noqa: ANN001
                settings: FaithfulnessSettings, log: Callable[[str], None]) -> list[FaithfulnessRow]:
    """One batch of photos: decoded, their maps in one call, each map scored (``loaded``: .model and .layer).

    The unit of work of a local pass and of a :mod:`mushcam.distributed` worker alike.
    """
    tensors, kept = _decoded(items, manifest, log)
    if not tensors:
        return []
    batch = torch.stack(tensors)
    result = cam(loaded.model, batch, loaded.layer, None, method)
    rows = []
    for i, (item, sha) in enumerate(kept):
        scores = evaluate_map(loaded.model, batch[i], result.cams[i], int(result.class_idx[i]),
                              settings, image_generator(settings.seed, sha))
        rows.append((item.relpath, sha, item.true_idx, scores))
    return rows


def finish_pass(out: str | Path, key: trust_store.RunKey, frun_id: int, n_images: int, seconds: float,
                log: Callable[[str], None]) -> TrustRunSummary:
    """Mark the run complete in the store, log its time and this process's peak memory; its summary."""
    trust_store.finish_faithfulness(out, frun_id, seconds)
    peak = peak_rss_bytes()
    log(f"{key.model} · {key.method}: {n_images} images in {seconds:.1f} s"
        + (f"; peak resident memory {peak / 2**20:.0f} MB" if peak else ""))
    return TrustRunSummary(key.model, key.method, n_images, seconds, peak / 2**20 if peak else None)


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
    """One (model, method) over ``images``: each batch's maps scored and appended to the store as it goes."""
    frun_id = trust_store.begin_faithfulness(out, key, settings)
    bar = Progress(f"{key.model} · {key.method}", len(images), progress_stream)
    start = time.perf_counter()
    done = 0
    for first in range(0, len(images), cam_batch_size):
        rows = score_batch(loaded, images[first:first + cam_batch_size], manifest, key.method, settings, log)
        if rows:
            trust_store.append_faithfulness(out, frun_id, rows)
        done += min(cam_batch_size, len(images) - first)
        bar.update(done)
    return finish_pass(out, key, frun_id, len(images), time.perf_counter() - start, log)


def sanity_over_folder(
    data_root: str | Path,
    manifest: Manifest,
    out: str | Path | None,
    model: str,
    method: str,
    n_images: int = 8,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> trust_store.SanityRun:
    """The sanity check of one model x method on ``n_images`` spread over the folder's classes."""
    check_methods([method])
    choose_models(manifest, [model], log)
    test_set = scan_test_set(data_root, manifest)
    images = spread(list(test_set.images), n_images)
    if not images:
        raise MushcamError(f"no images of the manifest's classes under {test_set.root}")
    tensors, kept = _decoded(images, manifest, log)
    loaded = load_catalog_entry(manifest, model)
    start = time.perf_counter()
    result = sanity_check(loaded.model, torch.stack(tensors), method_explainer(loaded.layer, method), seed=seed)
    seconds = time.perf_counter() - start
    digest = file_sha256(manifest.checkpoint_path(model))
    key = trust_store.RunKey(model, digest, str(test_set.root), method, loaded.layer)
    paths = tuple(item.relpath for item, _ in kept)
    srun_id = trust_store.save_sanity(out, key, paths, result, seed, seconds) if out else -1
    return trust_store.SanityRun(srun_id, key, result.blocks, paths, result.spearman, result.ssim)


def spread(items: Sequence[TestImage], n: int) -> list[TestImage]:
    """``n`` items taken at even intervals (the folder is sorted by class: every class gets its share)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
