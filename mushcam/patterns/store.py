"""Object regions and pattern numbers in the results store (the evaluate command's SQLite file).

Tables (created on first write, beside :mod:`mushcam.store`'s runs)::

    patterns_regions(image_sha256 PRIMARY KEY, image_path, x0, y0, x1, y1, source, updated_at)
    patterns_focus(model, checkpoint_sha256, method, data_root, layer, n_photos,
                   energy, energy_low, energy_high, pointing, pointing_low, pointing_high,
                   uniform, created_at)            -- one row per model x method x data root
    patterns_clusters(model, checkpoint_sha256, method, data_root, group_by, class_name,
                      cluster_idx, size, accuracy, mean_confidence, flags_json, paths_json)

A region belongs to the photo's bytes (its SHA-256), so a renamed file keeps its box. Saving
the focus or the clusters of a model x method x data root replaces the old rows in one
transaction. Every row is validated on read; a bad row raises :class:`StoreError`.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mushcam.patterns.focus import FocusSummary, Interval
from mushcam.patterns.regions import Region, RegionError
from mushcam.patterns.strategies import ClassStrategies
from mushcam.store import StoreError, transaction, write_transaction
from mushcam.store.connection import create_tables, has_tables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patterns_regions (
    image_sha256 TEXT PRIMARY KEY, image_path TEXT NOT NULL,
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    source TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS patterns_focus (
    model TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL, method TEXT NOT NULL, data_root TEXT NOT NULL,
    layer TEXT NOT NULL, n_photos INTEGER NOT NULL,
    energy REAL, energy_low REAL, energy_high REAL, pointing REAL, pointing_low REAL, pointing_high REAL,
    uniform REAL, created_at TEXT NOT NULL,
    PRIMARY KEY (model, checkpoint_sha256, method, data_root)
);
CREATE TABLE IF NOT EXISTS patterns_clusters (
    model TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL, method TEXT NOT NULL, data_root TEXT NOT NULL,
    group_by TEXT NOT NULL, class_name TEXT NOT NULL, cluster_idx INTEGER NOT NULL,
    size INTEGER NOT NULL, accuracy REAL NOT NULL, mean_confidence REAL NOT NULL,
    flags_json TEXT NOT NULL, paths_json TEXT NOT NULL,
    PRIMARY KEY (model, checkpoint_sha256, method, data_root, group_by, class_name, cluster_idx)
);
"""
_TABLES = ("patterns_regions", "patterns_focus", "patterns_clusters")


@dataclass(frozen=True)
class PatternsKey:
    """Which model (name + weights), explained by which method, on which test folder."""

    model: str
    checkpoint_sha256: str
    method: str
    data_root: str


@dataclass(frozen=True)
class StoredFocus:
    key: PatternsKey
    layer: str
    summary: FocusSummary


@dataclass(frozen=True)
class StoredCluster:
    key: PatternsKey
    group_by: str
    class_name: str
    cluster_idx: int
    size: int
    accuracy: float
    mean_confidence: float
    reasons: tuple[str, ...]
    paths: tuple[str, ...]


def _create(connection: sqlite3.Connection) -> None:
    create_tables(connection, _SCHEMA)


def _has_tables(connection: sqlite3.Connection) -> bool:
    return has_tables(connection, _TABLES)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ writing


def save_regions(path: str | os.PathLike[str], regions: Sequence[tuple[str, Region]]) -> None:
    """Store (image SHA-256, region) pairs; a photo's newer region replaces its older one."""
    with write_transaction(path) as connection:
        _create(connection)
        connection.executemany(
            "INSERT OR REPLACE INTO patterns_regions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(sha, r.path, r.x0, r.y0, r.x1, r.y1, r.source, _now()) for sha, r in regions],
        )


def save_focus(path: str | os.PathLike[str], key: PatternsKey, layer: str, summary: FocusSummary) -> None:
    """Store one model x method's focus numbers (replacing the older ones)."""
    e, p = summary.energy, summary.pointing
    with write_transaction(path) as connection:
        _create(connection)
        connection.execute(
            "INSERT OR REPLACE INTO patterns_focus VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.model, key.checkpoint_sha256, key.method, key.data_root, layer, summary.n_photos,
             e.mean, e.low, e.high, p.mean, p.low, p.high, summary.uniform, _now()),
        )


def save_clusters(path: str | os.PathLike[str], key: PatternsKey, strategies: Sequence[ClassStrategies]) -> None:
    """Store the clusters of every class of one model x method (replacing the older ones)."""
    rows = []
    for found in strategies:
        for c in found.clusters:
            rows.append((key.model, key.checkpoint_sha256, key.method, key.data_root, found.group_by,
                         found.class_name, c.index, c.size, c.accuracy, c.mean_confidence,
                         json.dumps([f.reason for f in c.flags]), json.dumps(list(c.paths))))
    with write_transaction(path) as connection:
        _create(connection)
        connection.execute("DELETE FROM patterns_clusters WHERE model = ? AND checkpoint_sha256 = ? AND method = ?"
                           " AND data_root = ?", (key.model, key.checkpoint_sha256, key.method, key.data_root))
        connection.executemany("INSERT INTO patterns_clusters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


# ------------------------------------------------------------------------------ reading


def _fail(table: str, row: object, why: str) -> StoreError:
    return StoreError(f"the results store has a bad {table} row ({why}): {str(row)[:120]}")


def _number(value: object, table: str, row: object, optional: bool = False) -> float:
    if value is None and optional:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(table, row, f"expected a finite number, got {value!r}")
    return float(value)


def _strings(text: object, table: str, row: object) -> tuple[str, ...]:
    try:
        values = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _fail(table, row, "expected a JSON list of strings")
    return tuple(values)


def load_regions(path: str | os.PathLike[str]) -> dict[str, Region]:
    """Every stored region by image SHA-256 (empty when the store has none)."""
    with transaction(path) as connection:
        if not _has_tables(connection):
            return {}
        found = {}
        for row in connection.execute("SELECT image_sha256, image_path, x0, y0, x1, y1, source FROM patterns_regions"):
            sha, image_path, *coords, source = row
            try:
                numbers = [_number(v, "patterns_regions", row) for v in coords]
                found[str(sha)] = Region(str(image_path), *numbers, str(source))
            except RegionError as exc:
                raise _fail("patterns_regions", row, str(exc)) from None
        return found


def load_focus(path: str | os.PathLike[str]) -> list[StoredFocus]:
    """Every stored focus row."""
    with transaction(path) as connection:
        if not _has_tables(connection):
            return []
        found = []
        for row in connection.execute("SELECT * FROM patterns_focus ORDER BY model, method"):
            key = PatternsKey(*(str(v) for v in row[:4]))
            n = row[5]
            if not isinstance(n, int) or n < 0:
                raise _fail("patterns_focus", row, "n_photos must be a count")
            v = [_number(x, "patterns_focus", row, optional=True) for x in row[6:13]]
            summary = FocusSummary(n, Interval(*v[0:3]), Interval(*v[3:6]), v[6])
            found.append(StoredFocus(key, str(row[4]), summary))
        return found


def load_clusters(path: str | os.PathLike[str]) -> list[StoredCluster]:
    """Every stored cluster."""
    with transaction(path) as connection:
        if not _has_tables(connection):
            return []
        found = []
        order = "ORDER BY model, method, class_name, cluster_idx"
        for row in connection.execute(f"SELECT * FROM patterns_clusters {order}"):
            key = PatternsKey(*(str(v) for v in row[:4]))
            index, size = row[6], row[7]
            if not isinstance(index, int) or not isinstance(size, int) or size < 0:
                raise _fail("patterns_clusters", row, "cluster_idx and size must be whole numbers")
            paths = _strings(row[11], "patterns_clusters", row)
            if len(paths) != size:
                raise _fail("patterns_clusters", row, "size does not match the photos listed")
            found.append(StoredCluster(key, str(row[4]), str(row[5]), index, size,
                                       _number(row[8], "patterns_clusters", row),
                                       _number(row[9], "patterns_clusters", row),
                                       _strings(row[10], "patterns_clusters", row), paths))
        return found
