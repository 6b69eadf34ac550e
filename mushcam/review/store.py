"""Reviews, custom causes and near-duplicate marks, kept in the results store (SQLite) beside the runs.

Tables (created on first write; a store without them simply has no reviews)::

    reviews(image_sha256, model, checkpoint_sha256, reviewer, causes_json, note, suggested_label,
            image_path, true_class, pred_class, created_at, updated_at)
            PRIMARY KEY (image_sha256, model, checkpoint_sha256, reviewer)
    review_causes(key PRIMARY KEY, label, created_at)        -- causes users added
    near_duplicates(image_sha256, image_path, split, other_sha256, other_path, other_split, distance)

A review belongs to an image's *content* (SHA-256 of its bytes) and to a model run's
identity (model name + checkpoint SHA-256), not to a run id: re-evaluating the same
checkpoint replaces the run but keeps its reviews, and the same photo shows its reviews
under other models too. One row per reviewer, so several reviewers never overwrite each
other.

Concurrency: every write is one short ``BEGIN IMMEDIATE`` transaction with a busy timeout
(:data:`mushcam.store.DEFAULT_TIMEOUT`), so two sessions or processes writing at once are
serialised by SQLite and nothing is lost. The journal stays in SQLite's default (rollback)
mode: WAL would need write access to the folder even for readers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mushcam.exceptions import MushcamError
from mushcam.review.causes import LABEL_DOUBTFUL, Cause, new_cause
from mushcam.store import StoreError, transaction

MAX_NOTE = 4000
MAX_REVIEWER = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    image_sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    causes_json TEXT NOT NULL,
    note TEXT NOT NULL,
    suggested_label TEXT NOT NULL,
    image_path TEXT NOT NULL,
    true_class TEXT NOT NULL,
    pred_class TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (image_sha256, model, checkpoint_sha256, reviewer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS review_causes (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS near_duplicates (
    image_sha256 TEXT NOT NULL,
    image_path TEXT NOT NULL,
    split TEXT NOT NULL,
    other_sha256 TEXT NOT NULL,
    other_path TEXT NOT NULL,
    other_split TEXT NOT NULL,
    distance INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS near_duplicates_image ON near_duplicates (image_sha256);
"""


@dataclass(frozen=True)
class ReviewKey:
    """What a review is about: an image's content under one model run identity."""

    image_sha256: str
    model: str  # the model's name (the manifest's, e.g. 'resnet50')
    checkpoint_sha256: str


@dataclass(frozen=True)
class Review:
    """One reviewer's verdict on one error. ``causes`` are cause keys."""

    key: ReviewKey
    reviewer: str
    causes: tuple[str, ...]
    note: str = ""
    suggested_label: str = ""  # for 'label doubtful': the class the reviewer thinks is right
    image_path: str = ""  # as stored in the run (relative to the data folder); for reports
    true_class: str = ""
    pred_class: str = ""
    created_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class NearDuplicate:
    """A photo with a near-duplicate in another (or the same) split; ``distance`` in bits."""

    image_sha256: str
    image_path: str
    split: str
    other_sha256: str
    other_path: str
    other_split: str
    distance: int


@dataclass(frozen=True)
class ReviewIndex:
    """All reviews of a store, grouped for quick look-ups by the page and the report."""

    reviews: tuple[Review, ...] = ()
    by_key: dict[ReviewKey, tuple[Review, ...]] = field(default_factory=dict)
    by_image: dict[str, tuple[Review, ...]] = field(default_factory=dict)

    def of(self, key: ReviewKey) -> tuple[Review, ...]:
        return self.by_key.get(key, ())

    def of_image(self, image_sha256: str) -> tuple[Review, ...]:
        return self.by_image.get(image_sha256, ())


def index_reviews(reviews: Iterable[Review]) -> ReviewIndex:
    by_key: dict[ReviewKey, list[Review]] = {}
    by_image: dict[str, list[Review]] = {}
    listed = tuple(reviews)
    for review in listed:
        by_key.setdefault(review.key, []).append(review)
        by_image.setdefault(review.key.image_sha256, []).append(review)
    return ReviewIndex(listed, {k: tuple(v) for k, v in by_key.items()}, {k: tuple(v) for k, v in by_image.items()})


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _ensure_schema(connection: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    row = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def clean_reviewer(name: str) -> str:
    """A reviewer's name, trimmed; refuses empty and over-long names."""
    name = " ".join(str(name).split())
    if not name:
        raise MushcamError("set your reviewer name first (in the sidebar, or --reviewer)")
    if len(name) > MAX_REVIEWER:
        raise MushcamError(f"a reviewer name has at most {MAX_REVIEWER} characters")
    return name


def save_review(path: str | os.PathLike[str], review: Review, timeout: float | None = None) -> Review:
    """Create or replace ``review.reviewer``'s review of ``review.key``; returns it as stored.

    A review needs at least one cause or a note. A suggested label is kept only with the
    cause "label doubtful". ``created_at`` of an earlier version is kept.
    """
    reviewer = clean_reviewer(review.reviewer)
    causes = tuple(dict.fromkeys(c for c in review.causes if c))
    suggested = review.suggested_label.strip() if LABEL_DOUBTFUL in causes else ""
    note = review.note.strip()
    if not causes and not note:
        raise MushcamError("choose at least one cause or write a note")
    if len(note) > MAX_NOTE:
        raise MushcamError(f"a note has at most {MAX_NOTE} characters; this one has {len(note)}")
    now = _now()
    k = review.key
    with transaction(path, write=True, timeout=timeout) as connection:
        _ensure_schema(connection)
        old = connection.execute(
            "SELECT created_at FROM reviews WHERE image_sha256 = ? AND model = ? AND checkpoint_sha256 = ?"
            " AND reviewer = ?", (k.image_sha256, k.model, k.checkpoint_sha256, reviewer)).fetchone()
        created = old[0] if old else now
        connection.execute(
            "INSERT OR REPLACE INTO reviews (image_sha256, model, checkpoint_sha256, reviewer, causes_json, note,"
            " suggested_label, image_path, true_class, pred_class, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (k.image_sha256, k.model, k.checkpoint_sha256, reviewer, json.dumps(list(causes)), note,
             suggested, review.image_path, review.true_class, review.pred_class, created, now),
        )
    return Review(k, reviewer, causes, note, suggested, review.image_path, review.true_class,
                  review.pred_class, created, now)


def delete_review(path: str | os.PathLike[str], key: ReviewKey, reviewer: str, timeout: float | None = None) -> bool:
    """Remove one reviewer's review of ``key``; True when there was one."""
    with transaction(path, write=True, timeout=timeout) as connection:
        if not _has_table(connection, "reviews"):
            return False
        cursor = connection.execute(
            "DELETE FROM reviews WHERE image_sha256 = ? AND model = ? AND checkpoint_sha256 = ? AND reviewer = ?",
            (key.image_sha256, key.model, key.checkpoint_sha256, clean_reviewer(reviewer)),
        )
        return cursor.rowcount > 0


def _review_from_row(row: Sequence[object]) -> Review:
    (image_sha, model, ckpt, reviewer, causes_json, note, suggested, image_path, true_class, pred_class,
     created, updated) = row
    try:
        causes = json.loads(str(causes_json))
        if not isinstance(causes, list):
            raise ValueError("not a list")
    except ValueError as exc:
        raise StoreError(f"a stored review of {image_path} has malformed causes ({exc})") from None
    return Review(ReviewKey(str(image_sha), str(model), str(ckpt)), str(reviewer), tuple(str(c) for c in causes),
                  str(note), str(suggested), str(image_path), str(true_class), str(pred_class), str(created),
                  str(updated))


def load_reviews(path: str | os.PathLike[str], timeout: float | None = None) -> tuple[Review, ...]:
    """Every review in the store, ordered by image path, model, then reviewer."""
    with transaction(path, timeout=timeout) as connection:
        if not _has_table(connection, "reviews"):
            return ()
        rows = connection.execute(
            "SELECT image_sha256, model, checkpoint_sha256, reviewer, causes_json, note, suggested_label,"
            " image_path, true_class, pred_class, created_at, updated_at FROM reviews"
            " ORDER BY image_path, model, reviewer").fetchall()
    return tuple(_review_from_row(row) for row in rows)


def add_cause(path: str | os.PathLike[str], label: str, timeout: float | None = None) -> Cause:
    """Add a cause to the store's list (kept for every reviewer); adding it again is harmless."""
    cause = new_cause(label)
    with transaction(path, write=True, timeout=timeout) as connection:
        _ensure_schema(connection)
        connection.execute("INSERT OR IGNORE INTO review_causes (key, label, created_at) VALUES (?, ?, ?)",
                           (cause.key, cause.label, _now()))
    return cause


def load_custom_causes(path: str | os.PathLike[str], timeout: float | None = None) -> tuple[Cause, ...]:
    """The causes users added, oldest first."""
    with transaction(path, timeout=timeout) as connection:
        if not _has_table(connection, "review_causes"):
            return ()
        rows = connection.execute("SELECT key, label FROM review_causes ORDER BY created_at, key").fetchall()
    return tuple(Cause(str(k), str(v), builtin=False) for k, v in rows)


def save_duplicates(path: str | os.PathLike[str], pairs: Sequence[NearDuplicate], timeout: float | None = None) -> None:
    """Replace the store's near-duplicate marks (both directions of each pair) in one transaction."""
    rows = []
    for p in pairs:
        rows.append((p.image_sha256, p.image_path, p.split, p.other_sha256, p.other_path, p.other_split, p.distance))
        rows.append((p.other_sha256, p.other_path, p.other_split, p.image_sha256, p.image_path, p.split, p.distance))
    with transaction(path, write=True, timeout=timeout) as connection:
        _ensure_schema(connection)
        connection.execute("DELETE FROM near_duplicates")
        connection.executemany("INSERT INTO near_duplicates VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def load_duplicates(path: str | os.PathLike[str], timeout: float | None = None) -> dict[str, tuple[NearDuplicate, ...]]:
    """Near-duplicate marks by image SHA-256 (closest first); empty when ``check-data`` never wrote any."""
    with transaction(path, timeout=timeout) as connection:
        if not _has_table(connection, "near_duplicates"):
            return {}
        rows = connection.execute(
            "SELECT * FROM near_duplicates ORDER BY image_sha256, distance, other_path"
        ).fetchall()
    found: dict[str, list[NearDuplicate]] = {}
    for row in rows:
        mark = NearDuplicate(*(str(v) for v in row[:6]), int(row[6]))
        found.setdefault(mark.image_sha256, []).append(mark)
    return {k: tuple(v) for k, v in found.items()}
