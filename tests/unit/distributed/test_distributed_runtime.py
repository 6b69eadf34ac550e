"""The parts of ``--ray`` that need no cluster: without Ray the commands say how to install it (exit 2, nothing
written), the options are checked, workers are placed on GPUs or CPUs, progress and the time summary read right,
and the predictions of several batches join as one call would give them."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from factories import CLASSES, write_image_folder, write_manifest

from mushcam.cli import main
from mushcam.distributed.evaluate import merge_outputs
from mushcam.distributed.pool import PoolReport, WorkerTally
from mushcam.distributed.progress import DriverProgress, format_pool_report, format_pool_reports
from mushcam.distributed.runtime import DistributedError, RayOptions, RayUnavailableError, placement, require_ray
from mushcam.evaluate.predict import BatchOutput
from mushcam.store import Predictions, Skipped


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("no-ray")
    write_manifest(root / "ckpt", backbones=("mobilenet_v3_large",), write_weights=True)
    return root / "ckpt", write_image_folder(root / "data", [CLASSES[0][0]], per_class=1)


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as where it is absent


def test_require_ray_says_how_to_install_it(no_ray: None) -> None:
    with pytest.raises(RayUnavailableError, match=r"not installed .*pip install -e \.\[ray\]"):
        require_ray()


@pytest.mark.parametrize("command", ["gradcam", "evaluate", "faithfulness"])
def test_each_command_without_ray_prints_one_line_and_writes_nothing(
        no_ray: None, command: str, project: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = project
    out = tmp_path / ("out" if command == "gradcam" else "results.sqlite")
    argv = [command, "--data", str(data), "--manifest", str(ckpt), "--out", str(out), "--ray"]
    if command == "gradcam":
        argv += ["--cache", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: --ray needs Ray, which is not installed") and "pip install -e .[ray]" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, store or cache was made


@pytest.mark.parametrize(("options", "message"), [
    ({"workers": 0}, "--ray-workers must be at least 1; got 0"),
    ({"device": "cuda:1"}, "with --ray, --device must be auto, cpu or cuda"),
])
def test_bad_options_are_refused_with_the_fix(options: dict[str, object], message: str) -> None:
    with pytest.raises(DistributedError, match=message.replace("(", r"\(")):
        RayOptions(**options)  # type: ignore[arg-type]


def test_ray_workers_zero_on_the_command_line_is_one_error_line(project: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = project
    assert main(["evaluate", "--data", str(data), "--manifest", str(ckpt), "--out", str(tmp_path / "r.sqlite"),
                 "--ray", "--ray-workers", "0"]) == 2
    assert capsys.readouterr().err == "error: --ray-workers must be at least 1; got 0\n"


def fake_ray(**resources: float) -> SimpleNamespace:
    return SimpleNamespace(cluster_resources=lambda: resources)


@pytest.mark.parametrize(("resources", "options", "batches", "expected"), [
    ({"CPU": 2.0}, {}, 10, (2, 1.0, 0.0, "cpu")),  # one worker per CPU
    ({"CPU": 16.0, "GPU": 8.0}, {}, 100, (8, 2.0, 1.0, "cuda")),  # one per GPU, each with its GPU and 2 cores
    ({"CPU": 16.0, "GPU": 8.0}, {"device": "cpu"}, 100, (16, 1.0, 0.0, "cpu")),  # --device cpu: GPUs left alone
    ({"CPU": 16.0}, {}, 3, (3, 1.0, 0.0, "cpu")),  # never more workers than batches
    ({"CPU": 2.0}, {"workers": 4}, 10, (4, 0.5, 0.0, "cpu")),  # more than the slots: they share them
    # more workers than GPUs (the CPU-bound ROAD imputation wants cores): 1/8 GPU and one core each
    ({"CPU": 64.0, "GPU": 8.0}, {"workers": 64}, 1000, (64, 1.0, 0.125, "cuda")),
])
def test_placement_puts_one_worker_per_gpu_else_per_cpu(resources: dict[str, float], options: dict[str, object],
                                                        batches: int, expected: tuple[int, float, float, str]) -> None:
    place = placement(fake_ray(**resources), RayOptions(**options), batches)  # type: ignore[arg-type]
    assert (place.workers, place.num_cpus, place.num_gpus, place.device) == expected


def test_device_cuda_on_a_cluster_without_gpus_is_refused() -> None:
    with pytest.raises(DistributedError, match="the Ray cluster has no GPU; use --device auto or cpu"):
        placement(fake_ray(CPU=4.0), RayOptions(device="cuda"), 10)  # type: ignore[arg-type]


def test_progress_gives_photos_rate_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 10.0, 12.0, 40.0])
    monkeypatch.setattr("mushcam.distributed.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    progress = DriverProgress("resnet50", 100, lines.append, every_seconds=5.0)
    progress.update(20)  # t = 10 s: 20 photos, 2.0/s, 80 left -> 40 s
    progress.update(5)  # t = 12 s: less than 5 s since the last line, not the end: silent
    progress.update(75)  # t = 40 s: the end is always said
    assert lines == ["resnet50: 20/100 photos, 2.0 photos/s, ETA 40 s",
                     "resnet50: 100/100 photos, 2.5 photos/s, ETA 0 s"]


def test_the_time_summary_gives_busy_share_retries_and_memory_per_worker() -> None:
    workers = [WorkerTally(0, 11, "node-a", "cuda", 3.0, batches=6, photos=48, busy_seconds=18.0,
                           peak_rss_bytes=900 * 2**20),
               WorkerTally(1, 12, "node-b", "cuda", 2.5, batches=4, photos=32, busy_seconds=9.0, restarts=1)]
    report = PoolReport("resnet50", seconds=20.0, tasks=10, retried=2, driver_seconds=0.5, workers=workers)
    text = format_pool_report(report)
    assert text.splitlines()[0] == ("Ray · resnet50: 2 workers, 10 tasks in 20.0 s (4.0 photos/s); 2 tasks retried "
                                    "after a worker died; driver 0.5 s on results")
    assert "   90%" in text and "   45%" in text and "900 MB" in text and "n/a" in text
    assert format_pool_reports([report, report]).endswith("Ray: 20 tasks in all, retried 4")


def batch(paths: list[str], skipped: tuple[Skipped, ...] = ()) -> BatchOutput:
    n = len(paths)
    probabilities = np.arange(n * 4, dtype=np.float32).reshape(n, 4) if n else np.zeros((0, 0), np.float32)
    return BatchOutput(Predictions(tuple(paths), tuple(f"sha-{p}" for p in paths), np.arange(n), np.arange(n),
                                   np.ones(n), probabilities), skipped, 1.0)


def test_batches_of_predictions_join_in_order_skipping_empty_ones() -> None:
    bad = (Skipped("b/bad.jpg", "unreadable image: not an image"),)
    merged = merge_outputs([batch(["a/1.png", "a/2.png"]), batch([], bad), batch(["c/3.png"])], seconds=7.5)
    assert merged.predictions.image_paths == ("a/1.png", "a/2.png", "c/3.png")
    assert merged.predictions.probabilities.shape == (3, 4) and merged.skipped == bad and merged.seconds == 7.5
    empty = merge_outputs([batch([], bad)], seconds=1.0)
    assert len(empty.predictions) == 0 and empty.predictions.probabilities.shape == (0, 0)


def test_an_address_where_nothing_listens_fails_at_once_with_the_fix(
        capsys: pytest.CaptureFixture[str], project: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e .[ray])")
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ckpt, data = project
    started = time.perf_counter()
    code = main(["evaluate", "--data", str(data), "--manifest", str(ckpt), "--out", str(tmp_path / "r.sqlite"),
                 "--ray", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - started < 10
    assert err.startswith(f"error: --ray 127.0.0.1:{port}: nothing answers there (Connection refused)")
    assert "ray start --head" in err and err.count("\n") == 1
    assert not (tmp_path / "r.sqlite").exists()
