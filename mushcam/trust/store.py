"""The trust metrics' tables in the results store, next to the predictions.

Tables (created on first write, in the same SQLite file as :mod:`mushcam.store`'s runs)::

    faithfulness_runs(frun_id, model, checkpoint_sha256, data_root, method, layer,
                      settings_json, started_at, finished_at, seconds, n_images, complete)
    faithfulness_images(frun_id, image_path, image_sha256, true_idx, class_idx, probability,
                        deletion_auc[_random|_inverted], insertion_auc[_random|_inverted],
                        average_drop[_random|_inverted], increase[_random|_inverted],
                        road_morf, road_lerf, road, curves)
    sanity_runs(srun_id, model, checkpoint_sha256, data_root, method, layer, blocks_json,
                seed, started_at, finished_at, seconds, n_images, complete)
    sanity_images(srun_id, image_path, spearman, ssim)

A run's identity is the predictions' (model, checkpoint SHA-256, data root) plus the method
and the settings (baseline, steps, ...): runs with another baseline live beside each other.
Rows are streamed in: a run is written ``complete = 0`` and its images appended batch by
batch (memory stays flat in the number of images); finishing it marks it complete and
deletes the older runs of the same identity in one transaction, so readers, which see only
complete runs, get the old run or the new one. ``curves`` is a float32 blob: deletion of the
map and of the random map, insertion of both (each steps + 1 long), then ROAD MoRF and
LeRF per percentage. ``spearman`` / ``ssim``: float32 per cascade step.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from mushcam.store import StoreError, transaction, write_transaction
from mushcam.store.connection import create_tables, has_tables
from mushcam.trust.faithfulness import FaithfulnessSettings, ImageFaithfulness
from mushcam.trust.sanity import SanityResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS faithfulness_runs (
    frun_id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL, data_root TEXT NOT NULL,
    method TEXT NOT NULL, layer TEXT NOT NULL, settings_json TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, seconds REAL, n_images INTEGER,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faithfulness_images (
    frun_id INTEGER NOT NULL, image_path TEXT NOT NULL, image_sha256 TEXT NOT NULL,
    true_idx INTEGER NOT NULL, class_idx INTEGER NOT NULL, probability REAL NOT NULL,
    deletion_auc REAL, deletion_auc_random REAL, deletion_auc_inverted REAL,
    insertion_auc REAL, insertion_auc_random REAL, insertion_auc_inverted REAL,
    average_drop REAL, average_drop_random REAL, average_drop_inverted REAL,
    increase INTEGER, increase_random INTEGER, increase_inverted INTEGER,
    road_morf REAL, road_lerf REAL, road REAL, curves BLOB NOT NULL,
    PRIMARY KEY (frun_id, image_path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sanity_runs (
    srun_id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL, data_root TEXT NOT NULL,
    method TEXT NOT NULL, layer TEXT NOT NULL, blocks_json TEXT NOT NULL, seed INTEGER NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, seconds REAL, n_images INTEGER,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sanity_images (
    srun_id INTEGER NOT NULL, image_path TEXT NOT NULL, spearman BLOB NOT NULL, ssim BLOB NOT NULL,
    PRIMARY KEY (srun_id, image_path)
) WITHOUT ROWID;
"""

SCALAR_COLUMNS: tuple[str, ...] = (
    "probability",
    "deletion_auc", "deletion_auc_random", "deletion_auc_inverted",
    "insertion_auc", "insertion_auc_random", "insertion_auc_inverted",
    "average_drop", "average_drop_random", "average_drop_inverted",
    "increase", "increase_random", "increase_inverted",
    "road_morf", "road_lerf", "road",
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _create(connection: sqlite3.Connection) -> None:
    create_tables(connection, _SCHEMA)


def _has_tables(connection: sqlite3.Connection) -> bool:
    return has_tables(connection, ("faithfulness_runs", "sanity_runs"))


def _blob(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


@dataclass(frozen=True)
class RunKey:
    """Which model, on which data, explained by which method, at which layer."""

    model: str
    checkpoint_sha256: str
    data_root: str
    method: str
    layer: str


# ------------------------------------------------------------------------------ writing


def begin_faithfulness(path: str | os.PathLike[str], key: RunKey, settings: FaithfulnessSettings) -> int:
    """Start a run (incomplete until :func:`finish_faithfulness`); returns its id."""
    with write_transaction(path) as connection:
        _create(connection)
        cursor = connection.execute(
            "INSERT INTO faithfulness_runs (model, checkpoint_sha256, data_root, method, layer, settings_json,"
            " started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key.model, key.checkpoint_sha256, key.data_root, key.method, key.layer,
             json.dumps(settings.to_dict(), sort_keys=True), _now()),
        )
        return int(cursor.lastrowid)


def append_faithfulness(
    path: str | os.PathLike[str],
    frun_id: int,
    rows: Sequence[tuple[str, str, int, ImageFaithfulness]],
) -> None:
    """Append (image path, image SHA-256, true class index, scores) rows to a run, in one transaction."""
    records = []
    for image_path, image_sha, true_idx, s in rows:
        curves = np.concatenate([s.deletion["map"], s.deletion["random"], s.insertion["map"], s.insertion["random"],
                                 s.road_morf, s.road_lerf])
        records.append((
            frun_id, image_path, image_sha, int(true_idx), s.class_idx, s.probability,
            s.deletion_auc("map"), s.deletion_auc("random"), s.deletion_auc("inverted"),
            s.insertion_auc("map"), s.insertion_auc("random"), s.insertion_auc("inverted"),
            s.average_drop["map"], s.average_drop["random"], s.average_drop["inverted"],
            int(s.increase["map"]), int(s.increase["random"]), int(s.increase["inverted"]),
            float(s.road_morf.mean()) if s.road_morf.size else None,
            float(s.road_lerf.mean()) if s.road_lerf.size else None,
            s.road if s.road_morf.size else None, _blob(curves),
        ))
    with write_transaction(path) as connection:
        connection.executemany(
            f"INSERT OR REPLACE INTO faithfulness_images (frun_id, image_path, image_sha256, true_idx, class_idx,"
            f" {', '.join(SCALAR_COLUMNS)}, curves) VALUES ({', '.join(['?'] * (6 + len(SCALAR_COLUMNS)))})",
            records,
        )


def finish_faithfulness(path: str | os.PathLike[str], frun_id: int, seconds: float) -> None:
    """Mark a run complete and drop the older runs of the same identity, atomically."""
    with write_transaction(path) as connection:
        row = connection.execute(
            "SELECT model, checkpoint_sha256, data_root, method, layer, settings_json FROM faithfulness_runs"
            " WHERE frun_id = ?", (frun_id,)).fetchone()
        if row is None:
            raise StoreError(f"no faithfulness run {frun_id} in {path}")
        old = [r[0] for r in connection.execute(
            "SELECT frun_id FROM faithfulness_runs WHERE model = ? AND checkpoint_sha256 = ? AND data_root = ?"
            " AND method = ? AND layer = ? AND settings_json = ? AND frun_id != ?", (*row, frun_id))]
        count = connection.execute(
            "SELECT COUNT(*) FROM faithfulness_images WHERE frun_id = ?", (frun_id,)
        ).fetchone()[0]
        connection.execute(
            "UPDATE faithfulness_runs SET complete = 1, finished_at = ?, seconds = ?, n_images = ? WHERE frun_id = ?",
            (_now(), float(seconds), int(count), frun_id),
        )
        for old_id in old:
            connection.execute("DELETE FROM faithfulness_images WHERE frun_id = ?", (old_id,))
            connection.execute("DELETE FROM faithfulness_runs WHERE frun_id = ?", (old_id,))


def save_sanity(
    path: str | os.PathLike[str],
    key: RunKey,
    image_paths: Sequence[str],
    result: SanityResult,
    seed: int,
    seconds: float,
) -> int:
    """Write one sanity-check run (replacing the same identity's older one), atomically."""
    with write_transaction(path) as connection:
        _create(connection)
        started = _now()
        cursor = connection.execute(
            "INSERT INTO sanity_runs (model, checkpoint_sha256, data_root, method, layer, blocks_json, seed,"
            " started_at, finished_at, seconds, n_images, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (key.model, key.checkpoint_sha256, key.data_root, key.method, key.layer, json.dumps(list(result.blocks)),
             int(seed), started, started, float(seconds), len(image_paths)),
        )
        srun_id = int(cursor.lastrowid)
        connection.executemany(
            "INSERT OR REPLACE INTO sanity_images (srun_id, image_path, spearman, ssim) VALUES (?, ?, ?, ?)",
            [(srun_id, p, _blob(result.spearman[i]), _blob(result.ssim[i])) for i, p in enumerate(image_paths)],
        )
        old = [r[0] for r in connection.execute(
            "SELECT srun_id FROM sanity_runs WHERE model = ? AND checkpoint_sha256 = ? AND data_root = ?"
            " AND method = ? AND layer = ? AND srun_id != ?",
            (key.model, key.checkpoint_sha256, key.data_root, key.method, key.layer, srun_id))]
        for old_id in old:
            connection.execute("DELETE FROM sanity_images WHERE srun_id = ?", (old_id,))
            connection.execute("DELETE FROM sanity_runs WHERE srun_id = ?", (old_id,))
        return srun_id


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class FaithfulnessRun:
    """One complete run and its per-image scalars (column arrays in image-path order)."""

    frun_id: int
    key: RunKey
    settings: dict
    finished_at: str
    seconds: float
    image_paths: tuple[str, ...]
    true_idx: np.ndarray
    class_idx: np.ndarray
    values: dict[str, np.ndarray]  # SCALAR_COLUMNS -> float64 (N,), NaN where absent

    @property
    def n_images(self) -> int:
        return len(self.image_paths)


@dataclass(frozen=True)
class SanityRun:
    srun_id: int
    key: RunKey
    blocks: tuple[str, ...]
    image_paths: tuple[str, ...]
    spearman: np.ndarray  # N x steps
    ssim: np.ndarray

    @property
    def result(self) -> SanityResult:
        return SanityResult(self.blocks, self.spearman, self.ssim)


@dataclass(frozen=True)
class TrustContents:
    faithfulness: tuple[FaithfulnessRun, ...]
    sanity: tuple[SanityRun, ...]


def _float_rows(values: Sequence[object]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _float32_rows(rows: Sequence[Sequence[object]], column: int, steps: int) -> np.ndarray:
    """One float64 row per stored little-endian float32 blob in ``column``; (0, steps) when there are none."""
    if not rows:
        return np.zeros((0, steps))
    return np.stack([np.frombuffer(row[column], dtype="<f4").astype(np.float64) for row in rows])


def load_trust(path: str | os.PathLike[str]) -> TrustContents:
    """Every complete faithfulness and sanity run of a store (empty when it has none)."""
    with transaction(path) as connection:
        if not _has_tables(connection):
            return TrustContents((), ())
        faithfulness = []
        for frun_id, model, sha, root, method, layer, settings, finished, seconds in connection.execute(
            "SELECT frun_id, model, checkpoint_sha256, data_root, method, layer, settings_json, finished_at, seconds"
            " FROM faithfulness_runs WHERE complete = 1 ORDER BY model, method, frun_id"
        ).fetchall():
            rows = connection.execute(
                f"SELECT image_path, true_idx, class_idx, {', '.join(SCALAR_COLUMNS)} FROM faithfulness_images"
                " WHERE frun_id = ? ORDER BY image_path", (frun_id,)).fetchall()
            columns = list(zip(*rows, strict=True)) if rows else [()] * (3 + len(SCALAR_COLUMNS))
            faithfulness.append(FaithfulnessRun(
                frun_id, RunKey(model, sha, root, method, layer), json.loads(settings), finished or "",
                float(seconds or 0.0), tuple(columns[0]), np.asarray(columns[1], dtype=np.int64),
                np.asarray(columns[2], dtype=np.int64),
                {name: _float_rows(columns[3 + i]) for i, name in enumerate(SCALAR_COLUMNS)},
            ))
        sanity = []
        for srun_id, model, sha, root, method, layer, blocks in connection.execute(
            "SELECT srun_id, model, checkpoint_sha256, data_root, method, layer, blocks_json FROM sanity_runs"
            " WHERE complete = 1 ORDER BY model, method, srun_id"
        ).fetchall():
            rows = connection.execute(
                "SELECT image_path, spearman, ssim FROM sanity_images WHERE srun_id = ? ORDER BY image_path",
                (srun_id,)).fetchall()
            steps = len(json.loads(blocks))
            rho = _float32_rows(rows, 1, steps)
            sim = _float32_rows(rows, 2, steps)
            sanity.append(SanityRun(srun_id, RunKey(model, sha, root, method, layer), tuple(json.loads(blocks)),
                                    tuple(r[0] for r in rows), rho, sim))
        return TrustContents(tuple(faithfulness), tuple(sanity))


@dataclass(frozen=True)
class MeanCurves:
    """Mean deletion / insertion curves of a run (map and random map), x = fraction of pixels."""

    fractions: np.ndarray
    deletion: np.ndarray
    deletion_random: np.ndarray
    insertion: np.ndarray
    insertion_random: np.ndarray


def mean_curves(path: str | os.PathLike[str], frun_id: int) -> MeanCurves:
    """Average the stored curves of one run, streaming the rows (memory flat in N)."""
    with transaction(path) as connection:
        row = connection.execute("SELECT settings_json FROM faithfulness_runs WHERE frun_id = ?", (frun_id,)).fetchone()
        if row is None:
            raise StoreError(f"no faithfulness run {frun_id} in {path}")
        steps = int(json.loads(row[0])["steps"])
        length = steps + 1
        total = np.zeros(4 * length)
        count = 0
        for (blob,) in connection.execute("SELECT curves FROM faithfulness_images WHERE frun_id = ?", (frun_id,)):
            total += np.frombuffer(blob, dtype="<f4")[: 4 * length]
            count += 1
    mean = total / max(count, 1)
    return MeanCurves(np.linspace(0, 1, length), *(mean[i * length:(i + 1) * length] for i in range(4)))


def image_curves(path: str | os.PathLike[str], frun_id: int, image_path: str) -> MeanCurves:
    """The curves of one image of a run."""
    with transaction(path) as connection:
        row = connection.execute(
            "SELECT r.settings_json, i.curves FROM faithfulness_runs r JOIN faithfulness_images i USING (frun_id)"
            " WHERE frun_id = ? AND image_path = ?", (frun_id, image_path)).fetchone()
    if row is None:
        raise StoreError(f"no image {image_path!r} in faithfulness run {frun_id}")
    length = int(json.loads(row[0])["steps"]) + 1
    values = np.frombuffer(row[1], dtype="<f4").astype(np.float64)
    return MeanCurves(np.linspace(0, 1, length), *(values[i * length:(i + 1) * length] for i in range(4)))
