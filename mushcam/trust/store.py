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
complete runs, get the old run or the new one. An interrupted run (Ctrl-C) is taken up
again by the next run of the same identity and settings (:func:`resume_faithfulness`): the
images it holds are not scored twice. Reading goes through one reader that checks every
value (:mod:`mushcam.trust.rows`). ``curves`` is a float32 blob: deletion of the
map and of the random map, insertion of both (each steps + 1 long), then ROAD MoRF and
LeRF per percentage. ``spearman`` / ``ssim``: float32 per cascade step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mushcam.store import StoreError, transaction, write_transaction
from mushcam.store import check_writable as store_check_writable
from mushcam.store.connection import create_tables, has_tables
from mushcam.trust import rows
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
             _settings_text(settings), _now()),
        )
        return int(cursor.lastrowid)


def resume_faithfulness(
    path: str | os.PathLike[str], key: RunKey, settings: FaithfulnessSettings
) -> tuple[int, dict[str, str]]:
    """The run to write into and the images it already holds (image path -> image SHA-256).

    An interrupted run of the same identity and settings (``complete = 0``, left by Ctrl-C
    or a crash) is taken up again, so a rerun scores only the images it lacks; otherwise a
    new run is begun. Its rows stay invisible to readers until :func:`finish_faithfulness`.
    """
    with write_transaction(path) as connection:
        _create(connection)
        row = connection.execute(
            "SELECT frun_id FROM faithfulness_runs WHERE complete = 0 AND model = ? AND checkpoint_sha256 = ?"
            " AND data_root = ? AND method = ? AND layer = ? AND settings_json = ? ORDER BY frun_id DESC LIMIT 1",
            (key.model, key.checkpoint_sha256, key.data_root, key.method, key.layer, _settings_text(settings)),
        ).fetchone()
        if row is not None:
            done = connection.execute(
                "SELECT image_path, image_sha256 FROM faithfulness_images WHERE frun_id = ?", (row[0],)).fetchall()
            return int(row[0]), {str(p): str(sha) for p, sha in done}
    return begin_faithfulness(path, key, settings), {}


def _settings_text(settings: FaithfulnessSettings) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True)


def open_probe(path: str, flags: int) -> int:
    """``os.open``: the one call :func:`check_writable` makes (tests stand in for it where root ignores modes)."""
    return os.open(path, flags, 0o600)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`StoreError` now, before any model runs, if the trust tables could not be written later.

    :func:`mushcam.store.check_writable` (a folder, a foreign or newer or locked file), then
    the file opened for writing (nothing written) and a probe file created and removed in
    its folder, where SQLite puts its journal: a read-only file or folder is caught here,
    not after the whole computation.
    """
    target = Path(path).expanduser()
    store_check_writable(target)
    what = "do so"
    try:
        if target.exists():
            what = "the file is read-only"
            os.close(open_probe(str(target), os.O_WRONLY))
        what = f"its folder {target.parent} is read-only (SQLite writes its journal there)"
        probe = target.with_name(f".{target.name}.{os.getpid()}.probe")
        os.close(open_probe(str(probe), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        with contextlib.suppress(OSError):
            probe.unlink()
    except OSError as exc:
        raise StoreError(f"cannot write to the results store {target}: {what} ({exc.strerror or exc}); "
                         "make it writable or give another --out; nothing was computed") from None


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


def finish_faithfulness(
    path: str | os.PathLike[str], frun_id: int, seconds: float, keep: Collection[str] | None = None
) -> None:
    """Mark a run complete and drop the older runs of the same identity, atomically.

    ``keep``: the image paths the run was asked for; rows of other images (left by an
    interrupted run over another image set) are dropped first. Older runs of the same
    identity, complete or interrupted, go in the same transaction.
    """
    with write_transaction(path) as connection:
        row = connection.execute(
            "SELECT model, checkpoint_sha256, data_root, method, layer, settings_json FROM faithfulness_runs"
            " WHERE frun_id = ?", (frun_id,)).fetchone()
        if row is None:
            raise StoreError(f"no faithfulness run {frun_id} in {path}")
        if keep is not None:
            wanted = set(keep)
            stale = [(frun_id, p) for (p,) in connection.execute(
                "SELECT image_path FROM faithfulness_images WHERE frun_id = ?", (frun_id,)) if p not in wanted]
            connection.executemany("DELETE FROM faithfulness_images WHERE frun_id = ? AND image_path = ?", stale)
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


_RUN_SELECT = (
    "SELECT frun_id, model, checkpoint_sha256, data_root, method, layer, settings_json, finished_at, seconds"
    " FROM faithfulness_runs WHERE complete = 1 ORDER BY model, method, frun_id"
)
_IMAGE_SELECT = (
    f"SELECT image_path, true_idx, class_idx, {', '.join(SCALAR_COLUMNS)}, typeof(curves), length(curves)"
    " FROM faithfulness_images WHERE frun_id = ? ORDER BY image_path"
)


def _key(place: rows.RowPlace, values: Sequence[object]) -> RunKey:
    names = ("model", "checkpoint_sha256", "data_root", "method", "layer")
    return RunKey(*(rows.text(place, name, value) for name, value in zip(names, values, strict=True)))


def _faithfulness_run(connection: sqlite3.Connection, record: Sequence[object]) -> FaithfulnessRun:
    """One complete run, every row checked (:mod:`mushcam.trust.rows`); the curves are sized, not read."""
    frun_id, model, *identity = record[:6]
    place = rows.RowPlace("faithfulness", frun_id, model)
    key = _key(place, (model, *identity))
    settings = rows.faithfulness_settings(place, record[6])
    length = rows.curve_values(settings)
    finished = record[7] if record[7] is None else rows.text(place, "finished_at", record[7])
    seconds = rows.number(place, "seconds", record[8])
    paths, true_idx, class_idx, scalars = [], [], [], []
    for image in connection.execute(_IMAGE_SELECT, (frun_id,)):
        at = rows.RowPlace("faithfulness", frun_id, model, image[0])
        paths.append(rows.text(at, "image_path", image[0]))
        true_idx.append(rows.whole(at, "true_idx", image[1]))
        class_idx.append(rows.whole(at, "class_idx", image[2]))
        scalars.append([rows.number(at, name, v) for name, v in zip(SCALAR_COLUMNS, image[3:-2], strict=True)])
        rows.blob_size(at, "curves", image[-2], image[-1], length)
    values = np.asarray(scalars, dtype=np.float64).reshape(len(paths), len(SCALAR_COLUMNS))
    return FaithfulnessRun(
        int(frun_id), key, settings, finished or "", 0.0 if math.isnan(seconds) else seconds, tuple(paths),
        np.asarray(true_idx, dtype=np.int64), np.asarray(class_idx, dtype=np.int64),
        {name: values[:, i] for i, name in enumerate(SCALAR_COLUMNS)},
    )


def _sanity_run(connection: sqlite3.Connection, record: Sequence[object]) -> SanityRun:
    """One sanity run, its blocks and every image's two blobs checked."""
    srun_id, model, *identity = record[:6]
    place = rows.RowPlace("sanity", srun_id, model)
    key = _key(place, (model, *identity))
    names = rows.blocks(place, record[6])
    paths, rho, sim = [], [], []
    for image_path, spearman_blob, ssim_blob in connection.execute(
            "SELECT image_path, spearman, ssim FROM sanity_images WHERE srun_id = ? ORDER BY image_path", (srun_id,)):
        at = rows.RowPlace("sanity", srun_id, model, image_path)
        paths.append(rows.text(at, "image_path", image_path))
        rho.append(rows.floats(at, "spearman", spearman_blob, len(names)))
        sim.append(rows.floats(at, "ssim", ssim_blob, len(names)))
    shape = (len(paths), len(names))
    return SanityRun(int(srun_id), key, names, tuple(paths), np.asarray(rho).reshape(shape),
                     np.asarray(sim).reshape(shape))


def load_trust(path: str | os.PathLike[str]) -> TrustContents:
    """Every complete faithfulness and sanity run of a store (empty when it has none).

    The one reader of the trust tables: every value is checked (:mod:`mushcam.trust.rows`),
    so a damaged row is a :class:`StoreError` naming the run and what to do.
    """
    with transaction(path) as connection:
        if not _has_tables(connection):
            return TrustContents((), ())
        faithfulness = [_faithfulness_run(connection, record) for record in connection.execute(_RUN_SELECT).fetchall()]
        sanity = [_sanity_run(connection, record) for record in connection.execute(
            "SELECT srun_id, model, checkpoint_sha256, data_root, method, layer, blocks_json FROM sanity_runs"
            " WHERE complete = 1 ORDER BY model, method, srun_id").fetchall()]
        return TrustContents(tuple(faithfulness), tuple(sanity))


@dataclass(frozen=True)
class MeanCurves:
    """Mean deletion / insertion curves of a run (map and random map), x = fraction of pixels."""

    fractions: np.ndarray
    deletion: np.ndarray
    deletion_random: np.ndarray
    insertion: np.ndarray
    insertion_random: np.ndarray


def _run_settings(connection: sqlite3.Connection, path: object, frun_id: int) -> tuple[rows.RowPlace, dict]:
    row = connection.execute("SELECT model, settings_json FROM faithfulness_runs WHERE frun_id = ?",
                             (frun_id,)).fetchone()
    if row is None:
        raise StoreError(f"no faithfulness run {frun_id} in {path}")
    place = rows.RowPlace("faithfulness", frun_id, row[0])
    return place, rows.faithfulness_settings(place, row[1])


def _split(values: np.ndarray, length: int) -> tuple[np.ndarray, ...]:
    return tuple(values[i * length:(i + 1) * length] for i in range(4))


def mean_curves(path: str | os.PathLike[str], frun_id: int) -> MeanCurves:
    """Average the stored curves of one run, streaming the rows (memory flat in N); a damaged blob is a StoreError."""
    with transaction(path) as connection:
        place, settings = _run_settings(connection, path, frun_id)
        length = int(settings["steps"]) + 1
        total = np.zeros(4 * length)
        count = 0
        for image_path, blob in connection.execute(
                "SELECT image_path, curves FROM faithfulness_images WHERE frun_id = ?", (frun_id,)):
            at = rows.RowPlace(place.kind, frun_id, place.model, image_path)
            total += rows.floats(at, "curves", blob, rows.curve_values(settings))[: 4 * length]
            count += 1
    return MeanCurves(np.linspace(0, 1, length), *_split(total / max(count, 1), length))


def image_curves(path: str | os.PathLike[str], frun_id: int, image_path: str) -> MeanCurves:
    """The curves of one image of a run."""
    with transaction(path) as connection:
        place, settings = _run_settings(connection, path, frun_id)
        row = connection.execute("SELECT curves FROM faithfulness_images WHERE frun_id = ? AND image_path = ?",
                                 (frun_id, image_path)).fetchone()
    if row is None:
        raise StoreError(f"no image {image_path!r} in faithfulness run {frun_id}")
    at = rows.RowPlace(place.kind, frun_id, place.model, image_path)
    values = rows.floats(at, "curves", row[0], rows.curve_values(settings))
    length = int(settings["steps"]) + 1
    return MeanCurves(np.linspace(0, 1, length), *_split(values, length))
