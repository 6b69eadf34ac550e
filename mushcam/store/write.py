"""Writing a run: its rows replace the same model's run on the same data, in one transaction."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mushcam.data import printable
from mushcam.store.connection import connect, prepare_schema
from mushcam.store.records import Predictions, RunRecord, Skipped, StoreError


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
    n, names = len(predictions), run.class_names
    if predictions.probabilities.shape != (n, len(names)):
        raise ValueError(
            f"probabilities have shape {predictions.probabilities.shape}; expected ({n}, {len(names)})"
        )
    _check_finite_run(run, predictions)
    rows = _prediction_rows(names, predictions)
    path = Path(path).expanduser()
    created = not path.exists()
    with connect(path, write=True, timeout=timeout) as connection:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock now: fails fast if locked
        try:
            prepare_schema(connection, path)
            run_id = _replace_run(connection, run, rows, skipped)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            if created:  # never leave an empty store behind
                _remove_if_empty(path)
            raise
    return run_id


def _prediction_rows(names: Sequence[str], predictions: Predictions) -> list[tuple[object, ...]]:
    """One ``predictions`` row per image (without its run id), class names beside the indices."""
    return [
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
        for i in range(len(predictions))
    ]


def _replace_run(
    connection: sqlite3.Connection, run: RunRecord, rows: list[tuple[object, ...]], skipped: Sequence[Skipped]
) -> int:
    """Inside the open transaction: insert the run and its rows, then delete the runs it replaces."""
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
    return run_id


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def _check_finite_run(run: RunRecord, predictions: Predictions) -> None:
    """Refuse, before the file is touched, what SQLite or JSON would turn into NULL or invalid text."""
    probabilities = np.asarray(predictions.probabilities, dtype=np.float64)
    confidence = np.asarray(predictions.confidence, dtype=np.float64)
    if not (np.isfinite(probabilities).all() and np.isfinite(confidence).all()):
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
            raise StoreError(
                f"the name {printable(text)} is not valid UTF-8 text and cannot be stored; rename it"
            ) from None
