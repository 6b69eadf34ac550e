"""The hostile-input catalogue: every malformed input gets one clear answer, and nothing is lost.

Each case is what a hostile (or unlucky) user brings, with what they must see. Command-line
cases run ``mushcam.cli.main(argv)`` and assert the exit status, the one-line message, that
no traceback is printed, and that the results of an earlier good run are byte-for-byte
intact. Library cases that need no command line assert the answer a caller gets beside their
modules' tests: the map cache in ``unit/cache/test_hostile_cache.py``, atomic writes in
``unit/test_hostile_files.py``, view sizes in ``unit/test_hostile_render.py``. Page cases are in
``app/test_hostile_pages.py``; checkpoint and manifest cases live beside their modules' tests.
docs/reliability.md lists the families as a table.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_cli
from factories import CLASSES, make_image, write_image_folder, write_manifest
from hostile_checkpoints import make_checkpoint, write_entry_folder, write_million_safetensors
from PIL import Image
from project_paths import PROJECT_ROOT

from mushcam import cache as cam_cache
from mushcam.cli import main
from mushcam.manifest import load_manifest

MODEL = "mobilenet_v3_large"
NAMES = [name for name, _ in CLASSES]
BAD_NAME = os.fsdecode(b"caf\xe9_latin1.png")  # not valid UTF-8: reaches Python with surrogate escapes


# ------------------------------------------------------------------------------ the world


@dataclass
class World:
    """What every case starts from: a checkpoint folder, images, a data set, an earlier good run."""

    root: Path
    ckpt: Path  # manifest + mobilenet_v3_large.pt (random weights, 64 px)
    nan_ckpt: Path  # the same manifest, NaN weights
    image: Path
    data: Path  # ROOT/<Class>/img_k.png
    store: Path  # a good results store (one run)
    explained: Path  # output folder of a good explain run

    def snapshot(self) -> dict[str, str]:
        """SHA-256 of every file of the earlier results (checked after each case)."""
        files = [p for p in sorted(self.explained.rglob("*")) if p.is_file()] + [self.store]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    ckpt = root / "ckpt"
    write_manifest(ckpt, backbones=(MODEL,))
    nan_ckpt = root / "nan_ckpt"
    write_manifest(nan_ckpt, backbones=(MODEL,))
    state = torch.load(nan_ckpt / f"{MODEL}.pt", weights_only=True)
    state["classifier.3.weight"] = torch.full_like(state["classifier.3.weight"], float("nan"))
    torch.save(state, nan_ckpt / f"{MODEL}.pt")
    image = root / "photo.png"
    make_image(90, 70, seed=3).save(image)
    data = write_image_folder(root / "data", NAMES, per_class=2)
    store = root / "results.sqlite"
    os.environ.setdefault("MUSHCAM_CACHE", str(root / "cache"))
    assert main(["evaluate", "--data", str(data), "--manifest", str(ckpt), "--out", str(store)]) == 0
    explained = root / "explained"
    assert main(["explain", str(image), "--backbone", MODEL, "--manifest", str(ckpt), "--out", str(explained)]) == 0
    return World(root, ckpt, nan_ckpt, image, data, store, explained)


# ------------------------------------------------------------------------------ CLI cases


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    argv: Callable[[World, Path], list[str]]  # (world, a fresh folder) -> command line
    message: str  # regular expression the user's one line must match
    rc: int = 2


def _explain(image: Callable[[World, Path], Path | str], *extra: str) -> Callable[[World, Path], list[str]]:
    def argv(w: World, tmp: Path) -> list[str]:
        return ["explain", str(image(w, tmp)), "--backbone", MODEL, "--manifest", str(w.ckpt),
                "--out", str(w.explained), *extra]
    return argv


def _good_image(w: World, tmp: Path) -> Path:
    return w.image


def _made(make: Callable[[Path], None], name: str = "x.jpg") -> Callable[[World, Path], Path]:
    def image(w: World, tmp: Path) -> Path:
        path = tmp / name
        make(path)
        return path
    return image


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    make_image(200, 150).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _huge_png(path: Path) -> None:
    Image.new("L", (9000, 8000)).save(path)  # 72 MP of zeros: a small file, a large decode


def _broken_link(path: Path) -> None:
    path.symlink_to(path.parent / "gone.png")


def _gradcam(*extra: str, data: Callable[[World, Path], str] | None = None) -> Callable[[World, Path], list[str]]:
    def argv(w: World, tmp: Path) -> list[str]:
        source = data(w, tmp) if data else str(w.data)
        return ["gradcam", "--data", source, "--manifest", str(w.ckpt), "--cache", str(tmp / "cache"),
                "--out", str(tmp / "maps"), *extra]
    return argv


def _evaluate(*extra: str, out: Callable[[World, Path], Path] | None = None) -> Callable[[World, Path], list[str]]:
    def argv(w: World, tmp: Path) -> list[str]:
        target = out(w, tmp) if out else tmp / "new.sqlite"
        return ["evaluate", "--data", str(w.data), "--manifest", str(w.ckpt), "--out", str(target), *extra]
    return argv


def _report(make: Callable[[World, Path], Path]) -> Callable[[World, Path], list[str]]:
    def argv(w: World, tmp: Path) -> list[str]:
        return ["report", str(make(w, tmp))]
    return argv


def _store_copy(edit: Callable[[sqlite3.Connection], None]) -> Callable[[World, Path], Path]:
    """A copy of the good store with one SQL edit applied."""
    def make(w: World, tmp: Path) -> Path:
        path = tmp / "edited.sqlite"
        path.write_bytes(w.store.read_bytes())
        connection = sqlite3.connect(path)
        edit(connection)
        connection.commit()
        connection.close()
        return path
    return make


def _manifest_text(tmp: Path, text: str) -> Path:
    folder = tmp / "hostile_manifest"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(text)
    return folder


def _text_file(w: World, tmp: Path) -> Path:
    path = tmp / "notes.sqlite"
    path.write_text("these are my notes, not a database\n" * 50)
    return path


def _foreign_sqlite(w: World, tmp: Path) -> Path:
    path = tmp / "other.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE accounts (id INTEGER, owner TEXT)")
    connection.commit()
    connection.close()
    return path


def _nan_blob(connection: sqlite3.Connection) -> None:
    blob = np.full(len(NAMES), np.nan, dtype="<f4").tobytes()
    connection.execute(
        "UPDATE predictions SET probabilities = ? WHERE image_path = (SELECT MIN(image_path) FROM predictions)", (blob,)
    )


def _entry(entry: dict, kind: str | None = "tiny", classes: list[str] | None = None, command: str = "explain",
           ) -> Callable[[World, Path], list[str]]:
    """``command`` (explain, gradcam, evaluate) on a folder whose one model ``mine`` is ``entry``
    with the checkpoint ``kind``."""
    def argv(w: World, tmp: Path) -> list[str]:
        folder = tmp / "entry"
        folder.mkdir()
        if kind == "million_safetensors":
            checkpoint = write_million_safetensors(folder / "million.safetensors").name
        else:
            checkpoint = make_checkpoint(kind, folder).name if kind else None
        write_entry_folder(folder, entry, checkpoint, classes=classes)
        if command == "gradcam":
            return ["gradcam", "--data", str(w.data), "--manifest", str(folder), "--out", str(tmp / "out")]
        if command == "evaluate":
            return ["evaluate", "--data", str(w.data), "--manifest", str(folder), "--out", str(tmp / "r.sqlite")]
        return ["explain", str(w.image), "--model", "mine", "--manifest", str(folder), "--out", str(tmp / "out")]
    return argv


CLEAN = r"(?s)^(?!.*(UserWarning|site-packages|frame #|root:x)).*"  # no warning, C++ frame or file content


CLI_CASES = [
    # images
    Case("images", "folder-as-image", _explain(lambda w, tmp: tmp), r"is a folder, not an image file"),
    Case("images", "folder-named-jpg", _explain(_made(lambda p: p.mkdir(), "photo.jpg")), r"photo\.jpg is a folder"),
    Case("images", "missing-file", _explain(lambda w, tmp: tmp / "nope.jpg"), r"no such file: .*nope\.jpg"),
    Case("images", "empty-file", _explain(_made(lambda p: p.write_bytes(b""))), r"the file is empty"),
    Case("images", "text-as-jpg", _explain(_made(lambda p: p.write_text("hello"))),
         r"not an image file that can be read"),
    Case("images", "truncated-png", _explain(_made(_truncated_png, "cut.png")), r"truncated or corrupt"),
    Case("images", "72-megapixel", _explain(_made(_huge_png, "huge.png")), r"9000x8000 pixels .*the limit is 64 MP"),
    Case("images", "broken-symlink", _explain(_made(_broken_link, "link.png")), r"link to a file that does not exist"),
    Case("images", "html-as-png", _explain(_made(lambda p: p.write_text("<html></html>"), "page.png")),
         r"not an image file that can be read"),
    # options of explain
    Case("options", "target-superscript-two", _explain(_good_image, "--target", "²"), r"--target '²': unknown class"),
    Case("options", "target-out-of-range", _explain(_good_image, "--target", "99"),
         r"--target 99 is out of range: there are 4"),
    Case("options", "target-unknown-name", _explain(_good_image, "--target", "Morel"),
         r"--target 'Morel': unknown class"),
    Case("options", "top-k-zero", _explain(_good_image, "--top-k", "0"), r"argument --top-k: must be at least 1"),
    Case("options", "top-k-negative", _explain(_good_image, "--top-k", "-3"), r"argument --top-k: must be at least 1"),
    Case("options", "top-k-word", _explain(_good_image, "--top-k", "five"),
         r"argument --top-k: expected a whole number"),
    Case("options", "alpha-above-one", _explain(_good_image, "--alpha", "2"), r"--alpha must be between 0 and 1"),
    Case("options", "alpha-nan", _explain(_good_image, "--alpha", "nan"), r"--alpha must be between 0 and 1"),
    Case("options", "colormap-unknown", _explain(_good_image, "--colormap", "rainbow"), r"--colormap must be one of"),
    Case("options", "layer-unknown", _explain(_good_image, "--layer", "nope"), r"no module named 'nope'"),
    Case("options", "layer-not-4d", _explain(_good_image, "--layer", "classifier"), r"needs a 4-D feature map"),
    # options of gradcam
    Case("options", "cache-max-mb-inf", _gradcam("--cache-max-mb", "inf"),
         r"--cache-max-mb must be a positive, finite"),
    Case("options", "cache-max-mb-nan", _gradcam("--cache-max-mb", "nan"),
         r"--cache-max-mb must be a positive, finite"),
    Case("options", "cache-max-mb-zero", _gradcam("--cache-max-mb", "0"), r"--cache-max-mb must be a positive, finite"),
    Case("options", "cache-max-mb-negative", _gradcam("--cache-max-mb", "-5"), r"--cache-max-mb must be a positive"),
    Case("options", "gradcam-batch-size-zero", _gradcam("--batch-size", "0"), r"--batch-size must be at least 1"),
    Case("options", "shard-zero", _gradcam("--shard", "0/2"), r"--shard 0/2: k must be between 1 and N"),
    Case("options", "shard-word", _gradcam("--shard", "half"), r"--shard must look like k/N"),
    Case("options", "png-level-twelve", _gradcam("--png-level", "12"), r"--png-level must be between 0 and 9"),
    Case("options", "max-side-tiny", _gradcam("--max-side", "3"), r"--max-side must be between 16 and 8192"),
    Case("options", "max-side-huge", _gradcam("--max-side", str(10**12)), r"--max-side must be between 16 and 8192"),
    Case("options", "gradcam-out-is-a-file", lambda w, tmp: _gradcam()(w, tmp)[:-1] + [str(w.image)],
         r"--out .*photo\.png is a file; give a folder"),
    Case("options", "explain-out-is-a-file",
         lambda w, tmp: ["explain", str(w.image), "--backbone", MODEL, "--manifest", str(w.ckpt),
                         "--out", str(w.image)],
         r"--out .*photo\.png is a file; give a folder"),
    Case("options", "compare-seed-negative",
         lambda w, tmp: ["compare", str(w.data), "--seed", "-1", "--manifest", str(w.ckpt), "--out", str(tmp)],
         r"--seed must be 0 or more"),
    Case("options", "views-unknown", _gradcam("--views", "xray"), r"--views must list some of"),
    Case("options", "device-unknown", _gradcam("--device", "tpu"), r"--device must be auto, cpu, cuda"),
    Case("options", "gradcam-target-superscript", _gradcam("--target", "²"), r"--target '²': unknown class"),
    Case("options", "gradcam-alpha", _gradcam("--alpha", "1.5"), r"--alpha must be between 0 and 1"),
    Case("options", "gradcam-missing-data", _gradcam(data=lambda w, tmp: str(tmp / "nowhere")),
         r"--data: no such file or folder"),
    # options of evaluate and compare
    Case("options", "evaluate-batch-size-zero", _evaluate("--batch-size", "0"), r"--batch-size must be between 1 and"),
    Case("options", "evaluate-out-folder", _evaluate(out=lambda w, tmp: tmp), r"is a folder"),
    Case("options", "evaluate-out-missing-folder", _evaluate(out=lambda w, tmp: tmp / "no" / "r.sqlite"),
         r"does not exist"),
    Case("options", "compare-n-zero",
         lambda w, tmp: ["compare", str(w.data), "--n", "0", "--manifest", str(w.ckpt), "--out", str(tmp)],
         r"--n must be between 1 and 100"),
    Case("options", "compare-n-huge",
         lambda w, tmp: ["compare", str(w.data), "--n", "100000", "--manifest", str(w.ckpt), "--out", str(tmp)],
         r"--n must be between 1 and 100 .*gradcam"),
    Case("options", "compare-too-many-files",
         lambda w, tmp: ["compare", *[str(w.image)] * 101, "--manifest", str(w.ckpt), "--out", str(tmp)],
         r"101 images given; one grid holds at most 100"),
    Case("options", "compare-missing-input",
         lambda w, tmp: ["compare", str(tmp / "nope.jpg"), "--manifest", str(w.ckpt), "--out", str(tmp)],
         r"no such file or folder"),
    # results stores
    Case("stores", "report-missing", _report(lambda w, tmp: tmp / "none.sqlite"), r"no results store at"),
    Case("stores", "report-folder", _report(lambda w, tmp: tmp), r"is a folder; the results store is a file"),
    Case("stores", "report-text-file", _report(_text_file), r"not a readable SQLite results store"),
    Case("stores", "report-foreign-sqlite", _report(_foreign_sqlite), r"not a MushCAM results store"),
    Case("stores", "report-bad-manifest-json",
         _report(_store_copy(lambda c: c.execute("UPDATE runs SET manifest_json = '{not json'"))),
         r"run 1: the manifest_json column is not a JSON object"),
    Case("stores", "report-manifest-without-classes",
         _report(_store_copy(lambda c: c.execute("UPDATE runs SET manifest_json = '{\"classes\": 3}'"))),
         r"run 1: the recorded manifest has no usable class list"),
    Case("stores", "report-class-index-out-of-range",
         _report(_store_copy(lambda c: c.execute("UPDATE predictions SET pred_idx = 17"))),
         r"pred_idx holds class indices outside 0\.\.3"),
    Case("stores", "report-negative-true-index",
         _report(_store_copy(lambda c: c.execute("UPDATE predictions SET true_idx = -1"))),
         r"true_idx holds class indices outside"),
    Case("stores", "report-nan-probabilities", _report(_store_copy(_nan_blob)), r"stored probabilities are not finite"),
    Case("stores", "report-short-probability-blob",
         _report(_store_copy(lambda c: c.execute("UPDATE predictions SET probabilities = x'00'"))),
         r"probability vectors do not have 4 entries"),
    Case("stores", "report-newer-version", _report(_store_copy(lambda c: c.execute("PRAGMA user_version = 99"))),
         r"written by a newer MushCAM"),
    Case("stores", "evaluate-into-text-file", _evaluate(out=_text_file), r"not a readable SQLite results store"),
    Case("stores", "evaluate-into-foreign-sqlite", _evaluate(out=_foreign_sqlite), r"not a MushCAM results store"),
    # manifests that Python's json cannot hold (the manifest's own checks live in test_manifest.py)
    Case("manifests", "nested-100000-deep",
         lambda w, tmp: ["explain", str(w.image), "--backbone", MODEL, "--manifest",
                         str(_manifest_text(tmp, "[" * 100_000 + "]" * 100_000)),
                         "--out", str(w.explained)],
         r"manifest.*(nested too deeply|too deep|nesting)"),
    Case("manifests", "5000-digit-number",
         lambda w, tmp: ["gradcam", "--data", str(w.data), "--manifest",
                         str(_manifest_text(tmp, '{"classes": ' + "9" * 5000 + "}")),
                         "--out", str(tmp / "maps")],
         r"manifest.*(more than 4,300 digits|digit|integer|number)"),
    # checkpoints and kwargs, round two (issue 18 §2); the library's cases: unit/models/test_hostile_checkpoints_round2
    Case("checkpoints", "empty-dict", _entry({"arch": "resnet18"}, "empty_dict"),
         CLEAN + r"empty_dict\.pt holds no tensors: it is an empty dict"),
    Case("checkpoints", "link-to-dev-zero", _entry({"arch": "resnet18"}, "dev_zero"),
         CLEAN + r"dev_zero\.pt \(a link to /dev/zero\) is a character device, not a checkpoint file"),
    Case("checkpoints", "gradcam-link-to-dev-zero", _entry({"arch": "resnet18"}, "dev_zero", command="gradcam"),
         CLEAN + r"dev_zero\.pt \(a link to /dev/zero\) is a character device"),  # was "not found"
    Case("checkpoints", "link-to-proc-self-mem", _entry({"arch": "resnet18"}, "proc_self_mem"),
         CLEAN + r"proc_self_mem\.pt \(a link to /proc/\d+/mem\) is a special file of the operating system"),
    Case("checkpoints", "link-to-etc-passwd", _entry({"arch": "resnet18"}, "etc_passwd"),
         CLEAN + r"etc_passwd\.pt: it is a text file, not a PyTorch checkpoint"),
    Case("checkpoints", "pickle-protocol-4", _entry({"arch": "resnet18"}, "protocol4"),
         CLEAN + r"protocol4\.pt: it was saved with pickle protocol 4, which PyTorch's safe"),
    Case("checkpoints", "plain-pickle", _entry({"arch": "resnet18"}, "plain_pickle"),
         CLEAN + r"a plain Python pickle \(pickle\.dump\), not a PyTorch checkpoint"),
    Case("checkpoints", "million-safetensors", _entry({"arch": "resnet18"}, "million_safetensors"),
         CLEAN + r"its safetensors header is 67\.1 MB \(the limit is 8\.0 MB\)"),
    Case("checkpoints", "kwargs-unknown-key", _entry({"arch": "regnet_y_400mf", "kwargs": {"bogus": 1}}),
         CLEAN + r"models\.mine: regnet_y_400mf does not accept kwargs 'bogus'; it accepts .*stem_width"),
    Case("checkpoints", "kwargs-width-mult-1e300",
         _entry({"arch": "mobilenet_v3_large", "kwargs": {"width_mult": 1e300}}),
         CLEAN + r"models\.mine: kwargs width_mult = 1e\+300 is not a plausible architecture setting"),
    Case("checkpoints", "classes-differ-only-in-case",
         _entry({"arch": "resnet18"}, classes=["Amanita", "amanita", "Boletus", "Suillus"]),
         r"has 'Amanita' and 'amanita', which differ only in case or Unicode form"),
    Case("options", "cache-max-mb-1e308", _gradcam("--cache-max-mb", "1e308"),
         r"--cache-max-mb must be a positive, finite number of megabytes, at most 10,000,000 \(10 TB\); got 1e\+308"),
    # non-finite model outputs
    Case("non-finite", "explain-nan-weights",
         lambda w, tmp: ["explain", str(w.image), "--backbone", MODEL, "--manifest", str(w.nan_ckpt),
                         "--out", str(w.explained)],
         rf"{MODEL}.*(non-finite|not finite)"),
    Case("non-finite", "evaluate-nan-weights",
         lambda w, tmp: ["evaluate", "--data", str(w.data), "--manifest", str(w.nan_ckpt), "--out", str(w.store)],
         rf"{MODEL}.*(non-finite|not finite)"),
    Case("non-finite", "gradcam-nan-weights",
         lambda w, tmp: ["gradcam", "--data", str(w.data), "--manifest", str(w.nan_ckpt), "--out", str(tmp / "maps")],
         rf"{MODEL}.*(non-finite|not finite)"),
    Case("non-finite", "compare-nan-weights",
         lambda w, tmp: ["compare", str(w.image), "--manifest", str(w.nan_ckpt), "--out", str(tmp), "--no-cache"],
         rf"{MODEL}.*(non-finite|not finite)"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[f"{c.family}:{c.name}" for c in CLI_CASES])
def test_cli_answers_in_one_line_and_keeps_earlier_results(case: Case, world: World, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = world.snapshot()
    rc, out, err = run_cli(case.argv(world, tmp_path), capsys)
    assert rc == case.rc, (out, err)
    assert re.search(case.message, err), err
    assert "Traceback" not in out + err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) <= 1
    assert world.snapshot() == before  # the earlier run's files and store are untouched
    assert not list(world.explained.glob(".*tmp"))  # no temp file left behind


def test_evaluate_skips_a_checkpoint_that_is_a_pipe_saying_so(world: World, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Was "checkpoint not found"; opening the pipe would have blocked for ever."""
    rc, out, err = run_cli(_entry({"arch": "resnet18"}, "fifo", command="evaluate")(world, tmp_path), capsys)
    assert rc == 2 and "Traceback" not in out + err
    assert re.search(r"skipping mine: checkpoint .*fifo\.pt is a named pipe \(FIFO\), not a checkpoint file", out + err)
    assert not (tmp_path / "r.sqlite").exists()


# ---------------------------------------------------------------- checked before any work


def test_evaluate_refuses_an_unusable_store_before_running_any_model(world: World, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the store was checked")

    monkeypatch.setattr("mushcam.evaluate.predict.load_catalog_entry", no_model)  # where evaluate_models calls it
    monkeypatch.setattr("mushcam.store.connection.DEFAULT_TIMEOUT", 0.2)  # where _connect reads it
    locked = tmp_path / "locked.sqlite"
    locked.write_bytes(world.store.read_bytes())
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        rc, _, err = run_cli(
            ["evaluate", "--data", str(world.data), "--manifest", str(world.ckpt), "--out", str(locked)], capsys
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert rc == 2 and "is locked by another program" in err and "Traceback" not in err
    for bad in (_text_file(world, tmp_path), _foreign_sqlite(world, tmp_path)):
        rc, _, err = run_cli(
            ["evaluate", "--data", str(world.data), "--manifest", str(world.ckpt), "--out", str(bad)], capsys
        )
        assert rc == 2 and "Traceback" not in err
    assert not (tmp_path / "new.sqlite").exists()


def test_a_failed_first_save_leaves_no_empty_store(world: World, tmp_path: Path) -> None:
    from mushcam.store import StoreError, load_store, save_run

    contents = load_store(world.store)
    run = contents.runs[0]
    rows = contents.predictions[run.run_id]
    bad = type(rows)(rows.image_paths[:-1] + (BAD_NAME,), *[getattr(rows, f) for f in
                     ("image_sha256", "true_idx", "pred_idx", "confidence", "probabilities")])
    target = tmp_path / "fresh.sqlite"
    with pytest.raises(StoreError, match=r"the name .*caf\\xe9_latin1\.png is not valid UTF-8"):
        save_run(target, run, bad)
    assert not target.exists()


def test_a_hot_journal_left_by_a_killed_writer_is_rolled_back_not_called_read_only(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journalled.sqlite"
    path.write_bytes(world.store.read_bytes())
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA cache_size=1')\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "c.execute('UPDATE predictions SET probabilities = randomblob(16000)')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    writer.kill()
    writer.wait()
    journal = path.with_name(path.name + "-journal")
    assert journal.is_file() and journal.stat().st_size > 0
    rc, out, err = run_cli(["report", str(path)], capsys)
    assert rc == 0 and "read-only" not in err and "Traceback" not in err
    assert MODEL in out or "MobileNet" in out
    assert not journal.exists() or journal.stat().st_size == 0  # rolled back: the last complete run is back


# ------------------------------------------------------------------------- file names, links


def _data_with(world: World, tmp: Path, extra: Callable[[Path], None]) -> Path:
    data = tmp / "data"
    for item in sorted(world.data.rglob("*.png")):
        target = data / item.relative_to(world.data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.read_bytes())
    extra(data)
    return data


def _bad_name(data: Path) -> None:
    (data / "Amanita" / BAD_NAME).write_bytes((data / "Amanita" / "img_0.png").read_bytes())


def _linked_files(data: Path) -> None:
    pool = data.parent / "pool"
    pool.mkdir()
    for path in sorted((data / "Boletus").iterdir()):
        moved = pool / path.name
        path.rename(moved)
        path.symlink_to(moved)


def _root_link(data: Path) -> None:
    (data / "Everything").symlink_to("/")


def _broken(data: Path) -> None:
    (data / "Suillus" / "gone.png").symlink_to(data / "nowhere.png")


NAME_CASES = [
    ("non-utf8-name", _bad_name, 8, r"caf\\xe9_latin1\.png.*not valid UTF-8"),
    ("symlinked-files", _linked_files, 8, None),
    ("class-folder-links-to-root", _root_link, 8, r"Everything.*links to /"),
    ("broken-symlink", _broken, 8, r"gone\.png.*does not exist"),
]


@pytest.mark.parametrize("name, extra, images, skip_message", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_evaluate_keeps_or_skips_odd_files_with_the_reason(name, extra, images, skip_message, world: World,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mushcam.store import load_store

    data = _data_with(world, tmp_path, extra)
    out = tmp_path / "r.sqlite"
    rc, text, err = run_cli(["evaluate", "--data", str(data), "--manifest", str(world.ckpt), "--out", str(out)], capsys)
    assert rc == 0, err
    assert "Traceback" not in text + err
    contents = load_store(out)
    assert len(contents.predictions[contents.runs[0].run_id]) == images
    if skip_message:
        assert re.search(skip_message, text + err)
        reasons = " ".join(f"{s.path}: {s.reason}" for s in contents.skipped[contents.runs[0].run_id])
        assert re.search(skip_message, reasons)


@pytest.mark.parametrize("name, extra, images, skip_message", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_gradcam_keeps_or_skips_odd_files_with_the_reason(name, extra, images, skip_message, world: World,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data_with(world, tmp_path, extra)
    rc, text, err = run_cli(["gradcam", "--data", str(data), "--manifest", str(world.ckpt),
                             "--cache", str(tmp_path / "c"), "--views", "overlay", "--out", str(tmp_path / "maps")],
                            capsys)
    assert rc == 0, err
    assert "Traceback" not in text + err
    rows = (tmp_path / "maps" / MODEL / "predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + images
    if name == "symlinked-files":  # the relative path is where the link lies
        assert any(row.startswith("Boletus/img_0.png,") for row in rows)
    if skip_message:
        assert re.search(skip_message, err)


@pytest.mark.parametrize("name, extra, images, skip_message", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_compare_keeps_or_skips_odd_files_with_the_reason(name, extra, images, skip_message, world: World,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data_with(world, tmp_path, extra)
    out = tmp_path / "export"
    rc, text, err = run_cli(["compare", str(data), "--n", "8", "--no-outcome-mix", "--manifest", str(world.ckpt),
                             "--out", str(out)], capsys)
    assert rc == 0, err
    assert "Traceback" not in text + err
    table = next(out.glob("*[0-9].csv")).read_text(encoding="utf-8").splitlines()
    assert len(table) == 1 + images
    assert all(p.stat().st_size > 0 for p in out.iterdir())
    if skip_message:
        assert re.search(skip_message, err)


def test_explain_of_a_non_utf8_file_name_writes_valid_json(world: World, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / BAD_NAME
    image.write_bytes(world.image.read_bytes())
    rc, _, err = run_cli(["explain", str(image), "--backbone", MODEL, "--manifest", str(world.ckpt),
                          "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    text = (tmp_path / "out" / "prediction.json").read_text(encoding="utf-8")
    assert json.loads(text)["image"].endswith("caf\\xe9_latin1.png")


# ------------------------------------------------------------------------------ the map cache


def test_a_cached_map_of_the_wrong_shape_is_recomputed(world: World, tmp_path: Path) -> None:
    from mushcam.data import load_image
    from mushcam.explain import explain_image
    from mushcam.models import load_model

    manifest = load_manifest(world.ckpt)
    model = load_model(MODEL, world.ckpt / f"{MODEL}.pt", num_classes=4)
    image = load_image(world.image)
    layer = manifest.models[MODEL].layer
    cache = cam_cache.CamCache(tmp_path / "cache")
    key = cam_cache.cam_key("c" * 64, "i" * 64, layer, None, manifest.input)
    cache.put(key, torch.ones(500, 500), torch.full((4,), 0.25), 0)  # a 500 x 500 map cannot come from a 64 px input
    got = cam_cache.cached_explanation(cache, model, image, manifest.input, layer, None, "c" * 64, "i" * 64)
    fresh = explain_image(model, image, manifest.input, layer)
    assert got.cam.shape == fresh.cam.shape
    assert torch.allclose(got.probabilities, fresh.probabilities)


def test_a_cache_folder_that_cannot_be_written_keeps_maps_in_memory(world: World, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("not a folder")
    rc, out, err = run_cli(["gradcam", "--data", str(world.data), "--manifest", str(world.ckpt),
                            "--cache", str(blocked), "--views", "overlay", "--out", str(tmp_path / "maps")], capsys)
    assert rc == 0 and "cannot write the cache" in err and "Traceback" not in err
    assert len((tmp_path / "maps" / MODEL / "predictions.csv").read_text().splitlines()) == 9
    assert cam_cache.CamCache(blocked).writable().startswith(f"the map cache {blocked} cannot be written")


# ------------------------------------------------------------------------------ interruptions


def test_ctrl_c_during_explain_exits_130_and_keeps_the_earlier_files(world: World, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import mushcam.files

    before = world.snapshot()
    calls = []
    real = mushcam.files.os.replace

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(mushcam.files.os, "replace", interrupted)
    rc, _, err = run_cli(["explain", str(world.image), "--backbone", MODEL, "--manifest", str(world.ckpt),
                          "--out", str(fresh)], capsys)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert world.snapshot() == before
    assert sorted(p.name for p in fresh.iterdir()) == ["original.png"]  # whole files only, no temp files


# ------------------------------------------------------------------------------ memory bounds


@pytest.mark.slow
def test_a_63_megapixel_photo_gives_bounded_views_and_peak_memory(world: World, tmp_path: Path) -> None:
    """Before: a 216 MB combined PNG (222 MP) and a 3.3 GB peak; now views are at most 2048 px long."""
    big = tmp_path / "big.jpg"
    make_image(7900, 7900).save(big, quality=80)
    script = (
        "import re, sys\n"
        "from mushcam.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('VmHWM', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), rc)\n"
    )
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", script, "explain", str(big), "--backbone", MODEL,
                           "--manifest", str(world.ckpt), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    peak_kb, rc = done.stdout.split("VmHWM")[1].split()
    assert rc == "0"
    assert int(peak_kb) < 1_800_000, f"peak {int(peak_kb) / 1e6:.2f} GB"
    assert "the views were drawn at 2048x2048" in done.stderr
    with Image.open(out / "combined.png") as combined:
        assert max(combined.size) < 3 * 2048 + 400  # three panels and the colour bar beside them
    prediction = json.loads((out / "prediction.json").read_text())
    assert prediction["views_scaled_from"] == [7900, 7900] and prediction["views_size"] == [2048, 2048]


