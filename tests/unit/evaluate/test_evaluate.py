"""`python -m mushcam evaluate` / `report` on an ImageFolder and checkpoints that the tests write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import CLASSES, write_image_folder, write_manifest

from mushcam import evaluate, store
from mushcam.cli import main
from mushcam.data import image_sha256, load_image, preprocess
from mushcam.explain import explain_image
from mushcam.manifest import load_manifest
from mushcam.models import file_sha256, load_model

BACKBONES = ("mobilenet_v3_large", "efficientnet_b0")  # the two fast ones
NAMES = [name for name, _ in CLASSES]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two checkpoints, a 4-class ImageFolder (+ a foreign folder, a corrupt file), evaluated once."""
    base = tmp_path_factory.mktemp("eval")
    write_manifest(base / "ckpt", backbones=BACKBONES)
    data = write_image_folder(base / "data", NAMES, per_class=3, size=(80, 60))
    write_image_folder(base / "data", ["Russula"], per_class=2)  # not in the manifest
    (data / "Boletus" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (data / "loose.png").write_bytes((data / "Amanita" / "img_0.png").read_bytes())  # not in a class folder
    (data / "suillus").mkdir()  # lower-case twin of a manifest class: matched case-insensitively
    (data / "suillus" / "extra.png").write_bytes((data / "Suillus" / "img_0.png").read_bytes())
    out = base / "results.sqlite"
    assert main(["evaluate", "--data", str(data), "--manifest", str(base / "ckpt"), "--batch-size", "4",
                 "--out", str(out)]) == 0
    return {"base": base, "data": data, "ckpt": base / "ckpt", "out": out}


def test_rows_equal_the_models_own_outputs(evaluated: dict[str, Path]) -> None:
    contents = store.load_store(evaluated["out"])
    manifest = load_manifest(evaluated["ckpt"])
    assert sorted(r.backbone for r in contents.runs) == sorted(BACKBONES)
    for run in contents.runs:
        rows = contents.predictions[run.run_id]
        assert len(rows) == 4 * 3 + 1 == run.n_images  # 3 per class + suillus/extra.png
        model = load_model(run.backbone, manifest.checkpoint_path(run.backbone), manifest.num_classes)
        for i, relpath in enumerate(rows.image_paths):
            path = evaluated["data"] / relpath
            assert not Path(relpath).is_absolute()
            with torch.inference_mode():
                expected = torch.softmax(model(preprocess(load_image(path), manifest.input)[None]), 1)[0].numpy()
            np.testing.assert_allclose(rows.probabilities[i], expected, atol=1e-5, rtol=0)
            assert rows.pred_idx[i] == int(expected.argmax())
            assert rows.confidence[i] == pytest.approx(float(expected.max()), abs=1e-6)
            assert rows.true_idx[i] == NAMES.index(
                "Suillus" if relpath.startswith("suillus/") else relpath.split("/")[0]
            )
            assert rows.image_sha256[i] == image_sha256(path.read_bytes())
        # what the Explain page computes for the same image (the Grad-CAM engine's probabilities)
        shown = explain_image(model, load_image(evaluated["data"] / rows.image_paths[0]), manifest.input,
                              manifest.models[run.backbone].layer)
        np.testing.assert_allclose(rows.probabilities[0], shown.probabilities.numpy(), atol=1e-5, rtol=0)


def test_run_records_model_data_and_versions(evaluated: dict[str, Path]) -> None:
    runs = store.load_runs(evaluated["out"])
    for run in runs:
        assert run.checkpoint_sha256 == file_sha256(evaluated["ckpt"] / f"{run.backbone}.pt")
        assert run.data_root == str(evaluated["data"].resolve())
        assert run.class_names == NAMES and run.toxicities == [t for _, t in CLASSES]
        assert run.manifest["input"]["size"] == 64 and run.batch_size == 4
        assert {"torch", "torchvision", "python", "mushcam", "numpy", "pillow"} <= set(run.versions)
        assert run.seconds > 0 and run.images_per_second > 0


def test_foreign_folders_and_unreadable_images_are_listed_not_fatal(evaluated: dict[str, Path]) -> None:
    for run in store.load_runs(evaluated["out"]):
        skipped = {s.path: s.reason for s in store.load_skipped(evaluated["out"], run.run_id)}
        assert set(skipped) == {"Russula/img_0.png", "Russula/img_1.png", "Boletus/broken.jpg", "loose.png"}
        assert "'Russula' is not one of the manifest's classes" in skipped["Russula/img_0.png"]
        assert skipped["Boletus/broken.jpg"].startswith("unreadable image")
        assert "not inside a class folder" in skipped["loose.png"]


def test_console_reports_skips_progress_and_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",))
    data = write_image_folder(tmp_path / "data", ["Amanita", "Boletus", "Lepiota"], per_class=2)
    (data / "Amanita" / "bad.png").write_bytes(b"not a png")
    assert main(["evaluate", "--data", str(data), "--manifest", str(tmp_path / "ckpt"), "--out",
                 str(tmp_path / "r.sqlite")]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 files (Lepiota/img_0.png, Lepiota/img_1.png): class folder 'Lepiota'" in captured.out
    assert "Amanita/bad.png: unreadable image" in captured.out
    assert "no images of: Gyromitra, Suillus" in captured.out
    assert "mobilenet_v3_large: 4 images in" in captured.out and "images/s" in captured.out
    assert "mobilenet_v3_large: 5/5 images" in captured.err  # the progress bar (plain lines off a terminal)


def test_report_prints_metrics_tables(evaluated: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(evaluated["out"])]) == 0
    text = capsys.readouterr().out
    contents = store.load_store(evaluated["out"])
    for run in contents.runs:
        m = evaluate.run_metrics(contents, run.run_id)
        assert f"{m.dangerous_count} / {m.poisonous_images}" in text
        assert f"{m.accuracy:.1%}" in text
    assert "poisonous->edible (dangerous)" in text and "confusion matrix" in text and "precision" in text
    assert "MobileNetV3-Large" in text and "EfficientNet-B0" in text
    assert main(["report", str(evaluated["out"]), "--summary", "--markdown"]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("| model | checkpoint |") and "confusion" not in summary


def test_rerun_replaces_and_interruption_keeps_the_old_run(evaluated: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.sqlite"
    out.write_bytes(evaluated["out"].read_bytes())
    manifest = load_manifest(evaluated["ckpt"])
    before = store.load_store(out)
    evaluate.evaluate_models(
        evaluated["data"], manifest, out, ["mobilenet_v3_large"], batch_size=16, log=lambda _: None
    )
    after = store.load_store(out)
    assert len(after.runs) == len(before.runs)  # replaced, not added
    old_ids = {r.backbone: r.run_id for r in before.runs}
    new_ids = {r.backbone: r.run_id for r in after.runs}
    assert new_ids["mobilenet_v3_large"] != old_ids["mobilenet_v3_large"]
    assert new_ids["efficientnet_b0"] == old_ids["efficientnet_b0"]
    np.testing.assert_allclose(after.predictions[new_ids["mobilenet_v3_large"]].probabilities,
                               before.predictions[old_ids["mobilenet_v3_large"]].probabilities, atol=1e-5)

    real_load = evaluate.predict.load_catalog_entry

    def load_then_interrupt(*args: object, **kwargs: object) -> object:
        loaded = real_load(*args, **kwargs)
        model = loaded.model
        calls = {"n": 0}

        def hook(module: torch.nn.Module, inputs: object) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # Ctrl-C during the second batch

        model.register_forward_pre_hook(hook)
        return loaded

    # where evaluate_models calls it
    monkeypatch.setattr("mushcam.evaluate.predict.load_catalog_entry", load_then_interrupt)
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_models(evaluated["data"], manifest, out, ["efficientnet_b0"], batch_size=4,
                                 log=messages.append)
    assert any("nothing written" in m for m in messages)
    kept = store.load_store(out)
    assert {r.backbone: r.run_id for r in kept.runs} == new_ids
    eff = new_ids["efficientnet_b0"]
    np.testing.assert_array_equal(kept.predictions[eff].probabilities, after.predictions[eff].probabilities)


def test_user_errors_are_one_line(
    evaluated: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = str(evaluated["ckpt"])
    cases = [
        (["--data", str(tmp_path / "nowhere")], "data folder not found"),
        (["--data", str(evaluated["data"]), "--batch-size", "0"], "--batch-size must be between 1 and"),
        (["--data", str(evaluated["data"]), "--threads", "0"], "--threads must be at least 1"),
        (["--data", str(evaluated["data"]), "--backbones", "resnet50"], "lists no checkpoint for resnet50"),
        (["--data", str(tmp_path)], "no images of the manifest's classes"),
    ]
    for extra, message in cases:
        assert main(["evaluate", "--manifest", ckpt, "--out", str(tmp_path / "r.sqlite"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"garbage!" * 512)
    assert main(["evaluate", "--manifest", ckpt, "--data", str(evaluated["data"]), "--backbones",
                 "mobilenet_v3_large", "--out", str(garbage)]) == 2
    assert "not a readable SQLite results store" in capsys.readouterr().err


def test_locked_store_is_reported_and_left_alone(evaluated: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.sqlite"
    out.write_bytes(evaluated["out"].read_bytes())
    monkeypatch.setattr("mushcam.store.connection.DEFAULT_TIMEOUT", 0.2)  # where _connect reads it
    holder = sqlite3.connect(out, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        assert main(["evaluate", "--manifest", str(evaluated["ckpt"]), "--data", str(evaluated["data"]),
                     "--backbones", "mobilenet_v3_large", "--out", str(out)]) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another program" in capsys.readouterr().err
    assert [r.run_id for r in store.load_runs(out)] == [r.run_id for r in store.load_runs(evaluated["out"])]


@pytest.mark.slow
@pytest.mark.realdata
def test_real_photos_test_split(real_data: Path, tmp_path: Path) -> None:
    """All 235 real test photos through a random-weights MobileNetV3 (64 px): every genus matched."""
    genera = sorted(p.name for p in (real_data / "test").iterdir() if p.is_dir())
    toxicity = {"Amanita": "poisonous", "Gyromitra": "poisonous", "Omphalotus": "poisonous", "Boletus": "edible",
                "Coprinellus": "edible", "Volvopluteus": "edible", "Coprinopsis": "mixed", "Ganoderma": "inedible"}
    write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",), classes=[(g, toxicity[g]) for g in genera])
    out = tmp_path / "r.sqlite"
    summaries = evaluate.evaluate_models(real_data / "test", load_manifest(tmp_path / "ckpt"), out, batch_size=32,
                                         log=lambda _: None)
    contents = store.load_store(out)
    rows = contents.predictions[contents.runs[0].run_id]
    assert len(rows) == 235 and not contents.skipped[contents.runs[0].run_id]
    assert np.bincount(rows.true_idx).tolist() == [len(list((real_data / "test" / g).iterdir())) for g in genera]
    m = summaries[0].metrics
    assert m.poisonous_images == 30 + 30 + 25 and m.edible_images == 30 + 30 + 30
