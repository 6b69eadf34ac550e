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

The package, one module per role:

- :mod:`mushcam.store.records`    — the schema and identity constants, :class:`StoreError` and the
  records (:class:`RunRecord`, :class:`Predictions`, :class:`Skipped`, :class:`StoreContents`).
- :mod:`mushcam.store.connection` — connections and transactions: opening and identifying a store,
  creating or upgrading its schema, :func:`check_writable`, :func:`transaction` and
  :func:`write_transaction` (for the tables other modules keep in the same file).
- :mod:`mushcam.store.write`      — :func:`save_run`.
- :mod:`mushcam.store.read`       — :func:`load_runs`, :func:`load_predictions`, :func:`load_skipped`
  and :func:`load_store`.

Every public name is re-exported here, so ``from mushcam.store import X`` keeps working.
"""

from __future__ import annotations

from mushcam.store.connection import DEFAULT_TIMEOUT, check_writable, transaction, write_transaction
from mushcam.store.read import load_predictions, load_runs, load_skipped, load_store
from mushcam.store.records import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Predictions,
    RunRecord,
    Skipped,
    StoreContents,
    StoreError,
)
from mushcam.store.write import save_run

__all__ = [
    # records
    "APPLICATION_ID", "SCHEMA_VERSION", "Predictions", "RunRecord", "Skipped", "StoreContents", "StoreError",
    # connection
    "DEFAULT_TIMEOUT", "check_writable", "transaction", "write_transaction",
    # write
    "save_run",
    # read
    "load_predictions", "load_runs", "load_skipped", "load_store",
]
