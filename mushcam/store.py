"""The results store: one SQLite file holding every test-set prediction of every model.

Tables::

    runs(run_id, backbone, checkpoint_path, checkpoint_sha256, layer, data_root,
         manifest_json, started_at, finished_at, versions_json, batch_size, seconds, n_images,
         arch)                                  -- backbone: the model's manifest name
    predictions(run_id, image_path, image_sha256, true_idx, true_class, pred_idx, pred_class,
                confidence, probabilities)      -- probabilities: float32 little-endian blob
    skipped(run_id, path, reason)               -- files and class folders left out, and why

A run is one model (its manifest name + checkpoint hash) on one data root; the column
``backbone`` holds the name (it was the backbone when every model was one of three presets)
and ``arch`` the architecture. Stores of version 1 (no ``arch``: the name was the
architecture) are read as they are and upgraded in place on the next write.

Saving a run replaces
the run with the same name, checkpoint hash and data root in a single transaction: a
reader sees the old run or the new one, never a mixture, and a failure (or an interrupt)
before the commit leaves the old run intact. ``image_path`` is relative to ``data_root``.

Errors (missing file, not an SQLite file, another program's database, a store locked by
another writer) raise :class:`StoreError` with a one-line reason.
"""

from __future__ import annotations

from mushcam.exceptions import MushcamError

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mushcam.models import BACKBONES, DISPLAY_NAMES

SCHEMA_VERSION = 2  # 2: runs.arch (the model's architecture; ``backbone`` holds its name)
APPLICATION_ID = 0x4D434D31  # "MCM1": marks the file as a MushCAM results store
DEFAULT_TIMEOUT = 10.0  # seconds to wait for another writer before calling the store locked

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    backbone TEXT NOT NULL,
    checkpoint_path TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    layer TEXT NOT NULL,
    data_root TEXT NOT NULL,
    manifest_json TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    versions_json TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    seconds REAL NOT NULL,
    n_images INTEGER NOT NULL,
    arch TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (backbone, checkpoint_sha256, data_root);
CREATE TABLE IF NOT EXISTS predictions (
    run_id INTEGER NOT NULL,
    image_path TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    true_idx INTEGER NOT NULL,
    true_class TEXT NOT NULL,
    pred_idx INTEGER NOT NULL,
    pred_class TEXT NOT NULL,
    confidence REAL NOT NULL,
    probabilities BLOB NOT NULL,
    PRIMARY KEY (run_id, image_path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skipped_run ON skipped (run_id);
"""


class StoreError(MushcamError):
    """The results store cannot be read or written (the message says why)."""


@dataclass(frozen=True)
class RunRecord:
    """One model's evaluation on one data root (``run_id`` is None before it is saved).

    ``backbone`` is the model's name in the manifest (the field's old name; :attr:`name` says
    it plainly) and ``arch`` its architecture (default: the name, as in older stores).
    """

    backbone: str
    checkpoint_path: str
    checkpoint_sha256: str
    layer: str
    data_root: str  # absolute
    manifest: dict[str, Any]  # the manifest as used: classes with toxicity, input spec
    started_at: str  # ISO 8601, UTC
    finished_at: str
    versions: dict[str, str]
    batch_size: int
    seconds: float  # wall time of decoding + inference
    n_images: int
    run_id: int | None = None
    arch: str = ""

    def __post_init__(self) -> None:
        if not self.arch:
            object.__setattr__(self, "arch", self.backbone)

    @property
    def name(self) -> str:
        """The model's name in the manifest: what runs are keyed by."""
        return self.backbone

    @property
    def label(self) -> str:
        """The model's display name as recorded with the run (its manifest label, if any)."""
        entry = self.manifest.get("models", {}).get(self.backbone) if isinstance(self.manifest, dict) else None
        label = entry.get("label") if isinstance(entry, dict) else None
        if isinstance(label, str) and label:
            return label
        return DISPLAY_NAMES.get(self.backbone, self.backbone) if self.arch == self.backbone else self.backbone

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["classes"]]

    @property
    def toxicities(self) -> list[str]:
        return [c.get("toxicity", "unknown") for c in self.manifest["classes"]]

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class Predictions:
    """Column arrays of one run's rows, in image-path order."""

    image_paths: tuple[str, ...]
    image_sha256: tuple[str, ...]
    true_idx: np.ndarray  # int64 (N,)
    pred_idx: np.ndarray  # int64 (N,)
    confidence: np.ndarray  # float64 (N,)
    probabilities: np.ndarray  # float32 (N, C)

    def __len__(self) -> int:
        return len(self.image_paths)


@dataclass(frozen=True)
class Skipped:
    """A file or class folder that was not evaluated, with the reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class StoreContents:
    """Everything in a store, read at once (what the Errors page caches)."""

    runs: tuple[RunRecord, ...]
    predictions: dict[int, Predictions] = field(default_factory=dict)
    skipped: dict[int, tuple[Skipped, ...]] = field(default_factory=dict)

    def run(self, run_id: int) -> RunRecord:
        for record in self.runs:
            if record.run_id == run_id:
                return record
        raise KeyError(f"no run {run_id} in the store")


def _journal(path: Path) -> Path:
    """The rollback journal SQLite leaves beside a store when a writer dies mid-transaction."""
    return path.with_name(path.name + "-journal")


def _describe(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    code = getattr(exc, "sqlite_errorname", "") or ""
    if "locked" in text or "busy" in text:
        return (
            f"the results store {path} is locked by another program (is another evaluate "
            f"writing to it?); try again when it has finished"
        )
    if "not a database" in text or "malformed" in text or "encrypted" in text:
        return f"{path} is not a readable SQLite results store ({text}); delete it or choose another file"
    if code == "SQLITE_READONLY_ROLLBACK" or (("readonly" in text or "read-only" in text) and _journal(path).exists()):
        return (
            f"an interrupted write left {_journal(path).name} beside the results store {path}; opening the store "
            "once with write access rolls it back to the last complete run (for example, run "
            f"python -m mushcam report {path} as a user who may write to {path.parent})"
        )
    if "readonly" in text or "read-only" in text:
        return f"cannot write to the results store {path}: the file or its folder is read-only"
    if "unable to open" in text:
        return f"cannot open the results store {path} ({text})"
    return f"results store {path}: {text}"


@contextlib.contextmanager
def _connect(path: str | os.PathLike[str], write: bool, timeout: float | None) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (we open transactions ourselves); errors become StoreError."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise StoreError(f"{path} is a folder; the results store is a file such as results.sqlite")
    if not write and not path.is_file():
        raise StoreError(
            f"no results store at {path}; create one with: python -m mushcam evaluate --data ROOT --out {path}"
        )
    if write and not path.parent.is_dir():
        raise StoreError(f"cannot create {path}: the folder {path.parent} does not exist")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    # A journal left by a writer that died must be rolled back before anything can be read,
    # which needs write access: a reader then opens read-write (SQLite restores the last commit).
    hot_journal = not write and _journal(path).is_file() and _journal(path).stat().st_size > 0
    uri = path.resolve().as_uri() + ("?mode=rwc" if write else "?mode=rw" if hot_journal else "?mode=ro")
    connection = None
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        yield connection
    except sqlite3.Error as exc:
        raise StoreError(_describe(exc, path)) from None
    except OSError as exc:
        raise StoreError(f"cannot open the results store {path}: {exc.strerror or exc}") from None
    finally:
        if connection is not None:
            connection.close()


def _check_identity(connection: sqlite3.Connection, path: Path, empty_ok: bool) -> bool:
    """True when the file is a MushCAM store; False when empty (and ``empty_ok``); else StoreError."""
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if application_id == APPLICATION_ID and "runs" in tables:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} was written by a newer MushCAM (store version {version}; this one reads up to "
                f"{SCHEMA_VERSION}); update MushCAM or choose another file"
            )
        return True
    if not tables and application_id == 0 and empty_ok:
        return False
    raise StoreError(f"{path} is an SQLite file but not a MushCAM results store; choose another file")


def _blob(probabilities: np.ndarray) -> bytes:
    return np.ascontiguousarray(probabilities, dtype="<f4").tobytes()


def save_run(
    path: str | os.PathLike[str],
    run: RunRecord,
    predictions: Predictions,
    skipped: Sequence[Skipped] = (),
    timeout: float | None = None,
) -> int:
    """Write ``run`` and its rows, replacing the same model's run on the same data, atomically.

    Returns the new run's id. The store file is created if needed.
    """
    names = run.class_names
    n = len(predictions)
    if predictions.probabilities.shape != (n, len(names)):
        raise ValueError(
            f"probabilities have shape {predictions.probabilities.shape}; expected ({n}, {len(names)})"
        )
    _check_finite_run(run, predictions)
    path = Path(path).expanduser()
    created = not path.exists()
    rows = [
        (
            predictions.image_paths[i],
            predictions.image_sha256[i],
            int(predictions.true_idx[i]),
            names[int(predictions.true_idx[i])],
            int(predictions.pred_idx[i]),
            names[int(predictions.pred_idx[i])],
            float(predictions.confidence[i]),
            _blob(predictions.probabilities[i]),
        )
        for i in range(n)
    ]
    with _connect(path, write=True, timeout=timeout) as connection:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock now: fails fast if locked
        try:
            _prepare_schema(connection, path)
            old = [
                row[0]
                for row in connection.execute(
                    "SELECT run_id FROM runs WHERE backbone = ? AND checkpoint_sha256 = ? AND data_root = ?",
                    (run.backbone, run.checkpoint_sha256, run.data_root),
                )
            ]
            cursor = connection.execute(
                "INSERT INTO runs (backbone, checkpoint_path, checkpoint_sha256, layer, data_root, manifest_json,"
                " started_at, finished_at, versions_json, batch_size, seconds, n_images, arch)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.backbone, run.checkpoint_path, run.checkpoint_sha256, run.layer, run.data_root,
                    json.dumps(run.manifest), run.started_at, run.finished_at, json.dumps(run.versions),
                    int(run.batch_size), float(run.seconds), int(run.n_images), run.arch,
                ),
            )
            run_id = int(cursor.lastrowid)
            connection.executemany(
                "INSERT INTO predictions (run_id, image_path, image_sha256, true_idx, true_class, pred_idx,"
                " pred_class, confidence, probabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, *row) for row in rows],
            )
            connection.executemany(
                "INSERT INTO skipped (run_id, path, reason) VALUES (?, ?, ?)",
                [(run_id, s.path, s.reason) for s in skipped],
            )
            for old_id in old:
                for table in ("predictions", "skipped", "runs"):
                    connection.execute(f"DELETE FROM {table} WHERE run_id = ?", (old_id,))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            if created:  # never leave an empty store behind
                _remove_if_empty(path)
            raise
    return run_id


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def _check_finite_run(run: RunRecord, predictions: Predictions) -> None:
    """Refuse, before the file is touched, what SQLite or JSON would turn into NULL or invalid text."""
    probabilities = np.asarray(predictions.probabilities, dtype=np.float64)
    if not (np.isfinite(probabilities).all() and np.isfinite(np.asarray(predictions.confidence, dtype=np.float64)).all()):
        raise StoreError(
            f"{run.backbone}: the model's probabilities are not finite numbers (NaN or infinity); "
            "its checkpoint is probably damaged; nothing was written"
        )
    if not np.isfinite(run.seconds):
        raise StoreError(f"{run.backbone}: the run's duration is not a finite number ({run.seconds})")
    texts = [*predictions.image_paths, *predictions.image_sha256, run.data_root, run.checkpoint_path]
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise StoreError(f"the name {shown} is not valid UTF-8 text and cannot be stored; rename it") from None


def check_writable(path: str | os.PathLike[str], timeout: float | None = None) -> None:
    """Raise :class:`StoreError` now if :func:`save_run` could not write ``path`` later.

    Called before a long evaluation, so a locked, read-only, foreign or corrupt store is
    reported before any model runs. Creates nothing: for a new file, the folder is tested
    with a temporary file that is removed at once.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise StoreError(f"{path} is a folder; the results store is a file such as results.sqlite")
    if not path.parent.is_dir():
        raise StoreError(f"cannot create {path}: the folder {path.parent} does not exist")
    if not path.exists():
        probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
        try:
            probe.touch(exist_ok=False)
        except OSError as exc:
            raise StoreError(f"cannot create the results store {path}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return
    if path.stat().st_size == 0:
        return  # an empty file (left by an older version) becomes a store on the first save
    with _connect(path, write=True, timeout=timeout) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            _check_identity(connection, path, empty_ok=True)
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")


def _run_from_row(row: sqlite3.Row | tuple) -> RunRecord:
    (run_id, backbone, checkpoint_path, checkpoint_sha256, layer, data_root, manifest_json,
     started_at, finished_at, versions_json, batch_size, seconds, n_images, arch) = row
    manifest = _json_field(run_id, "manifest_json", manifest_json)
    versions = _json_field(run_id, "versions_json", versions_json)
    classes = manifest.get("classes")
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in classes)
    ):
        raise StoreError(f"run {run_id}: the recorded manifest has no usable class list; re-run evaluate for this model")
    try:
        return RunRecord(
            backbone=str(backbone), checkpoint_path=str(checkpoint_path), checkpoint_sha256=str(checkpoint_sha256),
            layer=str(layer), data_root=str(data_root), manifest=manifest, started_at=str(started_at),
            finished_at=str(finished_at), versions=versions, batch_size=int(batch_size),
            seconds=float(seconds), n_images=int(n_images), run_id=int(run_id), arch=str(arch or backbone),
        )
    except (TypeError, ValueError, OverflowError):
        raise StoreError(f"run {run_id}: malformed numbers in the runs table; re-run evaluate for this model") from None


def _json_field(run_id: object, column: str, text: object) -> dict[str, Any]:
    """A JSON object stored in a column; anything else is a :class:`StoreError` naming the run."""
    try:
        value = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"run {run_id}: the {column} column is not a JSON object; re-run evaluate for this model")
    return value



_RUN_COLUMNS = (
    "run_id, backbone, checkpoint_path, checkpoint_sha256, layer, data_root, manifest_json,"
    " started_at, finished_at, versions_json, batch_size, seconds, n_images"
)


def _has_arch(connection: sqlite3.Connection) -> bool:
    """Whether ``runs`` has the ``arch`` column (stores of version 1 do not)."""
    return any(row[1] == "arch" for row in connection.execute("PRAGMA table_info(runs)"))


def _read_runs(connection: sqlite3.Connection) -> tuple[RunRecord, ...]:
    arch = "arch" if _has_arch(connection) else "'' AS arch"
    rows = connection.execute(f"SELECT {_RUN_COLUMNS}, {arch} FROM runs ORDER BY run_id").fetchall()
    runs = [_run_from_row(row) for row in rows]
    order = {name: i for i, name in enumerate(BACKBONES)}
    return tuple(sorted(runs, key=lambda r: (r.data_root, order.get(r.backbone, len(order)), r.run_id)))


def _read_predictions(connection: sqlite3.Connection, run: RunRecord) -> Predictions:
    rows = connection.execute(
        "SELECT image_path, image_sha256, true_idx, pred_idx, confidence, probabilities"
        " FROM predictions WHERE run_id = ? ORDER BY image_path",
        (run.run_id,),
    ).fetchall()
    num_classes = len(run.class_names)
    if rows:
        paths, hashes, true_idx, pred_idx, confidence, blobs = zip(*rows, strict=True)
    else:
        paths, hashes, true_idx, pred_idx, confidence, blobs = (), (), (), (), (), ()
    if not all(isinstance(b, bytes) for b in blobs):
        raise StoreError(f"run {run.run_id}: some probability vectors are not stored as bytes")
    joined = b"".join(blobs)
    if len(joined) != 4 * num_classes * len(rows):
        raise StoreError(f"run {run.run_id}: probability vectors do not have {num_classes} entries each")
    try:
        predictions = Predictions(
            image_paths=tuple(str(p) for p in paths),
            image_sha256=tuple(str(h) for h in hashes),
            true_idx=np.asarray(true_idx, dtype=np.int64),
            pred_idx=np.asarray(pred_idx, dtype=np.int64),
            confidence=np.asarray(confidence, dtype=np.float64),
            probabilities=np.frombuffer(joined, dtype="<f4").reshape(len(rows), num_classes).astype(np.float32),
        )
    except (TypeError, ValueError, OverflowError):
        raise StoreError(f"run {run.run_id}: malformed values in the predictions table") from None
    for column, values in (("true_idx", predictions.true_idx), ("pred_idx", predictions.pred_idx)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise StoreError(
                f"run {run.run_id}: {column} holds class indices outside 0..{num_classes - 1} "
                f"(the run has {num_classes} classes); the store is damaged: re-run evaluate for this model"
            )
    if not (np.isfinite(predictions.probabilities).all() and np.isfinite(predictions.confidence).all()):
        raise StoreError(f"run {run.run_id}: some stored probabilities are not finite numbers; re-run evaluate for this model")
    return predictions


def _read_skipped(connection: sqlite3.Connection, run_id: int) -> tuple[Skipped, ...]:
    rows = connection.execute("SELECT path, reason FROM skipped WHERE run_id = ? ORDER BY rowid", (run_id,))
    return tuple(Skipped(path, reason) for path, reason in rows)


@contextlib.contextmanager
def _reading(path: str | os.PathLike[str], timeout: float | None) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction (a consistent snapshot)."""
    path = Path(path).expanduser()
    with _connect(path, write=False, timeout=timeout) as connection:
        connection.execute("BEGIN")
        try:
            _check_identity(connection, path, empty_ok=False)
            yield connection
        finally:
            if connection.in_transaction:
                connection.execute("COMMIT")


@contextlib.contextmanager
def _committed(connection: sqlite3.Connection, begin: str) -> Iterator[None]:
    """``begin`` a transaction; commit when the block ends, roll back on any failure."""
    connection.execute(begin)
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def _create_schema(connection: sqlite3.Connection) -> None:
    """The core tables and the file's MushCAM identity, in a new (empty) store."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _prepare_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Inside a write transaction: create the schema in a new file, or upgrade a version-1 store.

    Version 1 had no ``runs.arch``; the column is added (empty: read as the run's name) in the
    same transaction as the write that needs it, so a failed write leaves the old file as it was.
    """
    if not _check_identity(connection, path, empty_ok=True):
        _create_schema(connection)
    elif not _has_arch(connection):
        connection.execute("ALTER TABLE runs ADD COLUMN arch TEXT NOT NULL DEFAULT ''")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(path: str | os.PathLike[str], write: bool = False,
                timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """One transaction on an existing MushCAM store, for tables other modules keep there.

    ``write=True`` takes the write lock at once (``BEGIN IMMEDIATE``, waiting up to
    ``timeout`` s for another writer), commits on success and rolls back on any error;
    ``write=False`` is a read-only snapshot. The file must already be a MushCAM store.
    """
    path = Path(path).expanduser()
    if write and not path.is_file():
        raise StoreError(f"no results store at {path}; create one with: python -m mushcam evaluate --data ROOT --out {path}")
    with _connect(path, write=write, timeout=timeout) as connection, \
            _committed(connection, "BEGIN IMMEDIATE" if write else "BEGIN"):
        _check_identity(connection, path, empty_ok=False)
        yield connection


def load_runs(path: str | os.PathLike[str], timeout: float | None = None) -> tuple[RunRecord, ...]:
    """Every run in the store, ordered by data root, model (presets first, in registry order) and age."""
    with _reading(path, timeout) as connection:
        return _read_runs(connection)


def load_predictions(path: str | os.PathLike[str], run_id: int, timeout: float | None = None) -> Predictions:
    """One run's rows as column arrays."""
    with _reading(path, timeout) as connection:
        runs = {r.run_id: r for r in _read_runs(connection)}
        if run_id not in runs:
            raise StoreError(f"no run {run_id} in {path}")
        return _read_predictions(connection, runs[run_id])


def load_skipped(path: str | os.PathLike[str], run_id: int, timeout: float | None = None) -> tuple[Skipped, ...]:
    """The files and folders one run left out, with reasons."""
    with _reading(path, timeout) as connection:
        return _read_skipped(connection, run_id)


def load_store(path: str | os.PathLike[str], timeout: float | None = None) -> StoreContents:
    """All runs, their rows and their skipped files, from one consistent snapshot."""
    with _reading(path, timeout) as connection:
        runs = _read_runs(connection)
        return StoreContents(
            runs=runs,
            predictions={r.run_id: _read_predictions(connection, r) for r in runs},
            skipped={r.run_id: _read_skipped(connection, r.run_id) for r in runs},
        )


# ------------------------------------------------------------- other tables in the same file


@contextlib.contextmanager
def write_transaction(path: str | os.PathLike[str], timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """Like :func:`transaction` with ``write=True``, but the store is created (core tables) if new
    and a version-1 store is upgraded, as :func:`save_run` does.

    For tables that may be written before any ``evaluate`` run (the trust metrics: a
    faithfulness run needs no stored predictions). Committed when the block ends, rolled
    back on any failure.
    """
    path = Path(path).expanduser()
    with _connect(path, write=True, timeout=timeout) as connection, _committed(connection, "BEGIN IMMEDIATE"):
        _prepare_schema(connection, path)
        yield connection

