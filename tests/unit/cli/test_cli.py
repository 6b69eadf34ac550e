"""`python -m mushcam explain`: the files it writes, and one clear line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factories import make_image
from PIL import Image
from project_paths import PROJECT_ROOT

from mushcam.cam import grad_cam
from mushcam.cli import main
from mushcam.data import preprocess
from mushcam.manifest import load_manifest
from mushcam.models import load_model

PROJECT = PROJECT_ROOT


def test_explain_writes_the_four_views_the_map_and_the_prediction(checkpoint_dir: Path, tmp_path: Path):
    image_path = tmp_path / "photo.jpg"
    make_image(150, 100, seed=3).save(image_path)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "mushcam", "explain", str(image_path), "--backbone", "resnet50",
         "--manifest", str(checkpoint_dir), "--target", "Boletus", "--alpha", "0.6", "--colormap", "viridis",
         "--out", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for name in ("original", "heatmap", "overlay"):
        assert Image.open(out / f"{name}.png").size == (150, 100)
    assert Image.open(out / "combined.png").size[0] > 450

    prediction = json.loads((out / "prediction.json").read_text())
    manifest = load_manifest(checkpoint_dir)
    model = load_model("resnet50", manifest.checkpoint_path("resnet50"))
    x = preprocess(Image.open(image_path).convert("RGB"), manifest.input).unsqueeze(0)
    expected = grad_cam(model, x, "layer4", class_idx=1)
    probabilities = expected.probabilities[0]
    assert prediction["explained_class"] == "Boletus"
    assert prediction["predicted"] == manifest.class_names[int(probabilities.argmax())]
    assert prediction["top_k"][0]["probability"] == pytest.approx(float(probabilities.max()), rel=1e-5)
    assert [row["class"] for row in prediction["top_k"]] == [
        manifest.class_names[i] for i in probabilities.argsort(descending=True)
    ]
    np.testing.assert_allclose(np.load(out / "cam.npy"), expected.cams[0].numpy(), rtol=1e-5, atol=1e-7)


def run_main(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


def test_bad_inputs_exit_2_with_one_line(checkpoint_dir: Path, tmp_path: Path, capsys):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    good = tmp_path / "ok.png"
    make_image().save(good)
    cases = [
        ([str(not_image), "--backbone", "resnet50"], "not an image file"),
        ([str(tmp_path / "missing.png"), "--backbone", "resnet50"], "no such file"),
        ([str(good), "--backbone", "vgg"], "the manifest lists no model named 'vgg'"),
        ([str(good), "--model", "vgg"], "give one of those names, or pass --checkpoint FILE"),
        ([str(good), "--backbone", "resnet50", "--alpha", "2"], "--alpha must be between 0 and 1"),
        ([str(good), "--backbone", "resnet50", "--colormap", "rainbow"], "--colormap must be one of"),
        ([str(good), "--backbone", "resnet50", "--target", "Morchella"], "unknown class 'Morchella'"),
        ([str(good), "--backbone", "resnet50", "--target", "9"], "--target 9 is out of range"),
        ([str(good), "--backbone", "resnet50", "--layer", "layer9"], "no module named 'layer9'"),
        ([str(good), "--backbone", "resnet50", "--checkpoint", str(tmp_path / "none.pt")], "checkpoint not found"),
    ]
    for extra, message in cases:
        code, err = run_main(
            ["explain", *extra[:1], "--manifest", str(checkpoint_dir), *extra[1:], "--out", str(tmp_path / "o")], capsys
        )
        assert code == 2, (extra, err)
        assert err.startswith("error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    code, err = run_main(["explain", str(good), "--backbone", "resnet50", "--manifest", str(tmp_path / "nowhere"),
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "manifest not found" in err


def test_checkpoint_with_another_class_count_is_named(checkpoint_dir: Path, tmp_path: Path, capsys):
    from factories import write_checkpoint

    other = write_checkpoint(tmp_path / "eleven.pt", "mobilenet_v3_large", 11)
    image = tmp_path / "ok.png"
    make_image().save(image)
    code, err = run_main(["explain", str(image), "--backbone", "mobilenet_v3_large", "--checkpoint", str(other),
                          "--manifest", str(checkpoint_dir), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "eleven.pt has 11 classes" in err and "but 4 were expected" in err
