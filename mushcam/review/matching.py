"""check-data's second stage: the same find in another frame, confirmed by local features and geometry.

The hashes of :mod:`mushcam.review.dedup` miss a copy that was cropped by ~10 %, stretched back
to the original size and stamped with a line of text, and any rotated copy. Two stages:

1. **Propose** (cheap, all pairs): :func:`candidates_from_distances` keeps, from a matrix of
   hash distances, every pair within ``max_bits`` and each photo's ``per_photo`` nearest
   others (a ranking survives a distortion that a fixed threshold does not).
   :func:`propose_pairs` builds that matrix from the photos with the rotated frames' hashes
   added (90, 180, 270 degrees), adds each photo's nearest by colour histogram (Bhattacharyya:
   unchanged by any rotation), and, when given, by embedding cosine (:mod:`mushcam.lookalike`).
2. **Confirm** (per candidate): ORB keypoints (``cv2.ORB``, on CLAHE-equalised grey, so a
   colour shift or a brightness change moves few of them) matched by Hamming distance with
   Lowe's ratio test, then a RANSAC homography::

       confirmed  <=>  inliers >= min_inliers  and  inliers / ratio-test matches >= min_share
                       and the homography maps the frame onto a plausible quadrilateral
                       (convex, area ratio within [1/4, 4])

   A crop, a stretch, a rotation or a text line keeps most keypoints on one plane (the
   photo); two different scenes of the same palette give matches that no single homography
   explains, so few of them are inliers.

Features are computed once per photo within a call. Cost: about 10 ms per photo for the
features and about 2 ms per candidate pair (see docs/lookalike.md for the measured numbers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mushcam.exceptions import MushcamError
from mushcam.review.dedup import fingerprint, thumbnail

FEATURE_SIDE = 480  # photos are matched at about this many pixels on the long side
N_FEATURES = 500
RATIO = 0.8  # Lowe's ratio test
MIN_INLIERS = 20
MIN_SHARE = 0.25
LOOSE_BITS = 12  # candidate pairs: hash distance at most this (dedup's default; no colour check here)
PER_PHOTO = 5  # ... or among a photo's nearest others
AREA_RANGE = (0.25, 4.0)


@dataclass(frozen=True)
class Candidate:
    """A pair to check: positions ``i < j`` in the photo list, their hash distance, why it was proposed."""

    i: int
    j: int
    bits: int
    why: str


@dataclass(frozen=True)
class ConfirmedPair:
    """Two photos of the same find: paths, RANSAC inliers of the ratio-test matches, and the reason in words."""

    path: str
    other_path: str
    inliers: int
    matches: int
    reason: str


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoints (K x 2, pixels of the matched frame), their descriptors (K x 32 uint8), the frame's size."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]


def local_features(rgb: np.ndarray, n_features: int = N_FEATURES) -> LocalFeatures:
    """ORB keypoints of an RGB array (float or uint8), on CLAHE-equalised grey."""
    image = np.clip(np.asarray(rgb), 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey)
    orb = cv2.ORB_create(nfeatures=n_features, fastThreshold=10)
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
    if descriptors is None:
        descriptors = np.zeros((0, 32), dtype=np.uint8)
    return LocalFeatures(points, descriptors, (grey.shape[1], grey.shape[0]))


def _ratio_matches(a: LocalFeatures, b: LocalFeatures, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched point coordinates (M x 2 in a, M x 2 in b) that pass the ratio test."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    src = np.array([a.points[m.queryIdx] for m in good], dtype=np.float32).reshape(-1, 2)
    dst = np.array([b.points[m.trainIdx] for m in good], dtype=np.float32).reshape(-1, 2)
    return src, dst


def plausible(homography: np.ndarray | None, size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether ``homography`` maps the frame onto a convex quadrilateral of comparable area."""
    if homography is None or not np.isfinite(homography).all():
        return False
    w, h = size
    corners = np.array([[[0, 0]], [[w, 0]], [[w, h]], [[0, h]]], dtype=np.float32)
    mapped = cv2.perspectiveTransform(corners, homography).reshape(-1, 2)
    if not np.isfinite(mapped).all() or not cv2.isContourConvex(mapped.astype(np.float32)):
        return False
    ratio = abs(cv2.contourArea(mapped)) / float(other[0] * other[1])
    return AREA_RANGE[0] <= ratio <= AREA_RANGE[1]


def geometric_match(a: LocalFeatures, b: LocalFeatures, ratio: float = RATIO, min_inliers: int = MIN_INLIERS,
                    min_share: float = MIN_SHARE) -> tuple[bool, int, int, str]:
    """(confirmed, inliers, ratio-test matches, reason) for two photos' local features."""
    src, dst = _ratio_matches(a, b, ratio)
    if len(src) < max(min_inliers, 4):
        return False, 0, len(src), f"{len(src)} keypoint matches (fewer than {min_inliers})"
    threshold = max(3.0, 0.01 * float(np.hypot(*b.size)))
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
    inliers = int(mask.sum()) if mask is not None else 0
    share = inliers / len(src)
    if inliers < min_inliers or share < min_share:
        return False, inliers, len(src), f"{inliers} of {len(src)} matches fit one homography"
    if not plausible(homography, a.size, b.size):
        return False, inliers, len(src), "the matches fit only a degenerate homography"
    return True, inliers, len(src), f"ORB + RANSAC: {inliers} of {len(src)} keypoint matches fit one homography"


def _features_of(path: str, side: int, memo: dict[str, LocalFeatures]) -> LocalFeatures:
    if path not in memo:
        memo[path] = local_features(thumbnail(path, side))
    return memo[path]


def confirm_pairs(pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]], side: int = FEATURE_SIDE,
                  min_inliers: int = MIN_INLIERS, min_share: float = MIN_SHARE,
                  progress: Callable[[int, int], None] | None = None) -> list[ConfirmedPair]:
    """The pairs (of photo paths) that show the same find, each with its reason; unreadable photos are skipped.

    Each photo's features are computed once in this call, however many pairs it is in.
    """
    memo: dict[str, LocalFeatures] = {}
    confirmed: list[ConfirmedPair] = []
    for n, (first, second) in enumerate(pairs, 1):
        a, b = os.fspath(first), os.fspath(second)
        try:
            fa, fb = _features_of(a, side, memo), _features_of(b, side, memo)
        except MushcamError:
            continue
        ok, inliers, matches, reason = geometric_match(fa, fb, min_inliers=min_inliers, min_share=min_share)
        if not ok and inliers >= min_inliers // 2:  # a near miss: RANSAC's luck differs the other way round
            ok, inliers, matches, reason = geometric_match(fb, fa, min_inliers=min_inliers, min_share=min_share)
        if ok:
            confirmed.append(ConfirmedPair(a, b, inliers, matches, reason))
        if progress is not None:
            progress(n, len(pairs))
    return confirmed


def candidates_from_distances(matrix: np.ndarray, max_bits: int = LOOSE_BITS, per_photo: int = PER_PHOTO,
                              similarities: Mapping[str, np.ndarray] | None = None) -> list[Candidate]:
    """Pairs to confirm from an (N, N) hash-distance matrix (e.g. :func:`mushcam.review.dedup.distances`):
    within ``max_bits``, or among each photo's ``per_photo`` nearest; and among each photo's
    ``per_photo`` most similar by every (N, N) matrix in ``similarities`` (name -> similarity:
    colour histograms, embedding cosine)."""
    n = len(matrix)
    found: dict[tuple[int, int], Candidate] = {}

    def add(i: int, j: int, why: str) -> None:
        key = (min(i, j), max(i, j))
        if i != j and key not in found:
            found[key] = Candidate(key[0], key[1], int(matrix[key]), why)

    for i, j in zip(*np.nonzero(np.triu(matrix <= max_bits, k=1)), strict=True):
        add(int(i), int(j), f"hash within {max_bits} bits")
    rankings = [("hash", matrix.astype(np.float64))]
    rankings += [(name, -np.asarray(values, dtype=np.float64)) for name, values in (similarities or {}).items()]
    take = min(per_photo, n - 1)
    for what, scores in rankings if take >= 1 else ():
        scores = scores.copy()
        np.fill_diagonal(scores, np.inf)
        nearest = np.argpartition(scores, take - 1, axis=1)[:, :take]
        for i in range(n):
            for j in nearest[i].tolist():
                add(i, int(j), f"among the {per_photo} nearest by {what}")
    return sorted(found.values(), key=lambda c: (c.i, c.j))


def colour_histogram(rgb: np.ndarray, bins: int = 8) -> np.ndarray:
    """The square root of the normalised joint RGB histogram (``bins**3``): the dot product of two is
    their Bhattacharyya coefficient (1 = same colours), unchanged by rotations, crops of the background, text."""
    image = np.clip(np.asarray(rgb), 0, 255).astype(np.uint8)
    hist = cv2.calcHist([image], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).reshape(-1).astype(np.float64)
    return np.sqrt(hist / max(hist.sum(), 1.0)).astype(np.float32)


def rotation_distances(hashes: np.ndarray, rotated: np.ndarray, chunk: int = 128) -> np.ndarray:
    """(N, N) uint8: the min Hamming distance between one photo's whole-frame hashes, as it is and rotated
    (``rotated``: N x R), and any hash of the other (``hashes``: N x H), symmetrised."""
    queries = np.concatenate([hashes[:, :1], rotated], axis=1)
    n = len(hashes)
    out = np.empty((n, n), dtype=np.uint8)
    for start in range(0, n, chunk):
        block = queries[start:start + chunk, None, :, None] ^ hashes[None, :, None, :]
        out[start:start + chunk] = np.bitwise_count(block).min(axis=(2, 3))
    return np.minimum(out, out.T)


def rotated_hashes(rgb: np.ndarray) -> np.ndarray:
    """The whole-frame hash of the thumbnail rotated by 90, 180 and 270 degrees: (3,) uint64."""
    return np.array([fingerprint(np.ascontiguousarray(np.rot90(rgb, k)))[0][0] for k in (1, 2, 3)], dtype=np.uint64)


def photo_hashes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dedup's hashes of the frame and its sub-frames, the whole-frame hashes rotated by 90, 180, 270 degrees)."""
    hashes, _ = fingerprint(rgb)
    return hashes, rotated_hashes(rgb)


def propose_pairs(paths: Sequence[str | os.PathLike[str]], max_bits: int = LOOSE_BITS, per_photo: int = PER_PHOTO,
                  embeddings: np.ndarray | None = None) -> list[Candidate]:
    """Candidate pairs among ``paths`` (positions into it): hashes with rotations, and optionally embeddings (N x D)."""
    hashes, rotated, colours = [], [], []
    for path in paths:
        rgb = thumbnail(path)
        whole, turns = photo_hashes(rgb)
        hashes.append(whole)
        rotated.append(turns)
        colours.append(colour_histogram(rgb))
    if not hashes:
        return []
    return propose_from(np.stack(hashes), np.stack(rotated), np.stack(colours), max_bits, per_photo, embeddings)


def propose_from(hashes: np.ndarray, rotated: np.ndarray, histograms: np.ndarray, max_bits: int = LOOSE_BITS,
                 per_photo: int = PER_PHOTO, embeddings: np.ndarray | None = None) -> list[Candidate]:
    """:func:`propose_pairs` from fingerprints already computed (N x H hashes, N x 3 rotated, N x B histograms):
    for a caller that decoded the photos once already (check-data)."""
    matrix = rotation_distances(hashes, rotated)
    similarities = {"colour histogram": histograms @ histograms.T}
    if embeddings is not None:
        units = np.asarray(embeddings, dtype=np.float32)
        units = units / np.maximum(np.linalg.norm(units, axis=1, keepdims=True), 1e-30)
        similarities["embedding"] = units @ units.T
    return candidates_from_distances(matrix, max_bits, per_photo, similarities)


def find_same_finds(paths: Sequence[str | os.PathLike[str]], max_bits: int = LOOSE_BITS, per_photo: int = PER_PHOTO,
                    embeddings: np.ndarray | None = None, min_inliers: int = MIN_INLIERS,
                    min_share: float = MIN_SHARE) -> list[ConfirmedPair]:
    """Both stages: propose candidates among ``paths``, then confirm them geometrically."""
    names = [os.fspath(p) for p in paths]
    candidates = propose_pairs(names, max_bits, per_photo, embeddings)
    return confirm_pairs([(names[c.i], names[c.j]) for c in candidates], min_inliers=min_inliers, min_share=min_share)


__all__ = [
    "Candidate",
    "ConfirmedPair",
    "LocalFeatures",
    "candidates_from_distances",
    "colour_histogram",
    "confirm_pairs",
    "find_same_finds",
    "geometric_match",
    "local_features",
    "photo_hashes",
    "plausible",
    "propose_pairs",
    "rotation_distances",
]
