"""The gradcam job draws and encodes its files in one worker thread: same bytes, bounded, errors raised."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest
from factories import CLASSES, write_image_folder, write_manifest

from mushcam.cache import CamCache
from mushcam.manifest import load_manifest
from mushcam.pipeline import PipelineConfig, collect_images, job, run_pipeline

NAMES = [name for name, _ in CLASSES]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("drawing")
    write_manifest(base / "ckpt", backbones=("mobilenet_v3_large",))
    return base / "ckpt", write_image_folder(base / "data", NAMES[:2], per_class=4)  # 8 images


def config(ckpt: Path, out: Path, cache: Path) -> PipelineConfig:
    return PipelineConfig(manifest=load_manifest(ckpt), out=out, cache=CamCache(cache),
                          backbones=("mobilenet_v3_large",), batch_size=1)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def drawing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mushcam-draw")]


def test_threaded_drawing_gives_the_bytes_of_drawing_in_line(setup: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, data = setup
    items = collect_images([data])
    threaded = run_pipeline(config(ckpt, tmp_path / "threaded", tmp_path / "cache1"), items)
    waiting: list[int] = []
    real_draw = job._ModelPass._draw

    def in_line(self: job._ModelPass, *args: object) -> None:  # no drawing thread: the files drawn here
        waiting.append(len(self.drawing))
        self._write_files(*args)

    monkeypatch.setattr(job._ModelPass, "_draw", in_line)
    run_pipeline(config(ckpt, tmp_path / "in_line", tmp_path / "cache2"), items)
    monkeypatch.setattr(job._ModelPass, "_draw", real_draw)
    assert waiting == [0] * 8 and threaded[0].computed == 8
    assert tree(tmp_path / "threaded") == tree(tmp_path / "in_line")
    assert tree(tmp_path / "cache1") == tree(tmp_path / "cache2")
    assert len([name for name in tree(tmp_path / "threaded") if name.endswith(".png")]) == 8 * 3
    assert drawing_threads() == []


def test_at_most_max_drawing_images_wait_to_be_drawn(setup: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, data = setup
    waiting: list[int] = []
    real_draw = job._ModelPass._draw
    release = threading.Event()
    real_write = job._ModelPass._write_files

    def slow_write(self: job._ModelPass, *args: object) -> None:
        release.wait(5)  # the drawing thread lags behind the model
        real_write(self, *args)

    def counting_draw(self: job._ModelPass, *args: object) -> None:
        real_draw(self, *args)
        waiting.append(len(self.drawing))
        if len(waiting) == 4:
            release.set()

    monkeypatch.setattr(job._ModelPass, "_write_files", slow_write)
    monkeypatch.setattr(job._ModelPass, "_draw", counting_draw)
    (report,) = run_pipeline(config(ckpt, tmp_path / "out", tmp_path / "cache"), collect_images([data]))
    assert max(waiting) == job.MAX_DRAWING == 2 and report.images == 8
    assert len(list((tmp_path / "out").rglob("*.combined.png"))) == 8


def test_a_full_disk_while_drawing_stops_the_run_with_whole_files_only(setup: tuple[Path, Path], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, data = setup
    calls: list[int] = []
    real_write = job._ModelPass._write_files

    def full_disk(self: job._ModelPass, *args: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.png"))
        real_write(self, *args)

    monkeypatch.setattr(job._ModelPass, "_write_files", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        run_pipeline(config(ckpt, tmp_path / "out", tmp_path / "cache"), collect_images([data]))
    files = tree(tmp_path / "out")
    assert not any(name.endswith(".tmp") for name in files)
    assert "mobilenet_v3_large/predictions.csv" not in files  # the CSV appears only when the pass completes
    assert 2 * 3 <= len([n for n in files if n.endswith(".png")]) <= (2 + job.MAX_DRAWING) * 3
    assert drawing_threads() == []
