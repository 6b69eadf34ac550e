"""``--ray`` on a local Ray runtime of 2 CPUs: each command gives the local run's results (files, cache entries,
store rows); a worker killed mid-run is restarted, its batches retried and counted; a bad photo is reported once."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import CLASSES, write_image_folder, write_manifest
from ray_setup import local_ray, store_rows, tree

from mushcam.cache import CamCache
from mushcam.cli import main
from mushcam.manifest import load_manifest
from mushcam.pipeline import PipelineConfig, collect_images

# ~3.5 min on the loaded 2-core host (load average ~12), most of it the workers starting (each imports torch)
pytestmark = pytest.mark.slow

MODELS = ("mobilenet_v3_large", "efficientnet_b0")
NAMES = [name for name, _ in CLASSES]


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[object]:
    """One local runtime for the whole module (starting one costs ~3 s; each model's workers ~5 s more)."""
    with local_ray(num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny random models (64 px input) and 8 photos in 2 class folders plus one file that is no image."""
    root = tmp_path_factory.mktemp("ray-project")
    write_manifest(root / "ckpt", backbones=MODELS)
    data = write_image_folder(root / "data", NAMES[:2], per_class=4)
    (data / NAMES[0] / "broken.jpg").write_text("this is not a JPEG")
    return root / "ckpt", data


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def gradcam_argv(project: tuple[Path, Path], where: Path, *extra: str) -> list[str]:
    ckpt, data = project
    return ["gradcam", "--data", str(data), "--manifest", str(ckpt), "--cache", str(where / "cache"),
            "--out", str(where / "out"), "--batch-size", "2", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def gradcam_runs(ray_runtime: object, project: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory,
                 ) -> dict[str, tuple[Path, int, str]]:
    """``gradcam`` of both models run here and on Ray: per kind, its folder, exit status and output."""
    runs = {}
    for kind, extra in (("local", []), ("ray", ["--ray"])):
        where = tmp_path_factory.mktemp(f"gradcam-{kind}")
        printed = io.StringIO()  # a module fixture has no capsys: its output is caught here
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = main(gradcam_argv(project, where, *extra))
        runs[kind] = (where, code, printed.getvalue())
    return runs


def test_gradcam_on_ray_writes_the_local_runs_files_and_cache_entries(
        gradcam_runs: dict[str, tuple[Path, int, str]]) -> None:
    (local, local_code, _), (ray_dir, code, out) = gradcam_runs["local"], gradcam_runs["ray"]
    assert (code, local_code) == (1, 1)  # 1: one photo could not be processed, in both
    assert "Traceback" not in out
    assert tree(ray_dir / "out") == tree(local / "out")
    assert tree(ray_dir / "cache", ".npz") == tree(local / "cache", ".npz")
    # 8 photos x 2 models, each under its class's key and the "predicted" alias: none lost, none doubled
    assert len(tree(ray_dir / "cache", ".npz")) == 8 * 2 * 2


def test_gradcam_on_ray_reports_progress_time_and_the_bad_photo_once(
        gradcam_runs: dict[str, tuple[Path, int, str]]) -> None:
    local_out, out = gradcam_runs["local"][2], gradcam_runs["ray"][2]
    assert out.count("broken.jpg") == local_out.count("broken.jpg") == 2  # once per model, as locally
    assert "this is not an image file that can be read" in out
    assert re.search(r"mobilenet_v3_large: 9/9 photos, [\d.]+ photos/s, ETA", out)
    assert re.search(r"Ray · efficientnet_b0: 2 workers, 5 tasks in [\d.]+ s .*; 0 tasks retried", out)
    assert "busy %" in out and "Ray: 10 tasks in all, retried 0" in out


def test_gradcam_on_ray_rerun_skips_what_is_done(gradcam_runs: dict[str, tuple[Path, int, str]],
                                                 project: tuple[Path, Path], tmp_path: Path) -> None:
    shutil.copytree(gradcam_runs["ray"][0], tmp_path, dirs_exist_ok=True)
    before = tree(tmp_path / "out")
    for path in (tmp_path / "out" / MODELS[0] / NAMES[1]).glob("img_[01].png.*"):
        path.unlink()  # as if stopped after these maps were cached, before their files were written
    summary = tmp_path / "summary.json"
    assert main(gradcam_argv(project, tmp_path, "--ray", "--model", MODELS[0], "--summary", str(summary))) == 1
    assert tree(tmp_path / "out") == before
    (model,) = json.loads(summary.read_text())["models"]
    assert (model["computed"], model["cached"], model["skipped"], model["model_loaded"]) == (0, 8, 6, False)


def test_evaluate_on_ray_saves_the_local_runs_rows(ray_runtime: object, project: tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = project
    argv = ["evaluate", "--data", str(data), "--manifest", str(ckpt), "--batch-size", "3", "--model", MODELS[1]]
    assert run_cli(capsys, [*argv, "--out", str(tmp_path / "local.sqlite")])[0] == 0
    code, out = run_cli(capsys, [*argv, "--out", str(tmp_path / "ray.sqlite"), "--ray", "--ray-workers", "2"])
    assert code == 0 and "Traceback" not in out
    local, ray_rows = store_rows(tmp_path / "local.sqlite"), store_rows(tmp_path / "ray.sqlite")
    assert ray_rows == local
    assert len(ray_rows["predictions"]) == 8 and len(ray_rows["skipped"]) == 1
    assert out.count("broken.jpg") == 1 and "skipped Amanita/broken.jpg: unreadable image" in out


def test_faithfulness_on_ray_stores_the_local_runs_scores(ray_runtime: object, project: tuple[Path, Path],
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = project
    argv = ["faithfulness", "--data", str(data), "--manifest", str(ckpt), "--models", MODELS[0],
            "--methods", "gradcam,eigencam", "--steps", "4", "--road-percentages", "50"]
    local_code, local_out = run_cli(capsys, [*argv, "--out", str(tmp_path / "local.sqlite")])
    code, out = run_cli(capsys, [*argv, "--out", str(tmp_path / "ray.sqlite"), "--ray"])
    assert code == local_code == 0 and "Traceback" not in out
    local, ray_rows = store_rows(tmp_path / "local.sqlite"), store_rows(tmp_path / "ray.sqlite")
    assert ray_rows == local
    assert len(ray_rows["faithfulness_images"]) == 2 * 8 and len(ray_rows["faithfulness_runs"]) == 2
    assert out.count("broken.jpg") == local_out.count("broken.jpg") == 2  # once per method, as locally


def test_a_killed_worker_is_restarted_and_its_batches_retried(ray_runtime: object, project: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    from mushcam.distributed.gradcam import run_pipeline_on_ray
    from mushcam.distributed.runtime import RayOptions
    from mushcam.pipeline import run_pipeline

    ckpt, data = project
    items = collect_images([data])

    def config(where: Path) -> PipelineConfig:
        return PipelineConfig(manifest=load_manifest(ckpt), out=where / "out", cache=CamCache(where / "cache"),
                              backbones=(MODELS[0],), batch_size=1)

    run_pipeline(config(tmp_path / "local"), items)
    pids: list[int] = []
    killed: list[int] = []

    def say(message: str) -> None:  # the driver's lines: the workers' pids, then progress after every batch
        if match := re.search(r"workers started on cpu \(pids ([\d, ]+);", message):
            pids.extend(int(p) for p in match.group(1).split(","))
        elif "photos/s" in message and not killed:
            os.kill(pids[1], signal.SIGKILL)  # batches are queued on it and one is running
            killed.append(pids[1])

    reports, pools = run_pipeline_on_ray(config(tmp_path / "ray"), items,
                                         RayOptions(progress_seconds=0, max_retries=2), progress=say)
    assert killed and pools[0].retried >= 1
    assert pools[0].workers[1].restarts == 1 and pools[0].workers[1].pid != killed[0]
    assert sum(w.photos for w in pools[0].workers) == pools[0].tasks == len(items)  # each batch answered once
    assert reports[0].images == 8 and len(reports[0].failed) == 1  # nothing lost, nothing doubled
    assert tree(tmp_path / "ray" / "out") == tree(tmp_path / "local" / "out")
    assert tree(tmp_path / "ray" / "cache", ".npz") == tree(tmp_path / "local" / "cache", ".npz")


def test_a_model_that_cannot_be_loaded_is_the_local_runs_one_error_line(
        ray_runtime: object, project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = project
    broken = shutil.copytree(ckpt, tmp_path / "ckpt")
    (broken / f"{MODELS[0]}.pt").write_bytes(b"not a checkpoint at all")
    argv = ["evaluate", "--data", str(data), "--manifest", str(broken), "--model", MODELS[0]]
    local_code, local_out = run_cli(capsys, [*argv, "--out", str(tmp_path / "local.sqlite")])
    code, out = run_cli(capsys, [*argv, "--out", str(tmp_path / "ray.sqlite"), "--ray"])
    local_error = [line for line in local_out.splitlines() if line.startswith("error:")]
    assert code == local_code == 2 and len(local_error) == 1 and "Traceback" not in out
    assert [line for line in out.splitlines() if line.startswith("error:")] == local_error  # raised in a worker
