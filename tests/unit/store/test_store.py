"""The SQLite results store: round trip, atomic replacement, and clear errors."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mushcam import store
from mushcam.cli import main
from mushcam.store import Predictions, RunRecord, Skipped, StoreError

CLASSES = [{"name": "Amanita", "toxicity": "poisonous"}, {"name": "Boletus", "toxicity": "edible"},
           {"name": "Suillus", "toxicity": "edible"}]


def make_run(backbone: str = "resnet50", sha: str = "a" * 64, root: str = "/data/test") -> RunRecord:
    return RunRecord(
        backbone=backbone, checkpoint_path=f"/ckpt/{backbone}.pt", checkpoint_sha256=sha, layer="layer4",
        data_root=root, manifest={"classes": CLASSES, "input": {"size": 64}}, started_at="2026-11-26T00:00:00+00:00",
        finished_at="2026-11-26T00:01:00+00:00", versions={"torch": "2.14.1"}, batch_size=16, seconds=2.0, n_images=0,
    )


def make_rows(n: int, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    probabilities = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    return Predictions(
        image_paths=tuple(f"C{i % 3}/img_{i:03d}.jpg" for i in range(n)),
        image_sha256=tuple(f"{i:064x}" for i in range(n)),
        true_idx=rng.integers(0, 3, n),
        pred_idx=probabilities.argmax(1),
        confidence=probabilities.max(1).astype(np.float64),
        probabilities=probabilities,
    )


def sorted_rows(rows: Predictions) -> Predictions:
    order = np.argsort(np.asarray(rows.image_paths))
    return Predictions(tuple(rows.image_paths[i] for i in order), tuple(rows.image_sha256[i] for i in order),
                       rows.true_idx[order], rows.pred_idx[order], rows.confidence[order], rows.probabilities[order])


def test_round_trip_keeps_every_value(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    rows = make_rows(20)
    run = replace(make_run(), n_images=20)
    run_id = store.save_run(path, run, rows, [Skipped("Other/x.jpg", "class folder 'Other' is not ...")])
    runs = store.load_runs(path)
    assert len(runs) == 1 and runs[0].run_id == run_id
    assert replace(runs[0], run_id=None) == run
    back = store.load_predictions(path, run_id)
    expected = sorted_rows(rows)
    assert back.image_paths == expected.image_paths
    assert back.image_sha256 == expected.image_sha256
    assert back.true_idx.tolist() == expected.true_idx.tolist()
    assert back.pred_idx.tolist() == expected.pred_idx.tolist()
    np.testing.assert_array_equal(back.probabilities, expected.probabilities)  # float32, bit for bit
    np.testing.assert_allclose(back.confidence, expected.confidence, rtol=0, atol=0)
    assert store.load_skipped(path, run_id) == (Skipped("Other/x.jpg", "class folder 'Other' is not ..."),)
    # class names are stored beside the indices, for anyone reading the file with sqlite3
    with sqlite3.connect(path) as connection:
        names = connection.execute("SELECT true_class, pred_class, true_idx, pred_idx FROM predictions").fetchall()
    assert all(CLASSES[t]["name"] == tn and CLASSES[p]["name"] == pn for tn, pn, t, p in names)


def test_same_model_same_data_replaces_other_models_accumulate(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    first = store.save_run(path, make_run(), make_rows(5, seed=1))
    store.save_run(path, make_run("efficientnet_b0", sha="b" * 64), make_rows(6))
    other_checkpoint = store.save_run(path, make_run(sha="c" * 64), make_rows(7))
    other_root = store.save_run(path, make_run(root="/data/val"), make_rows(8))
    assert len(store.load_runs(path)) == 4
    second = store.save_run(path, make_run(), make_rows(9, seed=2))
    runs = {r.run_id: r for r in store.load_runs(path)}
    assert first not in runs and second in runs and other_checkpoint in runs and other_root in runs
    assert len(runs) == 4
    assert len(store.load_predictions(path, second)) == 9
    with sqlite3.connect(path) as connection:  # nothing of the replaced run is left behind
        assert connection.execute("SELECT COUNT(*) FROM predictions WHERE run_id = ?", (first,)).fetchone()[0] == 0
        assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 9 + 6 + 7 + 8


class ExplodingSkip:
    """A skipped entry whose path raises: simulates Ctrl-C in the middle of the write."""

    reason = "boom"

    @property
    def path(self) -> str:
        raise KeyboardInterrupt


def test_interrupted_or_failed_write_leaves_the_old_run(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    old = store.save_run(path, make_run(), make_rows(5))
    before = store.load_store(path)
    with pytest.raises(KeyboardInterrupt):
        store.save_run(path, make_run(), make_rows(9, seed=3), [ExplodingSkip()])  # after rows were inserted
    duplicate = make_rows(2)
    duplicate = replace(duplicate, image_paths=("same.jpg", "same.jpg"))
    with pytest.raises(StoreError, match="UNIQUE"):
        store.save_run(path, make_run(), duplicate)
    after = store.load_store(path)
    assert [r.run_id for r in after.runs] == [old]
    assert after.predictions[old].image_paths == before.predictions[old].image_paths
    np.testing.assert_array_equal(after.predictions[old].probabilities, before.predictions[old].probabilities)


def test_wrong_probability_shape_is_refused_before_writing(tmp_path: Path) -> None:
    rows = make_rows(4)
    with pytest.raises(ValueError, match="shape"):
        store.save_run(tmp_path / "r.sqlite", make_run(), replace(rows, probabilities=rows.probabilities[:, :2]))
    assert not (tmp_path / "r.sqlite").exists() or store.load_runs(tmp_path / "r.sqlite") == ()


def test_missing_corrupt_and_foreign_files_give_clear_messages(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results store at .*mushcam evaluate"):
        store.load_runs(tmp_path / "absent.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all, just some text" * 100)
    with pytest.raises(StoreError, match="not a readable SQLite results store"):
        store.load_store(garbage)
    with pytest.raises(StoreError, match="not a readable SQLite results store"):
        store.save_run(garbage, make_run(), make_rows(2))
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StoreError, match="not a MushCAM results store"):
        store.load_runs(foreign)
    with pytest.raises(StoreError, match="not a MushCAM results store"):
        store.save_run(foreign, make_run(), make_rows(2))
    with sqlite3.connect(foreign) as connection:  # and it was not touched
        assert [r[0] for r in connection.execute("SELECT name FROM sqlite_master")] == ["customers"]
    with pytest.raises(StoreError, match="is a folder"):
        store.load_runs(tmp_path)


def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store.save_run(path, make_run(), make_rows(2))
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer MushCAM"):
        store.load_runs(path)


def test_locked_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store.save_run(path, make_run(), make_rows(3))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked by another program"):
            store.save_run(path, make_run(), make_rows(4), timeout=0.2)
        with pytest.raises(StoreError, match="locked by another program"):
            store.load_runs(path, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(store.load_predictions(path, store.load_runs(path)[0].run_id)) == 3


def test_report_command_on_a_corrupt_store_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "bad.sqlite"
    garbage.write_bytes(b"\x00garbage" * 1000)
    assert main(["report", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a readable SQLite results store" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_runs_are_keyed_by_model_name_and_keep_the_architecture(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    plain = replace(make_run("resnet50"), manifest={"classes": CLASSES, "models": {"resnet50": {"checkpoint": "r.pt"}}})
    x4 = replace(make_run("resnet50-x4"), arch="resnet50",
                 manifest={"classes": CLASSES, "models": {"resnet50-x4": {"checkpoint": "r4.pt", "arch": "resnet50",
                                                                          "label": "ResNet-50 ×4"}}})
    store.save_run(path, plain, make_rows(3))
    store.save_run(path, x4, make_rows(4))  # same architecture and checkpoint hash: another model
    runs = store.load_runs(path)
    assert [(r.name, r.arch, r.label) for r in runs] == [("resnet50", "resnet50", "ResNet-50"),
                                                         ("resnet50-x4", "resnet50", "ResNet-50 ×4")]
    again = store.save_run(path, x4, make_rows(5))  # replaces only the x4 run
    assert {r.name: len(store.load_predictions(path, r.run_id)) for r in store.load_runs(path)} == {
        "resnet50": 3, "resnet50-x4": 5}
    assert again in {r.run_id for r in store.load_runs(path)}


VERSION_1_RUNS = """CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, backbone TEXT NOT NULL,
    checkpoint_path TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL, layer TEXT NOT NULL, data_root TEXT NOT NULL,
    manifest_json TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT NULL, versions_json TEXT NOT NULL,
    batch_size INTEGER NOT NULL, seconds REAL NOT NULL, n_images INTEGER NOT NULL)"""


def make_version_1_store(path: Path) -> None:
    """One efficientnet_b0 run with 3 rows, in the layout version 1 wrote: no arch column."""
    store.save_run(path, make_run("efficientnet_b0"), make_rows(3))
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE runs RENAME TO runs_new")
        connection.execute(VERSION_1_RUNS)
        connection.execute("INSERT INTO runs SELECT run_id, backbone, checkpoint_path, checkpoint_sha256, layer,"
                           " data_root, manifest_json, started_at, finished_at, versions_json, batch_size, seconds,"
                           " n_images FROM runs_new")
        connection.execute("DROP TABLE runs_new")
        connection.execute("PRAGMA user_version = 1")


def test_a_version_1_store_is_read_as_it_is_and_upgraded_on_write(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_version_1_store(path)
    old = store.load_store(path)
    assert [(r.name, r.arch, r.label) for r in old.runs] == [("efficientnet_b0", "efficientnet_b0", "EfficientNet-B0")]
    assert len(old.predictions[old.runs[0].run_id]) == 3
    store.save_run(path, replace(make_run("mine"), arch="resnet50"), make_rows(2))
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 2
    assert [(r.name, r.arch) for r in store.load_runs(path)] == [("efficientnet_b0", "efficientnet_b0"),
                                                                  ("mine", "resnet50")]


def test_write_transaction_upgrades_a_version_1_store_so_later_runs_keep_their_arch(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_version_1_store(path)
    with store.write_transaction(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS extra (x INTEGER)")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    assert "arch" in columns
    assert [(r.name, r.arch) for r in store.load_runs(path)] == [("efficientnet_b0", "efficientnet_b0")]


def test_a_failed_write_transaction_leaves_a_version_1_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_version_1_store(path)
    with pytest.raises(RuntimeError), store.write_transaction(path):
        raise RuntimeError("the writer failed")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "arch" not in {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
