"""Past EXACT_LIMIT photos the look-alike search runs block by block: same answers, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mushcam.lookalike import search
from mushcam.lookalike.search import SearchError, nearest, nearest_chunked
from mushcam.lookalike.store import EmbeddingIndex, unit_rows


def made_index(n: int, width: int = 6, seed: int = 0, dtype: str = "float32") -> EmbeddingIndex:
    """n random rows, every fifth one a copy of an earlier one (exact ties), over classes A, B, C."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, width))
    features[::5] = features[1::5][: len(features[::5])] if n > 1 else features[::5]
    units, norms = unit_rows(features)
    labels = tuple("ABC"[i % 3] for i in range(n))
    return EmbeddingIndex("k" * 64, units.astype(dtype), tuple(f"train/{lab}/{i}.jpg" for i, lab in enumerate(labels)),
                          tuple(f"{i:064x}" for i in range(n)), labels, norms)


def rows(found: list) -> list[int]:
    return [n.row for n in found]


def same(chunked: list, whole: list) -> bool:
    """The same photos in the same order, similarities within 1e-6 (BLAS may round a short block's
    matrix-vector product differently from a long one's, by an ulp)."""
    return rows(chunked) == rows(whole) and all(abs(a.similarity - b.similarity) < 1e-6
                                                for a, b in zip(chunked, whole, strict=True))


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_the_chunked_search_gives_exactly_the_whole_index_answer(chunk: int) -> None:
    index = made_index(500)
    rng = np.random.default_rng(1)
    for _ in range(5):
        query = rng.normal(size=6)
        for classes, banned in ((None, ()), (["B"], ()), ({"A", "C"}, {index.sha256s[3], index.sha256s[10]})):
            whole = nearest(query, index, k=9, classes=classes, exclude_sha256=banned)
            chunked = nearest_chunked(query, index, k=9, classes=classes, exclude_sha256=banned, chunk_rows=chunk)
            assert same(chunked, whole) and len(whole) == 9
    query = index.vectors[1].astype(np.float64)  # ties: rows 0 and 1 are the same photo embedding
    assert [n.row for n in nearest_chunked(query, index, k=2, chunk_rows=3)][:2] == [0, 1]
    assert nearest_chunked(query, index, k=3, classes=["Z"], chunk_rows=3) == []


def test_past_the_exact_limit_nearest_runs_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    index = made_index(300)
    query = np.random.default_rng(2).normal(size=6)
    expected = rows(nearest(query, index, k=5, classes=["C"]))
    calls = []
    original = search.nearest_chunked
    monkeypatch.setattr(search, "EXACT_LIMIT", 100)
    monkeypatch.setattr(search, "nearest_chunked", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    assert rows(search.nearest(query, index, k=5, classes=["C"])) == expected
    assert calls == [1]


def test_the_chunked_search_memory_does_not_grow_with_the_index() -> None:
    index = made_index(300_000, width=4)
    query = np.ones(4)

    def peak(call) -> int:  # noqa: ANN001
        tracemalloc.start()
        try:
            call()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole = peak(lambda: nearest(query, index, k=5, classes=["A", "B"]))
    chunked = peak(lambda: nearest_chunked(query, index, k=5, classes=["A", "B"], chunk_rows=2048))
    assert whole > 1_200_000  # 300,000 float32 scores and 300,000 flags at least
    assert chunked < 150_000, chunked  # one block of 2,048 rows' scores and flags, and the best 5
    assert rows(nearest_chunked(query, index, k=5, classes=["A", "B"], chunk_rows=2048)) == rows(
        nearest(query, index, k=5, classes=["A", "B"]))


def test_a_bad_chunk_size_is_a_search_error() -> None:
    with pytest.raises(SearchError, match="chunk_rows must be at least 1"):
        nearest_chunked(np.ones(6), made_index(10), chunk_rows=0)
