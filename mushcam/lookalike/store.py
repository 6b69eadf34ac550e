"""On-disk embeddings of a model's training photos: one ``.npy`` and one JSON index per key.

The key is the SHA-256 of the model's cache digest (the checkpoint's SHA-256 combined with
the entry fingerprint, :func:`mushcam.catalog.cache_digest`) and the input spec
(:func:`mushcam.cache.spec_token`), as for the maps: new weights or new preprocessing give a
new key, so an old file is never read for them. Within a file, each row is one photo,
identified by its SHA-256 (a renamed photo keeps its row; an edited one gets a new one).

Layout under ``root`` (by default ``<map cache>/embeddings``)::

    <key>.json           {"version", "key", "model", "spec", "dtype", "dim", "vectors": "<key>.<token>.npy",
                          "rows": [{"path", "sha256", "label", "norm"}, ...]}
    <key>.<token>.npy    N x D float16 or float32: each row divided by its own norm (unit length)

Rows are stored at unit length with their norm in the index, so float16 keeps its relative
precision (2**-11) at any magnitude (a random network's features can be far below float16's
smallest number) and cosine similarity is a plain dot product. The vectors file gets a fresh
name on every write and is written before the index that names it (both atomically), so a
reader always sees a matching pair; a file that does not match its index is a miss.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mushcam.cache import default_cache_dir, spec_token
from mushcam.files import write_bytes_atomic, write_json_atomic
from mushcam.manifest import InputSpec

KEY_VERSION = "mushcam-embeddings-v1"
DTYPES = ("float16", "float32")


def default_embedding_dir() -> Path:
    """``<map cache folder>/embeddings``: beside the maps, outside their size cap."""
    return default_cache_dir() / "embeddings"


def embedding_key(model_digest: str, spec: InputSpec) -> str:
    """The file key (64 hex digits) of one model's embeddings under one input spec."""
    material = "|".join([KEY_VERSION, model_digest, spec_token(spec)])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EmbeddingIndex:
    """Unit-length embeddings (N x D) of photos, with each photo's path, SHA-256, label and norm."""

    key: str
    vectors: np.ndarray  # N x D, float16 or float32, unit rows (zero rows for all-zero features)
    paths: tuple[str, ...]
    sha256s: tuple[str, ...]
    labels: tuple[str, ...]
    norms: np.ndarray  # (N,) float32: the features' Euclidean norms

    def __len__(self) -> int:
        return len(self.paths)

    def embeddings(self) -> np.ndarray:
        """The raw features back (N x D float32): unit rows times their norms."""
        return self.vectors.astype(np.float32) * self.norms[:, None]


def unit_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows / ||row||, ||row||) in float32; an all-zero row stays zero with norm 0."""
    values = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(values, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return (values / safe[:, None]).astype(np.float32), norms.astype(np.float32)


def index_path(root: Path, key: str) -> Path:
    return Path(root) / f"{key}.json"


def load_index(root: str | os.PathLike[str], key: str) -> EmbeddingIndex | None:
    """The stored embeddings under ``key``, or None (absent, unreadable, or not matching its index)."""
    base = Path(root).expanduser()
    try:
        meta = json.loads(index_path(base, key).read_text(encoding="utf-8"))
        rows = meta["rows"]
        if meta.get("version") != KEY_VERSION or meta.get("key") != key or not isinstance(rows, list):
            return None
        name = str(meta["vectors"])
        if Path(name).name != name or not name.startswith(key):
            return None
        vectors = np.load(base / name, mmap_mode="c", allow_pickle=False)  # copy-on-write: never written back
        paths = tuple(str(r["path"]) for r in rows)
        sha256s = tuple(str(r["sha256"]) for r in rows)
        labels = tuple(str(r["label"]) for r in rows)
        norms = np.asarray([float(r["norm"]) for r in rows], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if vectors.dtype.name not in DTYPES or vectors.ndim != 2 or vectors.shape != (len(rows), int(meta.get("dim", -1))):
        return None
    return EmbeddingIndex(key, vectors, paths, sha256s, labels, norms)


def save_index(root: str | os.PathLike[str], index: EmbeddingIndex, model_digest: str, spec: InputSpec) -> None:
    """Write the vectors (fresh name) then the index naming them, both atomically; drop older vectors files."""
    base = Path(root).expanduser()
    token = hashlib.sha256(os.urandom(16)).hexdigest()[:12]
    name = f"{index.key}.{token}.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(index.vectors), allow_pickle=False)
    write_bytes_atomic(base / name, buffer.getvalue())
    rows = [{"path": p, "sha256": s, "label": label, "norm": float(n)}
            for p, s, label, n in zip(index.paths, index.sha256s, index.labels, index.norms.tolist(), strict=True)]
    meta = {"version": KEY_VERSION, "key": index.key, "model": model_digest, "spec": spec_token(spec),
            "dtype": index.vectors.dtype.name, "dim": int(index.vectors.shape[1]), "vectors": name, "rows": rows}
    write_json_atomic(index_path(base, index.key), meta, what="the embeddings index")
    for old in base.glob(f"{index.key}.*.npy"):
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass  # another process may be reading it; it is removed on a later write


__all__ = ["DTYPES", "EmbeddingIndex", "KEY_VERSION", "default_embedding_dir", "embedding_key", "load_index",
           "save_index", "unit_rows"]
