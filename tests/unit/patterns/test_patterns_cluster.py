"""Strategy clusters and shortcut measures on inputs with known structure."""

from __future__ import annotations

import numpy as np

from mushcam.patterns.cluster import map_vectors, spectral_clusters
from mushcam.patterns.shortcuts import cluster_flags, mass_distribution, region_masses


def _templates() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((12, 12), dtype=np.float32)
    a[1:4, 1:4] = 1.0
    b = np.zeros((12, 12), dtype=np.float32)
    b[6:10, 5:10] = 1.0
    return a, b


def test_maps_drawn_from_two_templates_come_back_as_two_clusters():
    rng = np.random.default_rng(0)
    a, b = _templates()
    truth = rng.integers(0, 2, size=50)
    maps = [(a if t == 0 else b) * rng.uniform(0.5, 5) + rng.uniform(0, 0.15, (12, 12)) for t in truth]
    found = spectral_clusters(map_vectors(maps))
    assert found.k == 2
    assert len(set(zip(found.labels.tolist(), truth.tolist(), strict=True))) == 2  # a one-to-one match
    assert found.embedding.shape == (50, 2)
    first = found.embedding[truth == 0, 0]
    second = found.embedding[truth == 1, 0]
    assert first.max() < second.min() or second.max() < first.min()  # the embedding separates them too


def test_one_template_is_one_cluster_and_tiny_inputs_do_not_fail():
    rng = np.random.default_rng(1)
    a, _ = _templates()
    maps = [a * rng.uniform(0.5, 2) + rng.uniform(0, 0.15, (12, 12)) for _ in range(30)]
    assert spectral_clusters(map_vectors(maps)).k == 1
    assert spectral_clusters(map_vectors(maps[:2])).k == 1
    assert spectral_clusters(map_vectors([])).labels.shape == (0,)
    assert spectral_clusters(map_vectors([np.zeros((7, 7))] * 5)).labels.shape == (5,)


def test_border_and_corner_masses_and_flags():
    corner = np.zeros((64, 64))
    corner[-10:, -10:] = 1.0
    masses = region_masses(mass_distribution(corner))
    assert masses["bottom-right"] > 0.99 and masses["top-left"] < 1e-6
    flags = cluster_flags(np.array([mass_distribution(corner)] * 4), ["Gyromitra"] * 3 + ["Amanita"])
    assert {f.kind for f in flags} >= {"corner", "border", "same_location"}
    called = "3 of its 4 photos are called Gyromitra"
    assert any("bottom-right corner" in f.reason and called in f.reason for f in flags)
    flat = np.ones((64, 64))
    assert cluster_flags(np.array([mass_distribution(flat)] * 4), ["A"] * 4) == []
    assert cluster_flags(np.array([mass_distribution(corner)] * 2), ["A"] * 2) == []  # too few photos


def test_outside_object_flag_needs_regions_and_compares_with_a_uniform_map():
    spot = np.zeros((64, 64))
    spot[20:40, 20:40] = 1.0
    maps = np.array([mass_distribution(spot)] * 4)
    assert not [f for f in cluster_flags(maps, ["A"] * 4) if f.kind == "outside_object"]
    flags = cluster_flags(maps, ["A"] * 4, [0.05, 0.1, 0.05, None], [0.3, 0.3, 0.3, None])
    outside = [f for f in flags if f.kind == "outside_object"]
    assert outside and "outside the object" in outside[0].reason
    assert not [f for f in cluster_flags(maps, ["A"] * 4, [0.8] * 4, [0.3] * 4) if f.kind == "outside_object"]
    at_chance = cluster_flags(maps, ["A"] * 4, [0.28] * 4, [0.3] * 4)  # a flat map's share: not a shortcut
    assert not [f for f in at_chance if f.kind == "outside_object"]


def test_many_maps_take_the_lanczos_path_and_agree_with_the_dense_solver(monkeypatch):
    from mushcam.patterns import cluster

    rng = np.random.default_rng(2)
    a, b = _templates()
    truth = rng.integers(0, 2, size=cluster.DENSE_UP_TO + 40)
    vectors = map_vectors([(a if t == 0 else b) * rng.uniform(0.5, 3) + rng.uniform(0, 0.3, (12, 12)) for t in truth])
    sparse = spectral_clusters(vectors)
    monkeypatch.setattr(cluster, "DENSE_UP_TO", 10**6)
    dense = spectral_clusters(vectors)
    assert sparse.k == dense.k == 2
    assert np.allclose(sparse.eigenvalues, dense.eigenvalues, atol=1e-6)
    assert np.array_equal(sparse.labels, dense.labels)
