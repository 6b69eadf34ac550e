"""Strategy clusters of one model x class, with their numbers and shortcut flags.

A class's photos are those the model calls that class (``group_by="predicted"``: what makes
the model say it) or those that truly are (``"true"``: how the model sees it). Their maps
are clustered (:mod:`mushcam.patterns.cluster`); each cluster gets its size, accuracy (share
of members whose prediction is their true class), mean confidence, mean map, typical photos
(the members closest to the cluster's mean vector, by cosine) and flags
(:mod:`mushcam.patterns.shortcuts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mushcam.exceptions import MushcamError
from mushcam.patterns.cluster import DEFAULT_MAX_K, map_vectors, spectral_clusters
from mushcam.patterns.focus import PhotoFocus
from mushcam.patterns.maps import ModelMaps, PhotoMap
from mushcam.patterns.shortcuts import Flag, cluster_flags, mass_distribution

GROUPINGS = ("predicted", "true")
TYPICAL = 6


@dataclass(frozen=True)
class StrategyCluster:
    """One cluster of a model x class."""

    index: int
    paths: tuple[str, ...]
    accuracy: float
    mean_confidence: float
    mean_map: np.ndarray  # GRID x GRID, sums to 1
    typical: tuple[str, ...]
    flags: tuple[Flag, ...]
    predicted: tuple[str, ...]  # each member's predicted class name

    @property
    def size(self) -> int:
        return len(self.paths)

    @property
    def shortcut(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict[str, object]:
        return {
            "cluster": self.index, "size": self.size, "accuracy": self.accuracy,
            "mean_confidence": self.mean_confidence, "paths": list(self.paths), "typical": list(self.typical),
            "flags": (["shortcut"] if self.flags else []),
            "reasons": [{"kind": f.kind, "value": f.value, "reason": f.reason} for f in self.flags],
        }


@dataclass(frozen=True)
class EmbeddedPhoto:
    """A point of the 2-D embedding."""

    path: str
    x: float
    y: float
    cluster: int
    correct: bool
    confidence: float


@dataclass(frozen=True)
class ClassStrategies:
    model: str
    class_name: str
    group_by: str
    k: int
    eigenvalues: tuple[float, ...]
    clusters: tuple[StrategyCluster, ...]
    points: tuple[EmbeddedPhoto, ...]

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "class": self.class_name, "group_by": self.group_by, "k": self.k,
                "eigenvalues": list(self.eigenvalues),
                "clusters": [{"model": self.model, "class": self.class_name, **c.to_dict()} for c in self.clusters]}


def class_members(maps: ModelMaps, class_idx: int, group_by: str) -> list[PhotoMap]:
    """The photos of ``class_idx`` by prediction or by truth."""
    if group_by not in GROUPINGS:
        raise MushcamError(f"group by one of {', '.join(GROUPINGS)}; got {group_by!r}")
    field = "predicted_idx" if group_by == "predicted" else "true_idx"
    return [m for m in maps.maps if getattr(m, field) == class_idx]


def class_strategies(
    maps: ModelMaps,
    class_names: Sequence[str],
    class_idx: int,
    group_by: str = "predicted",
    focus: Mapping[str, PhotoFocus] | None = None,
    max_k: int = DEFAULT_MAX_K,
    seed: int = 0,
) -> ClassStrategies:
    """Cluster the maps of one class and describe every cluster."""
    members = class_members(maps, class_idx, group_by)
    vectors = map_vectors([m.cam for m in members])
    clustering = spectral_clusters(vectors, max_k, seed)
    distributions = np.array([mass_distribution(m.cam) for m in members]) if members else np.zeros((0, 1, 1))
    clusters = []
    for index in range(clustering.k if members else 0):
        chosen = np.flatnonzero(clustering.labels == index)
        clusters.append(_describe(index, [members[i] for i in chosen], vectors[chosen], distributions[chosen],
                                  class_names, focus or {}))
    points = tuple(EmbeddedPhoto(m.relpath, float(x), float(y), int(label), m.correct, m.confidence)
                   for m, (x, y), label in zip(members, clustering.embedding, clustering.labels, strict=True))
    return ClassStrategies(maps.model, class_names[class_idx], group_by, clustering.k if members else 0,
                           tuple(float(v) for v in clustering.eigenvalues), tuple(clusters), points)


def _describe(index: int, members: list[PhotoMap], vectors: np.ndarray, distributions: np.ndarray,
              class_names: Sequence[str], focus: Mapping[str, PhotoFocus]) -> StrategyCluster:
    predicted = [class_names[m.predicted_idx] for m in members]
    regions = [focus.get(m.relpath) for m in members]
    flags = cluster_flags(distributions, predicted, [f.energy if f else None for f in regions],
                          [f.uniform if f else None for f in regions])
    centre = vectors.mean(axis=0)
    closeness = vectors @ centre / max(float(np.linalg.norm(centre)), 1e-12)
    typical = tuple(members[i].relpath for i in np.argsort(-closeness, kind="stable")[:TYPICAL])
    return StrategyCluster(
        index, tuple(m.relpath for m in members), float(np.mean([m.correct for m in members])),
        float(np.mean([m.confidence for m in members])), distributions.mean(axis=0), typical, tuple(flags),
        tuple(predicted),
    )
