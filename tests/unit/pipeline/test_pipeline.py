"""The batch Grad-CAM command: outputs, cache reuse, resume after interruption, shards, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import CLASSES, write_image_folder, write_manifest
from PIL import Image

from mushcam.cache import CamCache, cam_key
from mushcam.cli import main
from mushcam.data import image_sha256
from mushcam.manifest import load_manifest
from mushcam.models import file_sha256
from mushcam.pipeline import (
    PipelineConfig,
    collect_images,
    job,
    parse_shard,
    run_pipeline,
    select_shard,
    shard_of,
)

FAST = ("mobilenet_v3_large", "efficientnet_b0")  # the two cheap backbones; ResNet-50 runs once below
NAMES = [name for name, _ in CLASSES]


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight checkpoints for the three backbones (64 px input), written once for the module."""
    folder = tmp_path_factory.mktemp("ckpt")
    write_manifest(folder)
    return folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", NAMES[:2], per_class=3)  # 6 images, 80 x 60


def make_config(ckpt: Path, out: Path, cache: Path, **kwargs: object) -> PipelineConfig:
    settings: dict[str, object] = {"backbones": ("mobilenet_v3_large",), "batch_size": 2}
    settings.update(kwargs)
    return PipelineConfig(manifest=load_manifest(ckpt), out=out, cache=CamCache(cache), **settings)  # type: ignore[arg-type]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_command_writes_views_maps_and_predictions(checkpoint_dir: Path, data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    code = main(["gradcam", "--data", str(data), "--manifest", str(checkpoint_dir), "--cache", str(tmp_path / "c"),
                 "--target", "true", "--out", str(out), "--summary", str(summary), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("ResNet-50", "EfficientNet-B0", "MobileNetV3-Large", "peak RSS", "img/s"):
        assert name in printed
    report = json.loads(summary.read_text())
    assert [m["backbone"] for m in report["models"]] == ["resnet50", "efficientnet_b0", "mobilenet_v3_large"]
    for model in report["models"]:
        assert model["images"] == 6 and model["computed"] == 6 and model["cached"] == 0 and model["model_loaded"]
        assert model["peak_rss_bytes"] >= model["rss_start_bytes"] > 100 * 2**20  # torch alone is far more
        assert model["cuda_max_allocated_bytes"] is None
    assert report["process_peak_rss_bytes"] >= max(m["peak_rss_bytes"] for m in report["models"])

    rows = read_csv(out / "resnet50" / "predictions.csv")
    assert [r["image"] for r in rows] == [f"{c}/img_{k}.png" for c in NAMES[:2] for k in range(3)]
    assert [r["true_class"] for r in rows] == [r["explained_class"] for r in rows]  # --target true
    assert all(0.0 <= float(r["confidence"]) <= 1.0 and float(r["cam_max"]) >= 0.0 for r in rows)
    for backbone, side in (("resnet50", 2), ("efficientnet_b0", 2), ("mobilenet_v3_large", 2)):
        folder = out / backbone
        assert json.loads((folder / "run.json").read_text())["target"] == "true"
        cam = np.load(folder / "Amanita" / "img_0.png.cam.npy")
        assert cam.dtype == np.float32 and cam.shape == (side, side) and np.isfinite(cam).all()
        overlay = Image.open(folder / "Amanita" / "img_0.png.overlay.png")
        assert overlay.size == (80, 60) and overlay.mode == "RGB"
        assert Image.open(folder / "Amanita" / "img_0.png.combined.png").size[0] > 3 * 80
        assert (folder / "Amanita" / "img_0.png.heatmap.png").is_file()
        assert not (folder / "Amanita" / "img_0.png.original.png").exists()  # not asked for
    assert not list(out.rglob("*.tmp"))


def test_rerun_is_served_from_the_cache_without_loading_a_model(checkpoint_dir: Path, data: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(checkpoint_dir, tmp_path / "out", tmp_path / "cache")
    items = collect_images([data])
    first = run_pipeline(config, items)
    before = tree(tmp_path / "out")
    second = run_pipeline(config, items)
    for report in second:
        assert (report.computed, report.cached, report.skipped, report.model_loaded) == (0, 6, 6, False)
    assert tree(tmp_path / "out") == before
    # a fresh output folder with a warm cache: files are rendered again, still no model call,
    # and no more decoded images are held at once than one batch
    fresh = make_config(checkpoint_dir, tmp_path / "out2", tmp_path / "cache")
    held: list[int] = []
    real_flush = job._ModelPass._flush

    def counting_flush(self: job._ModelPass, queue: list, writer: object) -> None:
        held.append(sum(p.image is not None for p in queue))
        real_flush(self, queue, writer)

    monkeypatch.setattr(job._ModelPass, "_flush", counting_flush)
    third = run_pipeline(fresh, items)
    monkeypatch.undo()
    assert max(held) == fresh.batch_size == 2
    assert all((r.computed, r.cached, r.skipped, r.model_loaded) == (0, 6, 0, False) for r in third)
    assert tree(tmp_path / "out2") == before
    assert all(r.computed == 6 for r in first)
    forced = run_pipeline(make_config(checkpoint_dir, tmp_path / "out", tmp_path / "cache", force=True), items)
    assert all((r.computed, r.cached) == (6, 0) for r in forced)
    assert tree(tmp_path / "out") == before  # recomputing gives the same bytes


def test_interrupted_run_resumes_to_the_same_files(checkpoint_dir: Path, data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    items = collect_images([data])
    whole = run_pipeline(
        make_config(checkpoint_dir, tmp_path / "whole", tmp_path / "cache_whole", backbones=FAST), items
    )
    assert all(r.computed == 6 for r in whole)

    real_write = job._ModelPass._write_files
    written = []

    def write_then_stop(self: job._ModelPass, *args: object) -> None:
        if self.backbone == FAST[1] and len(written) == 6 + 3:  # second model, half-way, mid-batch
            raise KeyboardInterrupt
        written.append(args)
        real_write(self, *args)

    monkeypatch.setattr(job._ModelPass, "_write_files", write_then_stop)
    config = make_config(checkpoint_dir, tmp_path / "resumed", tmp_path / "cache_resumed", backbones=FAST)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, items)
    monkeypatch.undo()
    partial = tree(tmp_path / "resumed")
    assert not any(name.endswith(".tmp") for name in partial)
    assert f"{FAST[1]}/predictions.csv" not in partial  # the CSV appears only when a model's pass completes

    resumed = run_pipeline(config, items)
    assert resumed[0].computed == 0 and resumed[0].skipped == 6  # first model was complete
    assert resumed[1].computed < 6 and resumed[1].computed + resumed[1].cached == 6
    assert tree(tmp_path / "resumed") == tree(tmp_path / "whole")


def test_shards_cover_every_image_exactly_once(checkpoint_dir: Path, tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", NAMES, per_class=2)  # 8 images
    items = collect_images([data])
    assert parse_shard(None) is None and parse_shard(" 2/3 ") == (2, 3)
    assert [shard_of(item.relpath, 3) for item in items] == [
        shard_of(item.relpath, 3) for item in collect_images([data])
    ]
    parts = [select_shard(items, (k, 3)) for k in (1, 2, 3)]
    assert sorted(i.relpath for part in parts for i in part) == sorted(i.relpath for i in items)
    assert sum(len(part) for part in parts) == len(items)  # disjoint (a shard may be empty: it still succeeds)

    out, cache = tmp_path / "out", tmp_path / "cache"
    for k in (1, 2, 3):
        code = main(["gradcam", "--data", str(data), "--manifest", str(checkpoint_dir), "--cache", str(cache),
                     "--backbones", "mobilenet_v3_large", "--shard", f"{k}/3", "--batch-size", "4", "--out", str(out)])
        assert code == 0
    folder = out / "mobilenet_v3_large"
    rows = [row["image"] for k in (1, 2, 3) for row in read_csv(folder / f"predictions.shard-{k}-of-3.csv")]
    assert sorted(rows) == sorted(i.relpath for i in items) and len(rows) == len(set(rows))
    assert len(list(folder.rglob("*.cam.npy"))) == len(items)
    # the shards filled one cache: an unsharded re-run computes nothing
    config = make_config(checkpoint_dir, tmp_path / "all", cache, backbones=("mobilenet_v3_large",))
    (report,) = run_pipeline(config, items)
    assert (report.computed, report.cached) == (0, len(items))


def test_corrupt_cache_entry_is_recomputed(checkpoint_dir: Path, data: Path, tmp_path: Path) -> None:
    config = make_config(checkpoint_dir, tmp_path / "out", tmp_path / "cache", backbones=("mobilenet_v3_large",))
    items = collect_images([data])
    run_pipeline(config, items)
    before = tree(tmp_path / "out")
    sha = file_sha256(checkpoint_dir / "mobilenet_v3_large.pt")
    layer = config.manifest.models["mobilenet_v3_large"].layer
    victims = [config.cache.path(cam_key(sha, image_sha256(item.path.read_bytes()), layer, None, config.manifest.input))
               for item in items[1:3]]  # the entries this run reads ("predicted" class)
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:50])  # truncated
    (report,) = run_pipeline(config, items)
    assert (report.computed, report.cached, report.skipped) == (2, 4, 4)
    assert config.cache.corrupt == 2 and all(victim.is_file() for victim in victims)  # rewritten
    assert tree(tmp_path / "out") == before


def test_explicit_class_target_and_views(checkpoint_dir: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["gradcam", "--data", str(data / "Amanita" / "img_0.png"), str(data / "Boletus"),
                 "--manifest", str(checkpoint_dir), "--cache", str(tmp_path / "c"), "--backbones", "mobilenet_v3_large",
                 "--target", "gyromitra", "--views", "original,overlay", "--colormap", "viridis", "--alpha", "0.7",
                 "--out", str(out)])
    assert code == 0
    rows = read_csv(out / "mobilenet_v3_large" / "predictions.csv")
    assert [r["image"] for r in rows] == [
        "Amanita/img_0.png",
        "Boletus/img_0.png",
        "Boletus/img_1.png",
        "Boletus/img_2.png",
    ]
    assert {r["explained_class"] for r in rows} == {"Gyromitra"}
    # a file named alone, or an image directly inside a named folder, has no class
    assert [r["true_class"] for r in rows] == ["", "", "", ""]
    written = sorted(p.name for p in (out / "mobilenet_v3_large" / "Boletus").iterdir())
    assert written == sorted(f"img_{k}.png.{v}" for k in range(3) for v in ("original.png", "overlay.png", "cam.npy"))
    original = np.asarray(Image.open(out / "mobilenet_v3_large" / "Boletus" / "img_0.png.original.png"))
    assert np.array_equal(original, np.asarray(Image.open(data / "Boletus" / "img_0.png")))


def test_unreadable_image_is_reported_and_the_rest_processed(checkpoint_dir: Path, data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (data / "Amanita" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    code = main(["gradcam", "--data", str(data), "--manifest", str(checkpoint_dir), "--cache", str(tmp_path / "c"),
                 "--backbones", "mobilenet_v3_large", "--out", str(tmp_path / "out")])
    assert code == 1
    printed = capsys.readouterr().out
    assert "1 images could not be processed" in printed and "Amanita/broken.jpg" in printed
    assert len(read_csv(tmp_path / "out" / "mobilenet_v3_large" / "predictions.csv")) == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "0/3"], "between 1 and N"),
        (["--shard", "two"], "k/N"),
        (["--views", "overlay,sketch"], "--views"),
        (["--batch-size", "0"], "--batch-size"),
        (["--alpha", "1.5"], "--alpha"),
        (["--colormap", "rainbow"], "--colormap"),
        (["--backbones", "vgg16"], "no model named 'vgg16' in the manifest"),
        (["--target", "Morchella"], "unknown class"),
        (["--target", "9"], "out of range"),
        (["--device", "tpu"], "--device"),
        (["--cache-max-mb", "0"], "--cache-max-mb"),
    ],
)
def test_bad_arguments_give_one_line(checkpoint_dir: Path, data: Path, tmp_path: Path, extra: list[str],
                                     message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gradcam", "--data", str(data), "--manifest", str(checkpoint_dir), "--cache", str(tmp_path / "c"),
                 "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_bad_data_and_targets_fail_before_any_work(checkpoint_dir: Path, data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = ["gradcam", "--manifest", str(checkpoint_dir), "--cache", str(tmp_path / "c"),
            "--out", str(tmp_path / "out")]
    (tmp_path / "flat").mkdir()
    Image.open(data / "Amanita" / "img_0.png").save(tmp_path / "flat" / "a.png")
    (tmp_path / "empty").mkdir()
    write_image_folder(tmp_path / "odd", ["Morchella"], per_class=1)
    cases = [
        (["--data", str(tmp_path / "missing")], "no such file or folder"),
        (["--data", str(tmp_path / "empty")], "no images found"),
        (["--data", str(tmp_path / "flat"), "--target", "true"], "needs class folders"),
        (["--data", str(tmp_path / "odd"), "--target", "true"], "Morchella are not classes"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    write_manifest(tmp_path / "no_weights", backbones=("efficientnet_b0",), write_weights=False)
    assert main([*base, "--data", str(data), "--manifest", str(tmp_path / "no_weights")]) == 2
    assert "checkpoint for efficientnet_b0 not found" in capsys.readouterr().err


def test_other_settings_in_the_same_folder_are_refused(checkpoint_dir: Path, data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    base = ["gradcam", "--data", str(data), "--manifest", str(checkpoint_dir), "--cache", str(tmp_path / "c"),
            "--backbones", "mobilenet_v3_large", "--out", str(tmp_path / "out")]
    assert main(base) == 0
    overlay = tmp_path / "out" / "mobilenet_v3_large" / "Amanita" / "img_0.png.overlay.png"
    before = overlay.read_bytes()
    assert main([*base, "--alpha", "0.8"]) == 2
    assert "alpha differ" in capsys.readouterr().err and overlay.read_bytes() == before
    assert main([*base, "--alpha", "0.8", "--force"]) == 0
    assert overlay.read_bytes() != before


def test_real_photos(real_data: Path, tmp_path: Path) -> None:
    genera = sorted(p.name for p in (real_data / "test").iterdir() if p.is_dir())
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), classes=[(g, "unknown") for g in genera])
    files = [sorted((real_data / "test" / g).iterdir())[0] for g in genera[:2]]
    config = make_config(ckpt, tmp_path / "out", tmp_path / "cache", backbones=("mobilenet_v3_large",))
    (report,) = run_pipeline(config, collect_images(files))
    assert (report.images, report.computed, report.failed) == (2, 2, [])
    overlay = Image.open(
        tmp_path / "out" / "mobilenet_v3_large" / files[0].parent.name / f"{files[0].name}.overlay.png"
    )
    assert overlay.size == Image.open(files[0]).size  # real photos are under --max-side 1024


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (torch.cuda.is_available() is False)")
def test_cuda_run_reports_max_memory_allocated(checkpoint_dir: Path, data: Path, tmp_path: Path) -> None:
    from mushcam.pipeline import format_summary, resolve_device

    device = resolve_device("cuda")
    config = make_config(checkpoint_dir, tmp_path / "out", tmp_path / "cache",
                         backbones=("resnet50", *FAST), device=device)
    reports = run_pipeline(config, collect_images([data]))
    for report in reports:
        assert report.computed == 6 and report.cuda_max_allocated_bytes is not None
        assert report.cuda_max_allocated_bytes > 1 * 2**20  # at least the weights
    assert reports[0].cuda_max_allocated_bytes > reports[2].cuda_max_allocated_bytes  # ResNet-50 > MobileNetV3
    assert "CUDA max alloc" in format_summary(reports, 1.0, device)
    assert torch.cuda.memory_allocated(device) < 1 * 2**20  # every model was released
    cpu = run_pipeline(make_config(checkpoint_dir, tmp_path / "cpu", tmp_path / "cache_cpu",
                                   backbones=("resnet50", *FAST)), collect_images([data]))
    for gpu_report, cpu_report in zip(reports, cpu, strict=True):
        assert gpu_report.images == cpu_report.images
    rows_gpu = read_csv(tmp_path / "out" / "resnet50" / "predictions.csv")
    rows_cpu = read_csv(tmp_path / "cpu" / "resnet50" / "predictions.csv")
    assert [r["predicted"] for r in rows_gpu] == [r["predicted"] for r in rows_cpu]
