"""A local Ray runtime for a test module, and what "identical results" compares: files, cache entries, store rows."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[object]:
    """``ray`` initialised with ``num_cpus`` CPUs, its own temp folder (one per xdist worker) and a small object
    store (100 MB: /dev/shm may be small), shut down afterwards; the test is skipped where Ray is not installed."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e .[ray]); the --ray tests need it")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay under 107 characters
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
                 logging_level=logging.WARNING, _temp_dir=temp,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def tree(root: Path, suffix: str = "") -> dict[str, bytes]:
    """Every file under ``root`` (ending in ``suffix``) by relative path, with its bytes; temp files left out."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob(f"*{suffix}"))
            if p.is_file() and not p.name.endswith(".tmp")}


RUN_COLUMNS = "backbone, checkpoint_sha256, layer, data_root, manifest_json, batch_size, n_images, arch"
FRUN_COLUMNS = "model, checkpoint_sha256, data_root, method, layer, settings_json, n_images, complete"


def store_rows(path: Path) -> dict[str, list[tuple]]:
    """The store's rows without what differs between any two runs (ids, clock times, seconds, versions)."""
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows: dict[str, list[tuple]] = {}
        if "runs" in tables:
            rows = {
                    "runs": connection.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY backbone").fetchall(),
                "predictions": connection.execute(
                    "SELECT r.backbone, p.image_path, p.image_sha256, p.true_idx, p.true_class, p.pred_idx,"
                    " p.pred_class, p.confidence, p.probabilities FROM predictions p JOIN runs r USING (run_id)"
                    " ORDER BY r.backbone, p.image_path").fetchall(),
                "skipped": connection.execute(
                    "SELECT r.backbone, s.path, s.reason FROM skipped s JOIN runs r USING (run_id)"
                    " ORDER BY r.backbone, s.path").fetchall(),
            }
        if "faithfulness_runs" in tables:
            rows["faithfulness_runs"] = connection.execute(
                f"SELECT {FRUN_COLUMNS} FROM faithfulness_runs ORDER BY model, method").fetchall()
            columns = [row[1] for row in connection.execute("PRAGMA table_info(faithfulness_images)")][1:]
            rows["faithfulness_images"] = connection.execute(
                f"SELECT f.model, f.method, {', '.join('i.' + c for c in columns)} FROM faithfulness_images i"
                " JOIN faithfulness_runs f USING (frun_id) ORDER BY f.model, f.method, i.image_path").fetchall()
    return rows
