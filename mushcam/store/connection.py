"""Connections and transactions: opening a store, checking it is one, creating or upgrading its schema.

Every ``sqlite3`` error becomes a :class:`~mushcam.store.records.StoreError` with a one-line
reason (:func:`_describe`). :func:`transaction` and :func:`write_transaction` are the way other
modules (the review and trust tables) use the same file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from mushcam.store.records import APPLICATION_ID, SCHEMA, SCHEMA_VERSION, StoreError

DEFAULT_TIMEOUT = 10.0  # seconds to wait for another writer before calling the store locked


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
def connect(path: str | os.PathLike[str], write: bool, timeout: float | None) -> Iterator[sqlite3.Connection]:
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
    with connect(path, write=True, timeout=timeout) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            _check_identity(connection, path, empty_ok=True)
            # The write lock alone succeeds on a file SQLite opened read-only (a read-only file or folder, an
            # immutable file, even for root): a write of the same version, rolled back below, is refused there.
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])
            connection.execute(f"PRAGMA user_version = {version}")
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")


def create_tables(connection: sqlite3.Connection, schema: str) -> None:
    """Run each ``;``-separated statement of ``schema`` (``CREATE TABLE IF NOT EXISTS ...``): a job's own tables."""
    for statement in schema.split(";"):
        if statement.strip():
            connection.execute(statement)


def has_tables(connection: sqlite3.Connection, names: Iterable[str]) -> bool:
    """Whether the store holds every table in ``names`` (a job's tables exist once it has written)."""
    present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(names) <= present


def has_arch(connection: sqlite3.Connection) -> bool:
    """Whether ``runs`` has the ``arch`` column (stores of version 1 do not)."""
    return any(row[1] == "arch" for row in connection.execute("PRAGMA table_info(runs)"))


@contextlib.contextmanager
def reading(path: str | os.PathLike[str], timeout: float | None) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction (a consistent snapshot)."""
    path = Path(path).expanduser()
    with connect(path, write=False, timeout=timeout) as connection:
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
    for statement in SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def prepare_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Inside a write transaction: create the schema in a new file, or upgrade a version-1 store.

    Version 1 had no ``runs.arch``; the column is added (empty: read as the run's name) in the
    same transaction as the write that needs it, so a failed write leaves the old file as it was.
    """
    if not _check_identity(connection, path, empty_ok=True):
        _create_schema(connection)
    elif not has_arch(connection):
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
        raise StoreError(f"no results store at {path}; "
                         f"create one with: python -m mushcam evaluate --data ROOT --out {path}")
    with connect(path, write=write, timeout=timeout) as connection, \
            _committed(connection, "BEGIN IMMEDIATE" if write else "BEGIN"):
        _check_identity(connection, path, empty_ok=False)
        yield connection


@contextlib.contextmanager
def write_transaction(path: str | os.PathLike[str], timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """Like :func:`transaction` with ``write=True``, but the store is created (core tables) if new
    and a version-1 store is upgraded, as :func:`save_run` does.

    For tables that may be written before any ``evaluate`` run (the trust metrics: a
    faithfulness run needs no stored predictions). Committed when the block ends, rolled
    back on any failure.
    """
    path = Path(path).expanduser()
    with connect(path, write=True, timeout=timeout) as connection, _committed(connection, "BEGIN IMMEDIATE"):
        prepare_schema(connection, path)
        yield connection
