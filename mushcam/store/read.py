"""Reading runs: every run, one run's rows, its skipped files, or all of it from one snapshot.

What was stored is checked as it is read (JSON objects, class indices in range, finite
probabilities); anything damaged is a :class:`~mushcam.store.records.StoreError` naming the run.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

import numpy as np

from mushcam.models import BACKBONES
from mushcam.store.connection import has_arch, reading
from mushcam.store.records import Predictions, RunRecord, Skipped, StoreContents, StoreError


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
        raise StoreError(f"run {run_id}: the recorded manifest has no usable class list; "
                         "re-run evaluate for this model")
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


def _read_runs(connection: sqlite3.Connection) -> tuple[RunRecord, ...]:
    arch = "arch" if has_arch(connection) else "'' AS arch"
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
        raise StoreError(f"run {run.run_id}: some stored probabilities are not finite numbers; "
                         "re-run evaluate for this model")
    return predictions


def _read_skipped(connection: sqlite3.Connection, run_id: int) -> tuple[Skipped, ...]:
    rows = connection.execute("SELECT path, reason FROM skipped WHERE run_id = ? ORDER BY rowid", (run_id,))
    return tuple(Skipped(path, reason) for path, reason in rows)


def load_runs(path: str | os.PathLike[str], timeout: float | None = None) -> tuple[RunRecord, ...]:
    """Every run in the store, ordered by data root, model (presets first, in registry order) and age."""
    with reading(path, timeout) as connection:
        return _read_runs(connection)


def load_predictions(path: str | os.PathLike[str], run_id: int, timeout: float | None = None) -> Predictions:
    """One run's rows as column arrays."""
    with reading(path, timeout) as connection:
        runs = {r.run_id: r for r in _read_runs(connection)}
        if run_id not in runs:
            raise StoreError(f"no run {run_id} in {path}")
        return _read_predictions(connection, runs[run_id])


def load_skipped(path: str | os.PathLike[str], run_id: int, timeout: float | None = None) -> tuple[Skipped, ...]:
    """The files and folders one run left out, with reasons."""
    with reading(path, timeout) as connection:
        return _read_skipped(connection, run_id)


def load_store(path: str | os.PathLike[str], timeout: float | None = None) -> StoreContents:
    """All runs, their rows and their skipped files, from one consistent snapshot."""
    with reading(path, timeout) as connection:
        runs = _read_runs(connection)
        return StoreContents(
            runs=runs,
            predictions={r.run_id: _read_predictions(connection, r) for r in runs},
            skipped={r.run_id: _read_skipped(connection, r.run_id) for r in runs},
        )
