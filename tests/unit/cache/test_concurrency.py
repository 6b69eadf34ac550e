"""Concurrency: a ``gradcam`` run fills the map cache while the app reads it.

The app's read path (:func:`mushcam.cache.cached_explanation`, which ``ui.state`` wraps)
runs in this process over and over while ``python -m mushcam gradcam`` writes the same
maps from another process. Every answer must be the right one for its image (never a
half-written or another image's entry), and nothing may raise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from factories import CLASSES, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT

from mushcam import cache as cam_cache
from mushcam.data import image_sha256, load_image
from mushcam.explain import explain_image
from mushcam.manifest import load_manifest
from mushcam.models import load_model

MODEL = "mobilenet_v3_large"
ROOT = PROJECT_ROOT


@pytest.mark.slow
def test_the_app_reads_the_cache_while_gradcam_fills_it(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=(MODEL,))
    data = write_image_folder(tmp_path / "data", [n for n, _ in CLASSES], per_class=4, size=(96, 72))
    cache_dir = tmp_path / "cams"
    manifest = load_manifest(ckpt)
    layer = manifest.models[MODEL].layer
    model = load_model(MODEL, ckpt / f"{MODEL}.pt", num_classes=manifest.num_classes)
    files = sorted(data.rglob("*.png"))
    images = {path: load_image(path) for path in files}
    digests = {path: image_sha256(path.read_bytes()) for path in files}
    expected = {path: explain_image(model, image, manifest.input, layer) for path, image in images.items()}

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen(
        [sys.executable, "-m", "mushcam", "gradcam", "--data", str(data), "--manifest", str(ckpt),
         "--cache", str(cache_dir), "--views", "overlay", "--out", str(tmp_path / "maps")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    reader = cam_cache.CamCache(cache_dir)
    checkpoint_sha = reader.checkpoint_sha256(ckpt / f"{MODEL}.pt")
    reads = 0
    deadline = time.monotonic() + 240
    try:
        while writer.poll() is None and time.monotonic() < deadline:
            for path in files:
                got = cam_cache.cached_explanation(reader, model, images[path], manifest.input, layer, None,
                                                   checkpoint_sha, digests[path])
                want = expected[path]
                assert got.class_idx == want.class_idx
                assert torch.allclose(got.probabilities, want.probabilities, atol=1e-6)
                assert torch.allclose(
                    got.cam, cam_cache.roundtrip(want.cam), rtol=0, atol=1e-6 * float(want.cam.max()) + 1e-30
                )
                reads += 1
    finally:
        if writer.poll() is None:
            writer.kill()
        _, err = writer.communicate()
    assert writer.returncode == 0, err
    assert "Traceback" not in err
    assert reads >= len(files)
    # After the run every map is served from the cache, and still the right one.
    after = cam_cache.CamCache(cache_dir)
    for path in files:
        entry = after.get_entry(cam_cache.cam_key(checkpoint_sha, digests[path], layer, None, manifest.input))
        assert entry is not None and entry.class_idx == expected[path].class_idx
    assert after.corrupt == 0
