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

Reading validates: SQLite keeps whatever a column is given (text in ``distance``, a blob as a
note), so :func:`read_review_data` checks every row and skips a damaged one with a warning
that names it (the page shows it in one box, the commands print it); the other rows are used.
Notes longer than :data:`MAX_NOTE` (written before the limit) are read only up to it (SQL
``substr``: memory stays bounded) and shown with "… (truncated, N characters)". Names and
notes are cleaned on the way in (:mod:`mushcam.text`).

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
from mushcam.review.causes import DEFAULT_CAUSES, LABEL_DOUBTFUL, MAX_LABEL, Cause, colliding, merged, new_cause
from mushcam.store import StoreError, transaction
from mushcam.text import MAX_NOTE, clean_name, clean_note, shown_note, visible_text

MAX_REVIEWER = 60
__all__ = ["MAX_NOTE", "MAX_REVIEWER", "StoreError"]  # re-exported: MAX_NOTE lives in mushcam.text

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
    """A reviewer's name (:func:`mushcam.text.clean_name`); refuses empty, over-long and hidden-character names."""
    name = clean_name(name, "a reviewer name", MAX_REVIEWER)
    if not name:
        raise MushcamError("set your reviewer name first (in the sidebar, or --reviewer)")
    return name


def save_review(path: str | os.PathLike[str], review: Review, timeout: float | None = None) -> Review:
    """Create or replace ``review.reviewer``'s review of ``review.key``; returns it as stored.

    A review needs at least one cause or a note. A suggested label is kept only with the
    cause "label doubtful". ``created_at`` of an earlier version is kept.
    """
    reviewer = clean_reviewer(review.reviewer)
    causes = tuple(dict.fromkeys(c for c in review.causes if c))
    suggested = clean_name(review.suggested_label, "a suggested label", MAX_LABEL) if LABEL_DOUBTFUL in causes else ""
    note = clean_note(review.note)
    if not causes and not note:
        raise MushcamError("choose at least one cause or write a note")
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


class DamagedRow(MushcamError):
    """A store row that cannot be read as what its table holds (the message says why)."""


def _text(value: object, column: str) -> str:
    if not isinstance(value, str):
        raise DamagedRow(f"{column} is {type(value).__name__}, not text")
    return value


_REVIEW_COLUMNS = ("image_sha256", "model", "checkpoint_sha256", "reviewer", "causes_json", "note",
                   "suggested_label", "image_path", "true_class", "pred_class", "created_at", "updated_at")


def _review_from_row(row: Sequence[object]) -> Review:
    """One ``reviews`` row (its note cut by ``substr``, then the note's full length) as a Review, or DamagedRow."""
    values = dict(zip(_REVIEW_COLUMNS, row[:12], strict=True))
    text = {c: _text(v, c) for c, v in values.items()}
    try:
        causes = json.loads(text["causes_json"])
    except (ValueError, RecursionError):
        causes = None
    if not isinstance(causes, list) or not all(isinstance(c, str) for c in causes):
        raise DamagedRow("the causes are not a JSON list of cause keys")
    reviewer = clean_name(text["reviewer"], "the reviewer name", 10 * MAX_REVIEWER)
    length = row[12] if isinstance(row[12], int) else len(text["note"])
    note = shown_note(visible_text(text["note"]), length)
    return Review(ReviewKey(text["image_sha256"], text["model"], text["checkpoint_sha256"]), reviewer, tuple(causes),
                  note, text["suggested_label"], text["image_path"], text["true_class"], text["pred_class"],
                  text["created_at"], text["updated_at"])


def _mark_from_row(row: Sequence[object]) -> NearDuplicate:
    """One ``near_duplicates`` row as a NearDuplicate (distance a whole number of bits, 0..64), or DamagedRow."""
    columns = ("image_sha256", "image_path", "split", "other_sha256", "other_path", "other_split")
    text = [_text(v, c) for c, v in zip(columns, row[:6], strict=True)]
    distance = row[6]
    if isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance <= 64:
        raise DamagedRow(f"distance is {distance!r}, not a whole number of bits from 0 to 64")
    return NearDuplicate(*text, distance)


@dataclass(frozen=True)
class ReviewData:
    """What the page and the report read from a store: reviews, causes, near-duplicate marks, and the
    warnings for rows that were skipped as damaged."""

    reviews: ReviewIndex
    causes: tuple[Cause, ...]
    duplicates: dict[str, tuple[NearDuplicate, ...]]
    warnings: tuple[str, ...] = ()


def _skipped(what: str, names: list[str], fix: str) -> list[str]:
    if not names:
        return []
    shown = "; ".join(names[:3]) + (f"; and {len(names) - 3} more" if len(names) > 3 else "")
    return [f"skipped {len(names)} damaged {what}{'s' if len(names) != 1 else ''} in the store ({shown}); {fix}"]


def _read_reviews(connection: sqlite3.Connection) -> tuple[list[Review], list[str]]:
    if not _has_table(connection, "reviews"):
        return [], []
    rows = connection.execute(
        "SELECT image_sha256, model, checkpoint_sha256, reviewer, causes_json, substr(note, 1, ?),"
        " suggested_label, image_path, true_class, pred_class, created_at, updated_at, length(note) FROM reviews"
        " ORDER BY image_path, model, reviewer", (MAX_NOTE,)).fetchall()
    reviews, damaged = [], []
    for row in rows:
        try:
            reviews.append(_review_from_row(row))
        except MushcamError as exc:
            damaged.append(f"the review of {row[7]!r} by {row[3]!r}: {exc}")
    return reviews, _skipped("review", damaged, "save that review again on the Errors page")


def _read_causes(connection: sqlite3.Connection) -> tuple[list[Cause], list[str]]:
    if not _has_table(connection, "review_causes"):
        return [], []
    found, damaged = [], []
    for key, label in connection.execute("SELECT key, label FROM review_causes ORDER BY created_at, key"):
        if isinstance(key, str) and isinstance(label, str) and key:
            found.append(Cause(key, visible_text(label), builtin=False))
        else:
            damaged.append(f"key {key!r}: the key or label is not text")
    return found, _skipped("added cause", damaged, "add that cause again on the Errors page")


def _read_marks(connection: sqlite3.Connection) -> tuple[dict[str, tuple[NearDuplicate, ...]], list[str]]:
    if not _has_table(connection, "near_duplicates"):
        return {}, []
    found: dict[str, list[NearDuplicate]] = {}
    damaged = []
    for row in connection.execute("SELECT * FROM near_duplicates ORDER BY image_sha256, distance, other_path"):
        try:
            mark = _mark_from_row(row)
        except MushcamError as exc:
            damaged.append(f"{row[1]!r} <-> {row[4]!r}: {exc}")
            continue
        found.setdefault(mark.image_sha256, []).append(mark)
    marks = {k: tuple(v) for k, v in found.items()}
    return marks, _skipped("near-duplicate mark", damaged, "run check-data --store again to rewrite the marks")


def read_review_data(path: str | os.PathLike[str], timeout: float | None = None) -> ReviewData:
    """Reviews, causes (built-in + added) and near-duplicate marks in one read; damaged rows skipped with warnings."""
    with transaction(path, timeout=timeout) as connection:
        reviews, w1 = _read_reviews(connection)
        custom, w2 = _read_causes(connection)
        marks, w3 = _read_marks(connection)
    return ReviewData(index_reviews(reviews), merged(custom), marks, (*w1, *w2, *w3))


def load_reviews(path: str | os.PathLike[str], timeout: float | None = None) -> tuple[Review, ...]:
    """Every readable review in the store, ordered by image path, model, then reviewer (damaged rows skipped)."""
    with transaction(path, timeout=timeout) as connection:
        return tuple(_read_reviews(connection)[0])


def add_cause(path: str | os.PathLike[str], label: str, timeout: float | None = None) -> Cause:
    """Add a cause to the store's list (kept for every reviewer); adding the same label again is harmless.

    A label that folds to an existing one, or gets its key (:func:`mushcam.review.causes.colliding`),
    is refused with the existing cause's name.
    """
    cause = new_cause(label)
    with transaction(path, write=True, timeout=timeout) as connection:
        _ensure_schema(connection)
        existing = (*DEFAULT_CAUSES, *_read_causes(connection)[0])
        same = next((c for c in existing if c.label == cause.label), None)
        if same is not None:
            return same
        other = colliding(cause, existing)
        if other is not None:
            raise MushcamError(f"the cause “{cause.label}” would be the same as the existing “{other.label}”; "
                               "tick that one, or name the new cause differently")
        connection.execute("INSERT OR IGNORE INTO review_causes (key, label, created_at) VALUES (?, ?, ?)",
                           (cause.key, cause.label, _now()))
    return cause


def load_custom_causes(path: str | os.PathLike[str], timeout: float | None = None) -> tuple[Cause, ...]:
    """The causes users added, oldest first (damaged rows skipped)."""
    with transaction(path, timeout=timeout) as connection:
        return tuple(_read_causes(connection)[0])


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
    """Near-duplicate marks by image SHA-256 (closest first); empty when ``check-data`` never wrote any.

    Damaged rows are skipped; :func:`read_review_data` says which.
    """
    with transaction(path, timeout=timeout) as connection:
        return _read_marks(connection)[0]
