"""The CAM method through the cache key, the explain/compare/gradcam commands and the pipeline."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch
from factories import make_image, write_image_folder

from mushcam import compare
from mushcam.cache import KEY_VERSION, CamCache, cam_key, spec_token
from mushcam.cam import METHODS, cam
from mushcam.cli import main
from mushcam.explain import cached_explanation, explain_image
from mushcam.manifest import InputSpec, load_manifest
from mushcam.models import build_model


def test_grad_cam_keeps_the_key_of_maps_cached_before_methods_existed():
    spec = InputSpec(size=64)
    old = hashlib.sha256("|".join((KEY_VERSION, "ck", "im", "layer4", "3", spec_token(spec))).encode()).hexdigest()
    assert cam_key("ck", "im", "layer4", 3, spec) == old
    assert cam_key("ck", "im", "layer4", 3, spec, "gradcam") == old
    keys = {cam_key("ck", "im", "layer4", 3, spec, method) for method in METHODS}
    assert len(keys) == len(METHODS)  # every method its own entry


def test_cached_explanation_keeps_methods_apart(tmp_path: Path):
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_large", 4).eval()
    image = make_image(80, 64, seed=2)
    spec = InputSpec(size=64)
    cache = CamCache(tmp_path / "cache")
    maps = {}
    for method in ("gradcam", "layercam", "eigencam"):
        first = cached_explanation(cache, model, image, spec, "features.16", None, "ck", "im", method)
        again = cached_explanation(cache, model, image, spec, "features.16", None, "ck", "im", method)
        assert first.method == again.method == method
        assert torch.equal(first.cam, again.cam)
        maps[method] = first.cam
    assert cache.hits == 3  # each second call was a hit, of its own method
    fresh = explain_image(model, image, spec, "features.16", None, "eigencam").cam
    torch.testing.assert_close(maps["eigencam"], fresh, rtol=2**-10, atol=2**-11 * float(fresh.max()))
    assert not torch.allclose(maps["eigencam"], maps["gradcam"])


def test_explain_command_takes_the_method(checkpoint_dir: Path, tmp_path: Path):
    image_path = tmp_path / "photo.png"
    make_image(90, 70, seed=5).save(image_path)
    out = tmp_path / "out"
    code = main(["explain", str(image_path), "--backbone", "efficientnet_b0", "--manifest", str(checkpoint_dir),
                 "--method", "hirescam", "--out", str(out)])
    assert code == 0
    prediction = json.loads((out / "prediction.json").read_text())
    assert prediction["method"] == "hirescam"
    import numpy as np

    from mushcam.data import load_image, preprocess
    from mushcam.models import load_model

    manifest = load_manifest(checkpoint_dir)
    model = load_model("efficientnet_b0", manifest.checkpoint_path("efficientnet_b0"), num_classes=manifest.num_classes)
    expected = cam(model, preprocess(load_image(image_path), manifest.input)[None], "features.7", method="hirescam")
    np.testing.assert_allclose(np.load(out / "cam.npy"), expected.cams[0].numpy(), rtol=1e-6)


def test_an_unknown_method_is_one_line_naming_the_methods(checkpoint_dir: Path, tmp_path: Path, capsys):
    image_path = tmp_path / "photo.png"
    make_image(64, 64).save(image_path)
    code = main(["explain", str(image_path), "--backbone", "resnet50", "--manifest", str(checkpoint_dir),
                 "--method", "gradcam2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "scorecam" in err and "gradcam2" in err


def test_pipeline_method_goes_into_key_folder_and_settings(checkpoint_dir: Path, tmp_path: Path, capsys):
    data = write_image_folder(tmp_path / "data", ["Amanita", "Boletus"], per_class=1)
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["gradcam", "--data", str(data), "--manifest", str(checkpoint_dir), "--cache", str(cache),
              "--backbones", "mobilenet_v3_large", "--out", str(out), "--device", "cpu"]
    assert main(common) == 0
    assert main([*common, "--method", "xgradcam"]) == 0  # same --out: its own folder, no clash
    plain = json.loads((out / "mobilenet_v3_large" / "run.json").read_text())
    other = json.loads((out / "mobilenet_v3_large-xgradcam" / "run.json").read_text())
    assert "method" not in plain and other["method"] == "xgradcam"
    assert len(CamCache(cache).entries()) == 2 * 2 * 2  # 2 images x (class key + "predicted" alias) x 2 methods
    assert main([*common, "--method", "xgradcam"]) == 0  # a rerun finds its own maps
    assert "XGrad-CAM on cpu" in capsys.readouterr().out
    assert len(CamCache(cache).entries()) == 8
    rows = list(csv.DictReader((out / "mobilenet_v3_large-xgradcam" / "predictions.csv").open()))
    assert len(rows) == 2


def test_compare_columns_are_models_times_methods(checkpoint_dir: Path, tmp_path: Path):
    folder = write_image_folder(tmp_path / "data", ["Amanita", "Suillus"], per_class=1)
    out = tmp_path / "out"
    code = main(["compare", str(folder), "--manifest", str(checkpoint_dir), "--backbones", "mobilenet_v3_large",
                 "efficientnet_b0", "--method", "gradcam", "eigencam", "--n", "2", "--no-outcome-mix", "--out",
                 str(out)])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(next(out.glob("*[0-9].csv")).read_text())))
    header = set(rows[0])
    for column in ("mobilenet_v3_large", "mobilenet_v3_large/eigencam", "efficientnet_b0", "efficientnet_b0/eigencam"):
        assert f"{column}_predicted" in header
    assert compare.column_label("efficientnet_b0/eigencam") == "EfficientNet-B0 · Eigen-CAM"
    assert compare.split_column("resnet50") == ("resnet50", "gradcam")


def test_compare_calls_explain_with_the_method_only_for_other_methods(checkpoint_dir: Path):
    manifest = load_manifest(checkpoint_dir)
    calls = []
    image = compare.CompareImage("a.png", make_image(64, 64), "sha")

    def explain(backbone, img, *method):
        calls.append((backbone, *method))
        model = build_model(backbone, manifest.num_classes).eval()
        return explain_image(model, img.image, manifest.input, manifest.models[backbone].layer, None, *method)

    result = compare.compute_comparison([image], ["mobilenet_v3_large"], manifest, explain,
                                        methods=("gradcam", "layercam"))
    assert calls == [("mobilenet_v3_large",), ("mobilenet_v3_large", "layercam")]
    assert result.backbones == ("mobilenet_v3_large", "mobilenet_v3_large/layercam")
    with pytest.raises(ValueError, match="unknown CAM method"):
        compare.compute_comparison([image], ["mobilenet_v3_large"], manifest, explain, methods=("nope",))
