"""check-data's second stage (ORB + RANSAC, :mod:`mushcam.review.matching`) on made photos and on the shared set.

Made set: ``--originals`` textured scenes from one palette (brown ground, grass, leaves, pale
caps), and for a quarter of them each of four copies: cropped by ~10 % and stretched back with
a text line, rotated, text line only, colour-shifted. Ground truth: each copy with its
original. Reports precision and recall of the hash stage alone (dedup's default threshold)
and of the two stages, and the time of each stage; then (``--real``) the time on the shared
photos, read-only.

    python benchmarks/bench_matching.py [--originals 160] [--real ../shared/data/mushrooms]
        [--skip-made] [--skip-real] [--search 100000] [--embed mobilenet_v3_large]

``--search ROWS`` times exact cosine search over ROWS made 2,048-wide float16 embeddings;
``--embed ARCH`` times the look-alike embeddings of ``--real``'s train split for a random-init
ARCH at 224 px, cold (computed) and warm (read back from disk).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mushcam.review import matching  # noqa: E402
from mushcam.review.dedup import colour_diff, distances, fingerprint, thumbnail  # noqa: E402

PALETTE = {  # RGB
    "ground": [(92, 64, 40), (70, 50, 32), (120, 90, 60)],
    "grass": [(70, 110, 40), (95, 130, 50), (60, 90, 35)],
    "cap": [(230, 215, 190), (200, 170, 130), (180, 120, 70)],
}
VARIANTS = ("crop_stretch_text", "rotated", "text", "colour")


def make_scene(seed: int, width: int = 400, height: int = 300) -> np.ndarray:
    """An RGB uint8 forest-floor scene: noisy ground, grass blades, leaves, 1-3 mushrooms with spots."""
    rng = np.random.default_rng(seed)
    base = np.array(PALETTE["ground"][rng.integers(3)], dtype=np.float32)
    low = cv2.resize(rng.normal(0, 18, (height // 20, width // 20, 3)).astype(np.float32), (width, height))
    image = np.clip(base + low + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(25, 60))):  # leaves
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(rng.integers(6, 22)), int(rng.integers(3, 10)))
        colour = tuple(int(c) for c in np.array(PALETTE["ground"][rng.integers(3)]) + rng.integers(-25, 40, 3))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    for _ in range(int(rng.integers(40, 90))):  # grass blades
        x, y = int(rng.integers(width)), int(rng.integers(height))
        tip = (x + int(rng.integers(-25, 25)), y - int(rng.integers(15, 60)))
        colour = tuple(int(c) for c in PALETTE["grass"][rng.integers(3)])
        cv2.line(image, (x, y), tip, colour, int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(1, 4))):  # mushrooms: stem, cap, spots
        cx, cy = int(rng.integers(width // 5, 4 * width // 5)), int(rng.integers(height // 3, 4 * height // 5))
        r = int(rng.integers(25, 55))
        cv2.rectangle(image, (cx - r // 5, cy), (cx + r // 5, cy + r), (225, 215, 200), -1)
        cap = tuple(int(c) for c in PALETTE["cap"][rng.integers(3)])
        cv2.ellipse(image, (cx, cy), (r, int(r * 0.6)), 0, 180, 360, cap, -1)
        for _ in range(int(rng.integers(3, 10))):
            sx, sy = cx + int(rng.integers(-r + 8, r - 8)), cy - int(rng.integers(4, int(r * 0.5)))
            cv2.circle(image, (sx, sy), int(rng.integers(2, 5)), (245, 240, 230), -1)
    return image


def stamp_text(image: np.ndarray, text: str = "(c) stock-photo.example 2024") -> np.ndarray:
    """A copy with a white text line near the bottom (a watermark)."""
    out = image.copy()
    h, w = out.shape[:2]
    cv2.putText(out, text, (int(0.05 * w), int(0.92 * h)), cv2.FONT_HERSHEY_SIMPLEX, w / 700, (255, 255, 255), 2,
                cv2.LINE_AA)
    return out


def crop_stretch(image: np.ndarray, keep_x: float = 0.88, keep_y: float = 0.92) -> np.ndarray:
    """The central-ish ``keep`` part (an off-centre ~10 % crop), resized back to the full size: slightly stretched."""
    h, w = image.shape[:2]
    cw, ch = int(w * keep_x), int(h * keep_y)
    x0, y0 = int((w - cw) * 0.3), int((h - ch) * 0.6)
    return cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about the centre (multiples of 90 exactly; other angles with reflected borders)."""
    if degrees % 90 == 0:
        return np.ascontiguousarray(np.rot90(image, int(degrees // 90)))
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def colour_shift(image: np.ndarray) -> np.ndarray:
    """Warmer and brighter: per-channel gains and an offset, as a different camera's white balance."""
    gains = np.array([1.18, 1.02, 0.78], dtype=np.float32)
    return np.clip(image.astype(np.float32) * gains + 12, 0, 255).astype(np.uint8)


def variant(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """One of :data:`VARIANTS` of ``image``."""
    if kind == "crop_stretch_text":
        return stamp_text(crop_stretch(image))
    if kind == "rotated":
        return rotate(image, (12.0, 90.0, -8.0, 180.0)[seed % 4])
    if kind == "text":
        return stamp_text(image)
    if kind == "colour":
        return colour_shift(image)
    raise ValueError(kind)


def write_set(folder: Path, originals: int) -> tuple[list[Path], set[tuple[str, str]]]:
    """The made set as JPEGs (quality 90) and its true pairs (by file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, truth = [], set()
    for n in range(originals):
        scene = make_scene(n)
        original = folder / f"scene_{n:03d}.jpg"
        cv2.imwrite(str(original), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(original)
        if n % 4 == 0:
            kind = VARIANTS[(n // 4) % len(VARIANTS)]
            copy = folder / f"scene_{n:03d}_{kind}.jpg"
            cv2.imwrite(str(copy), cv2.cvtColor(variant(scene, kind, n // 16), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(copy)
            truth.add((original.name, copy.name))
    return paths, truth


def _score(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    hits = len(found & truth)
    return {"found": len(found), "true": len(truth), "correct": hits,
            "precision": hits / len(found) if found else 1.0, "recall": hits / len(truth) if truth else 1.0}


def _kind(name: str) -> str:
    """The kind of copy a made file is (``scene_004_rotated.jpg`` -> ``rotated``; an original -> ``""``)."""
    return name[len("scene_000_"):-len(".jpg")] if name.count("_") >= 2 else ""


def hash_stage(paths: list[Path]) -> set[tuple[str, str]]:
    """dedup's own rule at its defaults (12 bits, colour within 24)."""
    prints = [fingerprint(thumbnail(p)) for p in paths]
    matrix = distances(np.stack([h for h, _ in prints]))
    found = set()
    for i, j in zip(*np.nonzero(np.triu(matrix <= 12, k=1)), strict=True):
        if colour_diff(prints[i][1], prints[j][1]) <= 24.0:
            found.add(tuple(sorted((paths[i].name, paths[j].name))))
    return found


def run_made(originals: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        paths, truth = write_set(Path(tmp), originals)
        truth = {tuple(sorted(t)) for t in truth}
        start = time.perf_counter()
        hashes_only = hash_stage(paths)
        hash_seconds = time.perf_counter() - start
        start = time.perf_counter()
        candidates = matching.propose_pairs(paths)
        propose_seconds = time.perf_counter() - start
        start = time.perf_counter()
        confirmed = matching.confirm_pairs([(paths[c.i], paths[c.j]) for c in candidates])
        confirm_seconds = time.perf_counter() - start
        found = {tuple(sorted((Path(p.path).name, Path(p.other_path).name))) for p in confirmed}
        proposed = {tuple(sorted((paths[c.i].name, paths[c.j].name))) for c in candidates}
        per_kind = {k: _score({f for f in found if _kind(f[1]) == k},
                              {t for t in truth if _kind(t[1]) == k})["recall"] for k in VARIANTS}
        hash_per_kind = {k: _score({f for f in hashes_only if _kind(f[1]) == k},
                                   {t for t in truth if _kind(t[1]) == k})["recall"] for k in VARIANTS}
        missed = sorted(truth - found)
        false = sorted(found - truth)
    return {"photos": len(paths), "hash_stage": _score(hashes_only, truth), "candidates": len(candidates),
            "candidate_recall": _score(proposed, truth)["recall"], "two_stages": _score(found, truth),
            "recall_by_kind": per_kind, "hash_recall_by_kind": hash_per_kind,
            "missed": missed[:10], "false": false[:10],
            "seconds": {"hash_stage": round(hash_seconds, 2), "propose": round(propose_seconds, 2),
                        "confirm": round(confirm_seconds, 2)}}


def run_real(root: Path) -> dict[str, object]:
    paths = sorted(p for p in root.glob("*/*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    start = time.perf_counter()
    candidates = matching.propose_pairs(paths)
    propose_seconds = time.perf_counter() - start
    start = time.perf_counter()
    confirmed = matching.confirm_pairs([(paths[c.i], paths[c.j]) for c in candidates])
    confirm_seconds = time.perf_counter() - start
    def split(path: str) -> str:
        return Path(path).relative_to(root).parts[0]

    cross = [c for c in confirmed if split(c.path) != split(c.other_path)]
    return {"photos": len(paths), "candidates": len(candidates), "confirmed": len(confirmed),
            "across_splits": len(cross),
            "examples": [(str(Path(c.path).relative_to(root)), str(Path(c.other_path).relative_to(root)), c.inliers,
                          c.matches) for c in confirmed[:12]],
            "seconds": {"propose": round(propose_seconds, 1), "confirm": round(confirm_seconds, 1)}}


def run_search(rows: int, width: int, queries: int = 20) -> dict[str, object]:
    """Exact cosine search (:func:`mushcam.lookalike.nearest`) over ``rows`` made float16 embeddings."""
    from mushcam.lookalike.search import nearest
    from mushcam.lookalike.store import EmbeddingIndex

    rng = np.random.default_rng(0)
    vectors = np.empty((rows, width), dtype=np.float16)
    for start in range(0, rows, 8192):  # made in blocks: no float64 copy of the whole matrix
        block = rng.standard_normal((min(8192, rows - start), width), dtype=np.float32)
        vectors[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    labels = tuple(("A", "B", "C", "D")[i % 4] for i in range(rows))
    index = EmbeddingIndex("0" * 64, vectors, tuple(map(str, range(rows))), tuple(f"{i:064x}" for i in range(rows)),
                           labels, np.ones(rows, np.float32))
    times = []
    for q in range(queries):
        start = time.perf_counter()
        nearest(vectors[q].astype(np.float32), index, k=5, classes=["B"])
        times.append(time.perf_counter() - start)
    return {"rows": rows, "width": width, "megabytes": round(vectors.nbytes / 2**20), "median_ms": round(
        1000 * float(np.median(times)), 1)}


def run_embed(root: Path, arch: str, size: int) -> dict[str, object]:
    """Build the embeddings of ``root/train`` for a random-init ``arch`` (cold), then again (warm: from disk)."""
    import torch
    import torchvision

    from mushcam.lookalike import build_index, training_photos
    from mushcam.manifest import InputSpec

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=8).eval()
    photos = training_photos(root)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cold = build_index(model, photos, InputSpec(size=size), tmp, "bench-" + arch)
        cold_seconds = time.perf_counter() - start
        start = time.perf_counter()
        warm = build_index(model, photos, InputSpec(size=size), tmp, "bench-" + arch)
        warm_seconds = time.perf_counter() - start
        stored = sum(f.stat().st_size for f in Path(tmp).iterdir())
    return {"arch": arch, "size": size, "photos": len(cold.index), "cold_seconds": round(cold_seconds, 1),
            "warm_seconds": round(warm_seconds, 2), "warm_computed": warm.computed, "stored_megabytes": round(
                stored / 2**20, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=160)
    parser.add_argument("--real", type=Path, default=None, help="a data folder ROOT/<split>/<Class>/ (read only)")
    parser.add_argument("--skip-made", action="store_true", help="skip the made set")
    parser.add_argument("--skip-real", action="store_true", help="do not match --real's photos")
    parser.add_argument("--search", type=int, default=0, metavar="ROWS", help="time nearest() over ROWS embeddings")
    parser.add_argument("--embed", default="", metavar="ARCH", help="also time the embeddings of --real's train split")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    results: dict[str, object] = {}
    if not args.skip_made:
        results["made"] = run_made(args.originals)
    if args.real is not None and not args.skip_real:
        results["real"] = run_real(args.real)
    if args.search:
        results["search"] = run_search(args.search, 2048)
    if args.embed and args.real is not None:
        results["embed"] = run_embed(args.real, args.embed, 224)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
