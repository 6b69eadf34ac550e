"""Nearest training photos by cosine similarity, on made embeddings whose neighbours are known."""

from __future__ import annotations

import numpy as np
import pytest

from mushcam.lookalike.search import SearchError, nearest, similarities
from mushcam.lookalike.store import EmbeddingIndex, unit_rows


def _index(features: np.ndarray, labels: list[str], dtype: str = "float32") -> EmbeddingIndex:
    units, norms = unit_rows(features)
    n = len(labels)
    return EmbeddingIndex("k" * 64, units.astype(dtype), tuple(f"train/{lab}/{i}.jpg" for i, lab in enumerate(labels)),
                          tuple(f"{i:064x}" for i in range(n)), tuple(labels), norms)


def test_nearest_finds_the_known_neighbours_in_order_with_cosine_distances() -> None:
    # Rows at known angles from the query (e0): 0, 10, 30, 60, 90 and 180 degrees, with varied norms.
    angles = np.radians([60, 0, 90, 10, 180, 30])
    norms = np.array([[3], [0.5], [7], [2], [1], [9]])
    features = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1) * norms
    index = _index(features, ["A", "A", "B", "A", "B", "B"])
    found = nearest(np.array([5.0, 0.0, 0.0]), index, k=4)
    assert [n.row for n in found] == [1, 3, 5, 0]
    assert [round(n.distance, 6) for n in found] == [round(1 - np.cos(np.radians(a)), 6) for a in (0, 10, 30, 60)]
    assert all(abs(n.similarity + n.distance - 1) < 1e-6 for n in found)


def test_classes_restrict_the_search_and_excluded_photos_are_never_returned() -> None:
    angles = np.radians([0, 5, 20, 40, 80])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    index = _index(features, ["A", "B", "A", "B", "A"])
    assert [n.row for n in nearest(np.array([1.0, 0.0]), index, k=2, classes=["B"])] == [1, 3]
    assert [n.label for n in nearest(np.array([1.0, 0.0]), index, k=9, classes={"A"})] == ["A", "A", "A"]
    excluded = nearest(np.array([1.0, 0.0]), index, k=2, exclude_sha256={index.sha256s[0]})
    assert [n.row for n in excluded] == [1, 2]
    assert nearest(np.array([1.0, 0.0]), index, k=3, classes=["C"]) == []


def test_float16_rows_give_the_same_neighbours_as_exact_search_on_random_embeddings() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 64)) * 1e-12  # tiny features, as a random network gives: unit rows keep them
    labels = [("A", "B", "C")[i % 3] for i in range(3000)]
    query = features[17] + rng.normal(size=64) * 1e-14
    exact = features @ query / (np.linalg.norm(features, axis=1) * np.linalg.norm(query))
    expected = np.argsort(-exact)[:5]
    found = nearest(query, _index(features, labels, "float16"), k=5)
    assert found[0].row == 17
    assert [n.row for n in found][:3] == expected[:3].tolist()
    assert np.allclose([n.similarity for n in found], exact[expected], atol=2e-3)


def test_search_scans_in_blocks_with_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    index = _index(rng.normal(size=(500, 16)), ["A"] * 500)
    query = rng.normal(size=16)
    whole = similarities(query, index)
    monkeypatch.setattr("mushcam.lookalike.search.BLOCK_ROWS", 7)
    assert np.allclose(similarities(query, index), whole, atol=1e-6)


def test_a_query_of_the_wrong_width_or_not_finite_is_refused() -> None:
    index = _index(np.eye(3), ["A", "B", "C"])
    with pytest.raises(SearchError, match="4 features"):
        nearest(np.ones(4), index)
    with pytest.raises(SearchError, match="non-finite"):
        nearest(np.array([np.nan, 0, 0]), index)
    assert nearest(np.ones(3), index, k=0) == []
