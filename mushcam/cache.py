"""On-disk cache of raw CAM maps, shared by the batch pipeline and the app: storage only.

A map depends on the weights, the image, the preprocessing, the layer, the explained
class and the CAM method (:mod:`mushcam.cam`), so its key is the SHA-256 of all of them
(:func:`cam_key`). Grad-CAM's key material is the same as before methods existed, so maps
cached by earlier versions stay valid; every other method appends its name
(:func:`method_key_part`). Computing a missing map is not done here: see
:func:`mushcam.explain.cached_explanation`. The same key computed by
``python -m mushcam gradcam`` and by a page finds the same file: a map made by the pipeline
shows up in the browser without a model call, and the other way round.

Storage (one small ``.npz`` per entry, zip-deflated, under ``root/<key[:2]>/<key>.npz``)::

    cam    float16  h x w   the map divided by its own maximum: values in [0, 1]
    scale  float32  ()      that maximum (0 for an all-zero map)
    probabilities float32 (C,)  optional: the model's softmax for the image
    class_idx int64 ()      optional: the explained class (-1: not recorded)
    key    str     ()       the entry's own key: an entry read under another key is a miss

Storing ``cam / max`` keeps float16's relative precision (2**-11) at any magnitude: the
raw maps of randomly initialised networks peak near 1e-15, far below float16's smallest
number (6e-8), and a plain float16 cast would turn them into zeros. What comes back is
``cam16 * scale``: within ``2**-11 * max`` of the original. :func:`roundtrip` gives that
stored form without touching the disk, so a freshly computed map and a cached one render
to identical bytes.

Writes are atomic (a temp file in the same folder, then ``os.replace``), so a reader sees
the old entry, the new one or none, never half a file; several processes (pipeline shards,
app sessions) can share one folder. A corrupt or truncated entry (bad zip, bad CRC, wrong
arrays) is a miss: it is deleted and the caller recomputes. The folder is capped at
``max_bytes`` (sum of entry file sizes); when a write passes the cap, the least recently
used entries (by mtime, which a hit refreshes with ``os.utime``) are deleted down to 90 %
of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mushcam.cam.registry import DEFAULT_METHOD
from mushcam.manifest import InputSpec
from mushcam.models import file_sha256

KEY_VERSION = "mushcam-cam-v1"  # bump when the map's meaning or the file layout changes
SUFFIX = ".npz"
TMP_SUFFIX = ".tmp"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
LOW_WATER = 0.9  # eviction frees down to this fraction of the cap (amortises the scan)
STALE_TMP_SECONDS = 3600.0  # temp files of writers that died are removed after this
DIGESTS_NAME = "checkpoints.json"  # memo of checkpoint hashes, beside the entries


def default_cache_dir() -> Path:
    """``$MUSHCAM_CACHE`` if set, else ``$XDG_CACHE_HOME/mushcam/cams`` (``~/.cache/...``).

    One folder for the app and the command line, so that both see the same maps.
    """
    configured = os.environ.get("MUSHCAM_CACHE", "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mushcam" / "cams"


def spec_token(spec: InputSpec) -> str:
    """The preprocessing that a map depends on, as a stable string."""
    mean = ",".join(repr(float(v)) for v in spec.mean)
    std = ",".join(repr(float(v)) for v in spec.std)
    return f"{int(spec.size)}/{spec.resize}/{mean}/{std}"


def cam_key(
    checkpoint_sha256: str,
    image_sha256: str,
    layer: str,
    class_idx: int | None,
    spec: InputSpec,
    method: str = DEFAULT_METHOD,
    versus: int | None = None,
) -> str:
    """The cache key (64 hex digits) of one map.

    ``class_idx`` None means "the class the model predicts": an alias entry that lets a
    caller who does not know the prediction yet find the map without running the model
    (the entry records which class it is). ``method`` is a :data:`mushcam.cam.METHODS`
    name, turned into key material by :func:`method_key_part`. ``versus`` (a contrastive map of
    ``class_idx`` over that class) is part of the target; without it the key is as before.
    """
    target = "predicted" if class_idx is None else str(int(class_idx))
    if versus is not None:
        target += f"-vs-{int(versus)}"
    parts = [KEY_VERSION, checkpoint_sha256, image_sha256, layer, target, spec_token(spec), *method_key_part(method)]
    material = "|".join(parts)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def method_key_part(method: str) -> tuple[str, ...]:
    """The key material that names ``method``: ``("method=<name>",)``, or nothing for Grad-CAM.

    Grad-CAM keeps the key it had before there were other methods (no suffix), so that maps
    cached by earlier versions still hit; every other method gets its own entries.
    """
    return () if method == DEFAULT_METHOD else (f"method={method}",)


def quantize(cam: torch.Tensor | np.ndarray) -> tuple[np.ndarray, float]:
    """``(cam / max as float16, max as float32)``; an all-zero map gives zeros and 0."""
    values = np.asarray(torch.as_tensor(cam).detach().cpu().float().numpy(), dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"expected one h x w map, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("the map has non-finite values (NaN or inf)")
    if (values < 0).any():
        raise ValueError("a CAM map is ReLU'd: it cannot have negative values")
    scale = np.float32(values.max()) if values.size else np.float32(0.0)
    if scale > 0:
        normalised = (values / scale).astype(np.float16)
    else:
        normalised = np.zeros(values.shape, dtype=np.float16)
    return normalised, float(scale)


def dequantize(normalised: np.ndarray, scale: float) -> torch.Tensor:
    """The float32 map back from :func:`quantize`'s parts."""
    return torch.from_numpy(normalised.astype(np.float32) * np.float32(scale))


def roundtrip(cam: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The map exactly as the cache stores and returns it (float32)."""
    return dequantize(*quantize(cam))


@dataclass(frozen=True)
class CachedCam:
    """One cache entry: the map, and (when recorded) the probabilities and explained class."""

    cam: torch.Tensor  # float32 h x w
    probabilities: torch.Tensor | None  # float32 (C,)
    class_idx: int | None


def encode_entry(
    key: str,
    cam: torch.Tensor | np.ndarray,
    probabilities: torch.Tensor | np.ndarray | None = None,
    class_idx: int | None = None,
) -> bytes:
    """The ``.npz`` bytes of one entry (see the module docstring for the arrays).

    Raises ValueError for a map that is not h x w, finite and non-negative.
    """
    normalised, scale = quantize(cam)
    arrays: dict[str, np.ndarray] = {"cam": normalised, "scale": np.asarray(scale, dtype=np.float32)}
    if probabilities is not None:
        probs = torch.as_tensor(probabilities).detach().cpu().float().numpy().reshape(-1)
        arrays["probabilities"] = probs.astype(np.float32)
    arrays["class_idx"] = np.asarray(-1 if class_idx is None else int(class_idx), dtype=np.int64)
    arrays["key"] = np.asarray(key)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def decode_entry(data: bytes, key: str | None = None) -> CachedCam | None:
    """Parse an entry file; None for anything that is not a well-formed entry for ``key``."""
    arrays = _read_arrays(data, key)
    if arrays is None:
        return None
    normalised, scale, probabilities, class_idx = arrays
    if normalised.dtype != np.float16 or normalised.ndim != 2 or scale.shape != () or scale.dtype != np.float32:
        return None
    scale_value = float(scale)
    if not np.isfinite(scale_value) or scale_value < 0:
        return None
    if not np.isfinite(normalised).all() or (normalised < 0).any() or (normalised > 1).any():
        return None
    probs = None
    if probabilities is not None:
        if probabilities.dtype != np.float32 or probabilities.ndim != 1 or not np.isfinite(probabilities).all():
            return None
        probs = torch.from_numpy(probabilities.copy())
    index: int | None = None
    if class_idx is not None:
        if class_idx.shape != () or class_idx.dtype != np.int64:
            return None
        index = int(class_idx) if int(class_idx) >= 0 else None
        if index is not None and probs is not None and index >= probs.numel():
            return None
    return CachedCam(dequantize(normalised, scale_value), probs, index)


_EntryArrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def _read_arrays(data: bytes, key: str | None) -> _EntryArrays | None:
    """(cam, scale, probabilities or None, class_idx or None) of an entry file; None if unreadable
    or written for another key (a copied or renamed file: a miss, never a wrong answer)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if key is not None and ("key" not in archive.files or str(archive["key"][()]) != key):
                return None
            normalised = np.asarray(archive["cam"])
            scale = np.asarray(archive["scale"])
            probabilities = np.asarray(archive["probabilities"]) if "probabilities" in archive.files else None
            class_idx = np.asarray(archive["class_idx"]) if "class_idx" in archive.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError):
        return None
    except Exception:  # noqa: BLE001 - zlib and numpy raise many types on damaged data
        return None
    return normalised, scale, probabilities, class_idx


def checkpoint_digest(memo_root: Path, path: str | os.PathLike[str]) -> str:
    """SHA-256 of a checkpoint file, memoised in ``memo_root/checkpoints.json``.

    Hashing 100 MB costs a few tenths of a second, on every run and every app start;
    the memo is keyed by the file's resolved path, size, inode and mtime in nanoseconds
    (as ``git`` and ``make`` trust them), so a replaced or rewritten file is hashed again.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    stamp = [stat.st_size, stat.st_ino, stat.st_mtime_ns]
    memo_path = memo_root / DIGESTS_NAME
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, UnicodeDecodeError, ValueError):
        memo = {}
    known = memo.get(str(resolved))
    if isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = file_sha256(resolved)
    memo[str(resolved)] = {"stamp": stamp, "sha256": digest}
    try:
        memo_root.mkdir(parents=True, exist_ok=True)
        tmp = memo_root / f".{DIGESTS_NAME}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        tmp.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(tmp, memo_path)
    except OSError:
        pass  # a read-only cache only loses the memo
    return digest


class CacheFolder:
    """The folder side of the cache: where entries live, what they weigh, and eviction.

    The folder is capped at ``max_bytes`` (sum of entry file sizes); past the cap the least
    recently used entries (by mtime) are deleted down to 90 % of it.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if int(max_bytes) < 1:
            raise ValueError(f"the cache size cap must be positive; got {max_bytes} bytes")
        self.root = Path(root).expanduser()
        self.max_bytes = int(max_bytes)
        self._bytes: int | None = None  # running estimate of the folder's size (scan on first write)

    def path(self, key: str) -> Path:
        """Where an entry lives: ``root/<key[:2]>/<key>.npz``."""
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key (use cam_key()): {key!r}")
        return self.root / key[:2] / f"{key}{SUFFIX}"

    def write_atomically(self, key: str, payload: bytes) -> None:
        """Write one entry (temp file, then ``os.replace``) and evict if the cap is passed."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{key}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            with open(tmp, "xb") as handle:
                handle.write(payload)
            previous = _size_or_zero(path)
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if self._bytes is None:
            self._bytes = self.total_bytes()
        else:
            self._bytes += len(payload) - previous
        if self._bytes > self.max_bytes:
            self.evict()

    def entries(self) -> list[tuple[Path, int, float]]:
        """Every entry as (path, size in bytes, mtime); removes stale temp files on the way."""
        found = []
        if not self.root.is_dir():
            return found
        now = time.time()
        for shard in os.scandir(self.root):
            if not shard.is_dir(follow_symlinks=False) or len(shard.name) != 2:
                continue
            for item in os.scandir(shard.path):
                try:
                    stat = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if item.name.endswith(TMP_SUFFIX):
                    if now - stat.st_mtime > STALE_TMP_SECONDS:
                        _unlink_quietly(Path(item.path))
                    continue
                if item.name.endswith(SUFFIX) and item.is_file(follow_symlinks=False):
                    found.append((Path(item.path), stat.st_size, stat.st_mtime))
        return found

    def total_bytes(self) -> int:
        """Sum of the entries' file sizes."""
        return sum(size for _, size, _ in self.entries())

    def evict(self) -> int:
        """Delete least recently used entries until the folder is under 90 % of the cap.

        Returns the number of entries deleted. Safe while other processes use the folder.
        """
        found = sorted(self.entries(), key=lambda item: item[2])
        total = sum(size for _, size, _ in found)
        target = int(self.max_bytes * LOW_WATER)
        removed = 0
        for path, size, _ in found:
            if total <= target:
                break
            _unlink_quietly(path)
            total -= size
            removed += 1
        self._bytes = total
        return removed

    def writable(self) -> str | None:
        """None when entries can be written here; else the reason (the folder, or what blocks it)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe.{uuid.uuid4().hex}{TMP_SUFFIX}"
            with open(probe, "xb"):
                pass
            probe.unlink()
        except OSError as exc:
            return f"the map cache {self.root} cannot be written ({exc.strerror or exc})"
        return None


class CamCache(CacheFolder):
    """A folder of compressed raw maps with a byte cap and least-recently-used eviction.

    ``get(key)`` returns the float32 map or None (a miss: absent, unreadable or corrupt);
    ``put(key, cam, probabilities=None, class_idx=None)`` stores one. Counters ``hits``,
    ``misses`` and ``corrupt`` describe this instance's use.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(root, max_bytes)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.write_error: str | None = None  # why the last write failed (the caller carried on in memory)

    def checkpoint_sha256(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of a checkpoint file, memoised beside the entries (:func:`checkpoint_digest`)."""
        return checkpoint_digest(self.root, path)

    def contains(self, key: str) -> bool:
        """Whether an entry file exists (cheap; it may still turn out corrupt on ``get``)."""
        return self.path(key).is_file()

    def get(self, key: str) -> torch.Tensor | None:
        """The map stored under ``key``, or None."""
        entry = self.get_entry(key)
        return None if entry is None else entry.cam

    def get_entry(self, key: str) -> CachedCam | None:
        """The whole entry under ``key``, or None; a hit refreshes its LRU time."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:  # absent, or unreadable
            self.misses += 1
            return None
        entry = decode_entry(data, key)
        if entry is None:
            self.corrupt += 1
            self.misses += 1
            _unlink_quietly(path)
            return None
        try:
            os.utime(path)
        except OSError:
            pass  # evicted by another process a moment ago: the data read is still good
        self.hits += 1
        return entry

    def put(
        self,
        key: str,
        cam: torch.Tensor | np.ndarray,
        probabilities: torch.Tensor | np.ndarray | None = None,
        class_idx: int | None = None,
    ) -> int:
        """Store a map (atomically); returns the entry's size in bytes.

        Raises ValueError for a map that is not h x w, finite and non-negative.
        """
        payload = encode_entry(key, cam, probabilities, class_idx)
        self.write_atomically(key, payload)
        return len(payload)


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def entry_fits(entry: CachedCam | None, spec: InputSpec, num_classes: int | None = None) -> bool:
    """Whether a cache entry can answer for this input: complete (probabilities and class), a
    map no larger than the network's input, and (when given) ``num_classes`` probabilities."""
    if entry is None or entry.probabilities is None or entry.class_idx is None:
        return False
    height, width = entry.cam.shape
    if not (1 <= height <= spec.size and 1 <= width <= spec.size):
        return False
    return num_classes is None or entry.probabilities.numel() == num_classes


def store_explanation(
    cache: CamCache,
    cam: torch.Tensor,
    probabilities: torch.Tensor,
    class_idx: int,
    is_predicted: bool,
    checkpoint_sha256: str,
    image_sha256: str,
    layer: str,
    spec: InputSpec,
    method: str = DEFAULT_METHOD,
    versus: int | None = None,
) -> None:
    """Put one computed map under its class key, and under the "predicted" alias when
    ``class_idx`` is the model's prediction (the caller says so: with near-tied logits, the
    argmax of rounded probabilities can differ from the model's own)."""
    keys = [cam_key(checkpoint_sha256, image_sha256, layer, class_idx, spec, method, versus)]
    if is_predicted:
        keys.append(cam_key(checkpoint_sha256, image_sha256, layer, None, spec, method, versus))
    for key in keys:
        cache.put(key, cam, probabilities, class_idx)


def __getattr__(name: str) -> object:
    """``cached_explanation`` moved to :func:`mushcam.explain.cached_explanation` (it runs the
    model; this module is storage only); the old import path still finds it."""
    if name == "cached_explanation":
        from mushcam.explain import cached_explanation

        return cached_explanation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
