"""Issue 18 §2, the trust family on the command line: each hostile case is one message and exit 2, a correct
result, or a resumed run; never a traceback, the store never left damaged or half written."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from factories import CLASSES, write_image_folder
from trust_damage import DAMAGE, damaged_copy
from trust_setup import write_trust_setup

import mushcam.trust.run as trust_run
from mushcam.trust import store as trust_store
from mushcam.trust.store import load_trust

MODEL = "mobilenet_v3_large"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One model's checkpoint, 8 photos, a store with its faithfulness and sanity runs."""
    return write_trust_setup(tmp_path_factory.mktemp("hostile-trust"), backbones=(MODEL,))


def assert_one_error(status: int, err: str, pattern: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and re.search(pattern, lines[0]), err


def faithfulness_args(setup: dict[str, Path], data: Path, out: Path, *extra: str) -> list[str]:
    return ["faithfulness", "--data", str(data), "--manifest", str(setup["ckpt"]), "--steps", "4",
            "--road-percentages", "50", "--out", str(out), *extra]


def sanity_args(setup: dict[str, Path], data: Path, *extra: str) -> list[str]:
    return ["sanity", "--data", str(data), "--manifest", str(setup["ckpt"]), "--model", MODEL, *extra]


# --- 1. one count parser --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "option", "value"), [
    ("faithfulness", "--limit", "0"), ("faithfulness", "--limit", "-3"), ("sanity", "--images", "0"),
    ("sanity", "--images", "-3"), ("patterns", "--limit", "0"),
])
def test_a_count_below_one_is_refused_by_the_one_parser(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, option: str,
    value: str,
) -> None:
    argv = {
        "faithfulness": faithfulness_args(setup, setup["data"], tmp_path / "out.sqlite", option, value),
        "sanity": sanity_args(setup, setup["data"], option, value),
        "patterns": ["patterns", "--store", str(tmp_path / "p.sqlite"), "--data", str(setup["data"]), "--model",
                     MODEL, "--out", str(tmp_path / "p"), option, value],
    }[command]
    status, out, err = run_cli(argv, capsys)
    assert_one_error(status, err, rf"argument {option}: must be at least 1; got {value}")
    assert out == "" and not (tmp_path / "out.sqlite").exists()


def test_a_count_that_is_no_number_names_the_option(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(sanity_args(setup, setup["data"], "--images", "five"), capsys)
    assert_one_error(status, err, r"argument --images: expected a whole number, got 'five'")


# --- 2. a folder of unreadable images -------------------------------------------------------------------------


@pytest.fixture
def unreadable(tmp_path: Path) -> Path:
    root = tmp_path / "broken"
    for name, _ in CLASSES[:2]:
        (root / name).mkdir(parents=True)
        (root / name / "a.png").write_text("<html>not an image</html>")
    return root


def test_sanity_on_a_folder_of_unreadable_images_says_none_could_be_read(
    setup: dict[str, Path], unreadable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.sqlite"
    status, _, err = run_cli(sanity_args(setup, unreadable, "--images", "4", "--out", str(out)), capsys)
    assert_one_error(status, err, rf"none of the 2 images in {re.escape(str(unreadable.resolve()))} could be read: "
                                  r"Amanita/a\.png: .*; Boletus/a\.png: .*replace the damaged files")
    assert "non-empty TensorList" not in err and not out.exists()


def test_faithfulness_on_a_folder_of_unreadable_images_says_none_could_be_read(
    setup: dict[str, Path], unreadable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.sqlite"
    status, _, err = run_cli(faithfulness_args(setup, unreadable, out), capsys)
    assert_one_error(status, err, r"none of the 2 images in .* could be read: Amanita/a\.png")
    assert load_trust(out).faithfulness == ()  # no complete run appears


# --- 3. damaged trust tables: the one reader ------------------------------------------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_report_of_a_damaged_trust_table_is_one_message(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    store = damaged_copy(setup["store"], tmp_path, damage)
    before = store.read_bytes()
    status, out, err = run_cli(["report", str(store)], capsys)
    assert_one_error(status, err, DAMAGE[damage][1])
    assert out == ""  # nothing half printed before the error
    assert store.read_bytes() == before


def test_mean_curves_of_a_short_blob_is_a_store_error(setup: dict[str, Path], tmp_path: Path) -> None:
    store = damaged_copy(setup["store"], tmp_path, "short-curves-blob")
    with sqlite3.connect(store) as connection:
        frun_id = connection.execute("SELECT frun_id FROM faithfulness_runs").fetchone()[0]
    with pytest.raises(trust_store.StoreError, match=r"curves blob holds 8 bytes.*re-run faithfulness"):
        trust_store.mean_curves(store, frun_id)


# --- 5. Ctrl-C in the middle of faithfulness, then a rerun -----------------------------------------------------


def image_rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as connection:
        return connection.execute(
            "SELECT image_path, image_sha256, true_idx, class_idx, deletion_auc, insertion_auc, road, curves"
            " FROM faithfulness_images ORDER BY image_path").fetchall()


def test_an_interrupted_faithfulness_run_resumes_and_equals_an_uninterrupted_one(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_image_folder(tmp_path / "test16", [n for n, _ in CLASSES], per_class=4, size=(48, 40))
    whole, resumed = tmp_path / "whole.sqlite", tmp_path / "resumed.sqlite"
    assert run_cli(faithfulness_args(setup, data, whole), capsys)[0] == 0

    original = trust_run.evaluate_map
    calls: list[int] = []

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the same arguments as evaluate_map
        calls.append(1)
        if len(calls) == 11:  # the first batch of 8 is stored, the second is cut short
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trust_run, "evaluate_map", interrupted)
    status, _, err = run_cli(faithfulness_args(setup, data, resumed), capsys)
    assert status == 130 and "interrupted" in err and "Traceback" not in err
    assert load_trust(resumed).faithfulness == ()  # readers see no half run
    assert len(image_rows(resumed)) == 8

    calls.clear()
    status, out, _ = run_cli(faithfulness_args(setup, data, resumed), capsys)
    assert status == 0 and "resuming an interrupted run, 8 of 16 images already scored" in out
    assert len(calls) == 8  # only the images the first run did not finish
    assert image_rows(resumed) == image_rows(whole)  # the same rows, no duplicates
    with sqlite3.connect(resumed) as connection:
        assert connection.execute("SELECT COUNT(*), SUM(complete), SUM(n_images) FROM faithfulness_runs"
                                  ).fetchone() == (1, 1, 16)
    assert load_trust(resumed).faithfulness[0].n_images == 16


def test_a_resumed_run_over_fewer_images_keeps_only_those(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted over 16 photos, rerun with --limit 4: the finished run holds exactly those 4, as a fresh run
    of --limit 4 would, and a photo whose bytes changed since is scored again."""
    data = write_image_folder(tmp_path / "test16", [n for n, _ in CLASSES], per_class=4, size=(48, 40))
    fresh, resumed = tmp_path / "fresh.sqlite", tmp_path / "resumed.sqlite"
    original = trust_run.evaluate_map
    calls: list[int] = []

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trust_run, "evaluate_map", interrupted)
    assert run_cli(faithfulness_args(setup, data, resumed), capsys)[0] == 130
    monkeypatch.setattr(trust_run, "evaluate_map", original)
    (data / "Amanita" / "img_0.png").write_bytes((data / "Suillus" / "img_3.png").read_bytes())  # changed since
    assert run_cli(faithfulness_args(setup, data, fresh, "--limit", "4"), capsys)[0] == 0
    calls.clear()
    monkeypatch.setattr(trust_run, "evaluate_map", lambda *a, **k: calls.append(1) or original(*a, **k))
    status, out, _ = run_cli(faithfulness_args(setup, data, resumed, "--limit", "4"), capsys)
    assert status == 0 and "2 of 4 images already scored" in out  # Amanita and Boletus img_0 were done
    assert len(calls) == 3  # Amanita/img_0 again (its bytes changed), Gyromitra and Suillus img_0
    assert image_rows(resumed) == image_rows(fresh) and len(image_rows(resumed)) == 4


# --- 6. a file name that is not valid UTF-8 -------------------------------------------------------------------


def test_faithfulness_says_a_non_utf8_file_name_is_skipped(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_image_folder(tmp_path / "names", [n for n, _ in CLASSES[:2]], per_class=1, size=(48, 40))
    source = data / "Amanita" / "img_0.png"
    os.rename(source, os.fsencode(data / "Amanita") + b"/caf\xe9_latin1.png")
    status, out, _ = run_cli(faithfulness_args(setup, data, tmp_path / "n.sqlite"), capsys)
    assert status == 0
    assert re.search(r"skipped 1 file \(Amanita/caf\\xe9_latin1\.png\): the file name is not valid UTF-8; "
                     r"rename the file", out), out
    assert load_trust(tmp_path / "n.sqlite").faithfulness[0].image_paths == ("Boletus/img_0.png",)


# --- 7. a read-only store: said before the work ---------------------------------------------------------------


@pytest.fixture
def read_only_store(setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A copy of the store, chmod 444, in a folder chmod 555; as root (who ignores modes) the check's
    opener is made to honour the modes, which is what the check asks of the file system."""
    folder = tmp_path / "locked"
    folder.mkdir()
    store = folder / "results.sqlite"
    store.write_bytes(setup["store"].read_bytes())
    store.chmod(0o444)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        def honour_modes(path: str, flags: int) -> int:
            target = Path(path) if not flags & os.O_CREAT else Path(path).parent
            if not target.stat().st_mode & stat.S_IWUSR:
                raise PermissionError(13, "Permission denied", path)
            return os.open(path, flags, 0o600)

        monkeypatch.setattr(trust_store, "open_probe", honour_modes)

    def no_work(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model was loaded although the store cannot be written")

    monkeypatch.setattr(trust_run, "load_catalog_entry", no_work)
    yield store
    folder.chmod(0o755)
    store.chmod(0o644)


@pytest.mark.parametrize("command", ["faithfulness", "sanity"])
def test_a_read_only_store_is_refused_before_any_model_runs(
    setup: dict[str, Path], read_only_store: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    before = read_only_store.read_bytes()
    argv = (faithfulness_args(setup, setup["data"], read_only_store) if command == "faithfulness"
            else sanity_args(setup, setup["data"], "--images", "2", "--out", str(read_only_store)))
    status, _, err = run_cli(argv, capsys)
    assert_one_error(status, err, r"cannot write to the results store .*results\.sqlite: (the file|its folder .*) is "
                                  r"read-only.*nothing was computed")
    assert read_only_store.read_bytes() == before
    assert sorted(p.name for p in read_only_store.parent.iterdir()) == ["results.sqlite"]  # no probe left


def test_the_writability_check_refuses_a_read_only_folder_alone(
    setup: dict[str, Path], read_only_store: Path
) -> None:
    read_only_store.parent.chmod(0o755)
    read_only_store.chmod(0o644)
    read_only_store.parent.chmod(0o555)  # the file may be written, its journal may not be created
    with pytest.raises(trust_store.StoreError, match=r"its folder .* is read-only \(SQLite writes its journal there\)"):
        trust_store.check_writable(read_only_store)


# --- 8. the sanity check says how far it is -------------------------------------------------------------------


def test_sanity_prints_maps_done_of_total_and_the_time_left(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(sanity_args(setup, setup["data"], "--images", "1"), capsys)
    assert status == 0, err
    lines = [line for line in err.splitlines() if line.startswith(f"sanity {MODEL} · gradcam: map ")]
    steps = len(re.findall(r"^\s+\d+\. \+", out, re.M))  # the printed cascade, one line per block
    assert len(lines) == steps + 1  # the trained model's map, then one per randomised block
    assert lines[0].startswith(f"sanity {MODEL} · gradcam: map 1/{steps + 1} (")
    assert lines[-1].startswith(f"sanity {MODEL} · gradcam: map {steps + 1}/{steps + 1} (100%)")
    assert all(re.search(r"\d+\.\d s so far, about \d+ s left$", line) for line in lines)
    seconds_left = [int(re.search(r"about (\d+) s left", line).group(1)) for line in lines]
    assert seconds_left[-1] == 0 and np.all(np.asarray(seconds_left) >= 0)


def test_sanity_progress_callback_counts_every_map(setup: dict[str, Path]) -> None:
    from mushcam.manifest import load_manifest

    seen: list[tuple[int, int]] = []
    run = trust_run.sanity_over_folder(setup["data"], load_manifest(setup["ckpt"]), None, MODEL, "gradcam", 1,
                                       log=lambda _: None, progress=lambda done, total: seen.append((done, total)))
    total = len(run.blocks) + 1
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_the_setup_holds_one_model(setup: dict[str, Path]) -> None:
    """Guard: the damage patterns name mobilenet_v3_large, the setup's only model."""
    assert [r.key.model for r in load_trust(setup["store"]).faithfulness] == [MODEL]
