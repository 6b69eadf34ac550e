"""The on-disk CAM cache: keys, float16 storage of tiny maps, hits, misses, corruption, LRU."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_image

from mushcam import cache as cache_module
from mushcam.cache import CamCache, cam_key, quantize, roundtrip
from mushcam.explain import cached_explanation
from mushcam.manifest import InputSpec
from mushcam.models import build_model

SPEC = InputSpec(size=64)
CKPT = "c" * 64
IMG = "a" * 64


def random_map(seed: int = 0, scale: float = 1.0, shape: tuple[int, int] = (7, 7)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * scale


def key(n: int = 0) -> str:
    return cam_key(CKPT, f"{n:064x}", "layer4", 1, SPEC)


def test_tiny_map_survives_float16_storage(tmp_path: Path) -> None:
    cam = random_map(scale=1e-15)  # what random-init EfficientNet-B0 produces
    assert torch.count_nonzero(cam.half()) == 0  # the trap: a plain float16 cast gives all zeros
    store = CamCache(tmp_path)
    store.put(key(), cam)
    back = store.get(key())
    assert back is not None and back.dtype == torch.float32 and back.shape == cam.shape
    # float16 keeps 11 significant bits of cam / max: error at most 2**-11 of the peak
    assert float((back - cam).abs().max()) <= 2**-11 * float(cam.max())
    assert float(back.max()) == pytest.approx(float(cam.max()), rel=1e-6)
    big = cam > 0.01 * cam.max()
    assert float(((back - cam).abs()[big] / cam[big]).max()) <= 2**-10  # relative precision where it matters


def test_zero_map_and_invalid_maps(tmp_path: Path) -> None:
    store = CamCache(tmp_path)
    store.put(key(), torch.zeros(7, 7))
    assert torch.equal(store.get(key()), torch.zeros(7, 7))
    with pytest.raises(ValueError, match="non-finite"):
        store.put(key(1), torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="negative"):
        store.put(key(1), torch.tensor([[1.0, -0.5]]))
    with pytest.raises(ValueError, match="h x w"):
        store.put(key(1), torch.ones(1, 7, 7))
    assert store.get(key(1)) is None


def test_roundtrip_equals_what_the_cache_returns(tmp_path: Path) -> None:
    cam = random_map(3, scale=37.0)
    store = CamCache(tmp_path)
    store.put(key(), cam)
    assert torch.equal(store.get(key()), roundtrip(cam))
    normalised, scale = quantize(cam)
    assert (
        normalised.dtype == np.float16 and float(normalised.max()) == 1.0 and scale == pytest.approx(float(cam.max()))
    )


def test_hit_miss_and_entry_contents(tmp_path: Path) -> None:
    store = CamCache(tmp_path)
    assert store.get(key()) is None and store.misses == 1 and store.hits == 0
    probabilities = torch.tensor([0.1, 0.7, 0.2])
    store.put(key(), random_map(), probabilities, class_idx=1)
    entry = store.get_entry(key())
    assert entry is not None and store.hits == 1
    assert torch.equal(entry.probabilities, probabilities) and entry.class_idx == 1
    assert store.contains(key()) and not store.contains(key(9))
    store.put(key(2), random_map())
    bare = store.get_entry(key(2))
    assert bare is not None and bare.probabilities is None and bare.class_idx is None


def test_key_depends_on_every_input() -> None:
    base = cam_key(CKPT, IMG, "layer4", 1, SPEC)
    variants = [
        cam_key("d" * 64, IMG, "layer4", 1, SPEC),
        cam_key(CKPT, "b" * 64, "layer4", 1, SPEC),
        cam_key(CKPT, IMG, "layer3", 1, SPEC),
        cam_key(CKPT, IMG, "layer4", 2, SPEC),
        cam_key(CKPT, IMG, "layer4", None, SPEC),
        cam_key(CKPT, IMG, "layer4", 1, InputSpec(size=224)),
        cam_key(CKPT, IMG, "layer4", 1, InputSpec(size=64, resize="center_crop")),
        cam_key(CKPT, IMG, "layer4", 1, InputSpec(size=64, mean=(0.5, 0.5, 0.5))),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert base == cam_key(CKPT, IMG, "layer4", 1, InputSpec(size=64))  # stable
    assert len(base) == 64 and int(base, 16) >= 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip", "wrong_dtype", "pickle"])
def test_corrupt_entry_is_a_miss_and_is_removed(tmp_path: Path, damage: str) -> None:
    store = CamCache(tmp_path)
    cam = random_map(1)
    store.put(key(), cam, torch.tensor([0.5, 0.5]), 0)
    path = store.path(key())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flip":  # one byte inside the compressed payload: zip's CRC catches it
        middle = bytearray(data)
        start = data.index(b"cam.npy") + 40
        middle[start] ^= 0xFF
        path.write_bytes(bytes(middle))
    elif damage == "wrong_dtype":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, cam=np.ones((7, 7), np.float64), scale=np.float32(1.0))
        path.write_bytes(buffer.getvalue())
    elif damage == "pickle":
        buffer = io.BytesIO()
        np.savez(buffer, cam=np.array([object()], dtype=object), scale=np.float32(1.0))
        path.write_bytes(buffer.getvalue())
    assert store.get(key()) is None
    assert store.corrupt == 1 and not path.exists()
    store.put(key(), cam)  # recomputed and stored again
    assert torch.equal(store.get(key()), roundtrip(cam))


def test_failed_write_leaves_the_old_entry_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CamCache(tmp_path)
    old = random_map(1)
    store.put(key(), old)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(key(), random_map(2))
    monkeypatch.undo()
    assert torch.equal(store.get(key()), roundtrip(old))
    assert [p.name for p in store.path(key()).parent.iterdir()] == [store.path(key()).name]


def test_lru_eviction_keeps_recently_used_entries_under_the_cap(tmp_path: Path) -> None:
    probe = CamCache(tmp_path / "probe")
    size = probe.put(key(), random_map())
    store = CamCache(tmp_path / "cache", max_bytes=int(size * 3.2))  # 3 entries fit, 4 do not; 90 % holds 2
    for n in range(3):
        store.put(key(n), random_map(n))
        os.utime(store.path(key(n)), (1_000_000 + n, 1_000_000 + n))  # n = 0 is the oldest
    assert store.get(key(0)) is not None  # a hit makes entry 0 the most recently used
    store.put(key(3), random_map(3))  # 4 entries > cap: evict down to 90 % of it
    assert store.total_bytes() <= store.max_bytes * 0.9
    survivors = {n for n in range(4) if store.contains(key(n))}
    assert survivors == {0, 3}  # 1 and 2 were least recently used
    stale = store.path(key(0)).parent / ".dead-writer.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    store.entries()
    assert not stale.exists()  # a temp file of a writer that died long ago is cleaned up


def test_cap_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        CamCache(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="not a cache key"):
        CamCache(tmp_path).get("../../etc/passwd")


def test_cached_explanation_calls_the_model_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_large", 4).eval()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    store = CamCache(tmp_path)
    image = make_image(80, 60, seed=4)
    args = (SPEC, "features.16")
    first = cached_explanation(store, model, image, *args, None, CKPT, IMG)
    assert len(calls) == 1
    again = cached_explanation(store, model, image, *args, None, CKPT, IMG)
    explicit = cached_explanation(store, model, image, *args, first.class_idx, CKPT, IMG)  # found via the alias's twin
    assert len(calls) == 1
    for other in (again, explicit):
        assert torch.equal(other.cam, first.cam) and torch.equal(other.probabilities, first.probabilities)
        assert other.class_idx == first.class_idx
    assert torch.equal(first.cam, roundtrip(first.cam))  # the fresh result is already the stored form
    cached_explanation(store, model, image, *args, (first.class_idx + 1) % 4, CKPT, IMG)
    assert len(calls) == 2  # another class is another map


def test_checkpoint_hash_is_memoised_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mushcam.models import file_sha256

    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights v1" * 1000)
    store = CamCache(tmp_path / "cache")
    calls = []

    def counting(path: object) -> str:
        calls.append(path)
        return file_sha256(path)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_module, "file_sha256", counting)
    first = store.checkpoint_sha256(weights)
    assert first == file_sha256(weights) and len(calls) == 1
    assert CamCache(tmp_path / "cache").checkpoint_sha256(weights) == first and len(calls) == 1  # another process
    weights.write_bytes(b"weights v2" * 1000)  # same size, new content and mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    second = store.checkpoint_sha256(weights)
    assert second == file_sha256(weights) != first and len(calls) == 2
    (tmp_path / "cache" / "checkpoints.json").write_text("{not json")  # a damaged memo is only a miss
    assert store.checkpoint_sha256(weights) == second and len(calls) == 3
