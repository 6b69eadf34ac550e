"""Embeddings of every training photo, computed once per checkpoint and cached on disk.

:func:`build_index` reads each photo's bytes (for its SHA-256), reuses the rows of the
stored file (:mod:`mushcam.lookalike.store`) whose SHA-256 it already holds, and runs the
model only on the others, ``batch_size`` photos at a time: at most one batch of photos is
decoded at once. Nothing new and nothing gone: the stored file is returned as it is, with
no model call. The model's digest (:func:`model_digest`) changes with the checkpoint file
and the entry's fields, so a retrained checkpoint gets a new file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mushcam.cache import CamCache
from mushcam.catalog import cache_digest, entry_fingerprint
from mushcam.data import LabelledImage, decode_image, image_sha256, preprocess, read_bytes, scan_images
from mushcam.exceptions import MushcamError
from mushcam.lookalike.features import pooled_features
from mushcam.lookalike.store import DTYPES, EmbeddingIndex, embedding_key, load_index, save_index, unit_rows
from mushcam.manifest import InputSpec, Manifest

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class BuiltIndex:
    """What :func:`build_index` returns: the index, how many rows were computed now, and the photos skipped."""

    index: EmbeddingIndex
    computed: int
    reused: int
    unreadable: tuple[tuple[str, str], ...] = ()


def model_digest(manifest: Manifest, name: str, cache: CamCache) -> str:
    """The model part of the key, as for the maps: checkpoint SHA-256 (memoised) + entry fingerprint."""
    checkpoint = cache.checkpoint_sha256(manifest.checkpoint_path(name))
    return cache_digest(checkpoint, entry_fingerprint(manifest, name))


def training_photos(data_root: str | os.PathLike[str], split: str = "train") -> list[LabelledImage]:
    """Every photo under ``data_root/<split>/<Class>/`` (or ``data_root/<Class>/`` when there is no such split),
    with paths relative to ``data_root`` (``train/Amanita/x.jpg``), as the results store writes them."""
    root = Path(data_root).expanduser()
    if not (root / split).is_dir():
        return scan_images(root).images
    return [LabelledImage(p.path, f"{split}/{p.relpath}", p.label) for p in scan_images(root / split).images]


def _hash_all(photos: Sequence[LabelledImage]) -> tuple[list[tuple[LabelledImage, str]], list[tuple[str, str]]]:
    """(photo, SHA-256 of its bytes) for each readable photo, one file in memory at a time; and the unreadable ones."""
    found, unreadable = [], []
    for photo in photos:
        try:
            found.append((photo, image_sha256(read_bytes(photo.path))))
        except (OSError, MushcamError) as exc:
            unreadable.append((photo.relpath, str(exc)))
    return found, unreadable


def _decode_batch(photos: Sequence[LabelledImage], spec: InputSpec) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """Preprocessed tensors of the photos that decode, their positions, and why each other one failed."""
    tensors, kept, errors = [], [], []
    for offset, photo in enumerate(photos):
        try:
            tensors.append(preprocess(decode_image(read_bytes(photo.path)), spec))
            kept.append(offset)
        except (OSError, MushcamError) as exc:
            errors.append(f"{photo.relpath}: {exc}")
    return tensors, kept, errors


Failures = list[tuple[str, str]]  # (photo path, why it was left out)


def compute_features(model: nn.Module, photos: Sequence[LabelledImage], spec: InputSpec,
                     batch_size: int = DEFAULT_BATCH,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, list[int], Failures]:
    """Features (M x D float32) of the photos that decode, ``batch_size`` at a time; their positions; the failures."""
    blocks: list[np.ndarray] = []
    positions: list[int] = []
    failures: list[tuple[str, str]] = []
    for start in range(0, len(photos), batch_size):
        batch = photos[start:start + batch_size]
        tensors, kept, errors = _decode_batch(batch, spec)
        failures.extend((e.split(": ", 1)[0], e.split(": ", 1)[1]) for e in errors)
        if tensors:
            features, _ = pooled_features(model, torch.stack(tensors))
            blocks.append(features.numpy())
            positions.extend(start + k for k in kept)
        if progress is not None:
            progress(min(start + batch_size, len(photos)), len(photos))
    width = blocks[0].shape[1] if blocks else 0
    return (np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)), positions, failures


def build_index(model: nn.Module, photos: Sequence[LabelledImage], spec: InputSpec, root: str | os.PathLike[str],
                digest: str, batch_size: int = DEFAULT_BATCH, dtype: str = "float16",
                progress: Callable[[int, int], None] | None = None) -> BuiltIndex:
    """The embeddings of ``photos`` for the model whose digest is ``digest``, from the cache where it has them.

    ``progress(done, total)`` is called after each batch the model runs on.
    """
    if dtype not in DTYPES:
        raise MushcamError(f"embeddings are stored as {' or '.join(DTYPES)}; got {dtype!r}")
    if batch_size < 1:
        raise MushcamError(f"the batch size must be at least 1; got {batch_size}")
    key = embedding_key(digest, spec)
    stored = load_index(root, key)
    known = {} if stored is None else {s: i for i, s in enumerate(stored.sha256s)}
    readable, unreadable = _hash_all(photos)
    wanted = [(photo.relpath, photo.label, sha) for photo, sha in readable]
    if stored is not None and stored.vectors.dtype.name == dtype and \
            wanted == list(zip(stored.paths, stored.labels, stored.sha256s, strict=True)):
        return BuiltIndex(stored, 0, len(readable), tuple(unreadable))
    todo = [(photo, sha) for photo, sha in readable if sha not in known]
    features, positions, failures = compute_features(model, [photo for photo, _ in todo], spec, batch_size, progress)
    units, norms = unit_rows(features)
    fresh = {todo[position][1]: row for row, position in enumerate(positions)}
    index = _assemble(key, readable, stored, known, fresh, units, norms, dtype)
    unchanged = stored is not None and not fresh and stored.vectors.dtype.name == dtype and \
        (index.paths, index.labels, index.sha256s) == (stored.paths, stored.labels, stored.sha256s)
    if not unchanged:  # only photos that cannot be decoded differ from the file: nothing to write
        save_index(root, index, digest, spec)
    return BuiltIndex(index, len(fresh), len(index) - len(fresh), tuple(unreadable + failures))


def _assemble(key: str, readable: Sequence[tuple[LabelledImage, str]], stored: EmbeddingIndex | None,
              known: dict[str, int], computed: dict[str, int], units: np.ndarray, norms: np.ndarray,
              dtype: str) -> EmbeddingIndex:
    """One index, in the photos' order, from the stored rows and the new ones (photos that failed left out)."""
    rows, row_norms, kept = [], [], []
    for photo, sha in readable:
        if sha in computed:
            rows.append(units[computed[sha]])
            row_norms.append(norms[computed[sha]])
        elif stored is not None and sha in known:
            rows.append(np.asarray(stored.vectors[known[sha]], dtype=np.float32))
            row_norms.append(stored.norms[known[sha]])
        else:
            continue
        kept.append((photo.relpath, sha, photo.label))
    width = units.shape[1] if units.size else (stored.vectors.shape[1] if stored is not None else 0)
    vectors = np.stack(rows).astype(dtype) if rows else np.zeros((0, width), dtype=dtype)
    return EmbeddingIndex(key, vectors, tuple(k[0] for k in kept), tuple(k[1] for k in kept), tuple(k[2] for k in kept),
                          np.asarray(row_norms, dtype=np.float32))


__all__ = ["BuiltIndex", "DEFAULT_BATCH", "build_index", "compute_features", "model_digest", "training_photos"]
