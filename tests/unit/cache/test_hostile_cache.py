"""Hostile map-cache entries: whatever a cache file holds, an entry that does not answer this key is a miss.

Moved from the hostile-input catalogue (tests/unit/cli/test_hostile_inputs.py), which keeps the
cache cases that go through the command line.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from mushcam import cache as cam_cache


def _entry(cache: cam_cache.CamCache, entry_key: str, **arrays: np.ndarray | None) -> None:
    base = {"cam": np.full((2, 2), 0.5, dtype=np.float16), "scale": np.asarray(2.0, dtype=np.float32),
            "probabilities": np.full(4, 0.25, dtype=np.float32), "class_idx": np.asarray(1, dtype=np.int64),
            "key": np.asarray(entry_key)}
    base.update(arrays)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: v for k, v in base.items() if v is not None})
    path = cache.path(entry_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


KEY = "ab" + "0" * 62


OTHER = "cd" + "1" * 62


def _copied_from_other_key(cache):
    _entry(cache, OTHER)
    cache.path(KEY).parent.mkdir(parents=True, exist_ok=True)
    cache.path(KEY).write_bytes(cache.path(OTHER).read_bytes())


CACHE_CASES = {
    "entry-written-for-another-key": _copied_from_other_key,
    "entry-without-its-key": lambda cache: _entry(cache, KEY, key=None),
    "truncated-entry": lambda cache: (_entry(cache, KEY),
                                      cache.path(KEY).write_bytes(cache.path(KEY).read_bytes()[:40])),
    "garbage-entry": lambda cache: (cache.path(KEY).parent.mkdir(parents=True),
                                    cache.path(KEY).write_bytes(os.urandom(300))),
    "pickled-entry": lambda cache: (cache.path(KEY).parent.mkdir(parents=True),
                                    np.savez(cache.path(KEY), cam=np.array([object()], dtype=object))),
    "negative-map": lambda cache: _entry(cache, KEY, cam=np.full((2, 2), -0.5, dtype=np.float16)),
    "nan-scale": lambda cache: _entry(cache, KEY, scale=np.asarray(np.nan, dtype=np.float32)),
    "class-beyond-probabilities": lambda cache: _entry(cache, KEY, class_idx=np.asarray(9, dtype=np.int64)),
}


@pytest.mark.parametrize("name", list(CACHE_CASES))
def test_a_cache_entry_that_does_not_answer_this_key_is_a_miss(name: str, tmp_path: Path) -> None:
    cache = cam_cache.CamCache(tmp_path / "cache")
    CACHE_CASES[name](cache)
    assert cache.get_entry(KEY) is None
    assert cache.misses == 1 and cache.hits == 0
