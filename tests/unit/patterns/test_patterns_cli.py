"""``patterns`` command end to end on made photos and a random-weights model (through its own add_cli)."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re

import pytest
from factories import CLASSES, write_image_folder, write_manifest
from PIL import Image

from mushcam.cache import CamCache
from mushcam.cli.patterns import add_cli
from mushcam.exceptions import MushcamError
from mushcam.patterns.store import load_clusters, load_focus, load_regions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mushcam")
    add_cli(parser.add_subparsers(dest="command"))
    return parser


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("patterns")
    manifest = write_manifest(root / "ckpt", backbones=("mobilenet_v3_large",))
    data = write_image_folder(root / "test", [name for name, _ in CLASSES], per_class=4)
    (root / "boxes.csv").write_text(f"path,x0,y0,x1,y1\n{CLASSES[0][0]}/img_0.png,10,10,50,40\n", encoding="utf-8")
    return root, manifest, data


def test_patterns_writes_json_markdown_html_and_the_store(made, capsys):
    root, manifest, data = made
    out, store, cache = root / "out", root / "results.sqlite", root / "cams"
    argv = ["patterns", "--store", str(store), "--data", str(data), "--model", "mobilenet_v3_large",
            "--manifest", str(manifest), "--out", str(out), "--cache", str(cache), "--concepts", "2",
            "--regions", str(root / "boxes.csv"), "--propose-regions"]
    args = _parser().parse_args(argv)
    assert args.handler(args) == 0
    report = json.loads((out / "patterns.json").read_text(encoding="utf-8"))
    [model] = report["models"]
    assert model["model"] == "mobilenet_v3_large" and model["n_photos"] == 4 * len(CLASSES)
    clusters = [c for group in model["clusters"] for c in group["clusters"]]
    assert sum(c["size"] for c in clusters) == model["n_photos"]
    assert all(set(c) >= {"model", "class", "paths", "size", "accuracy", "flags", "reasons"} for c in clusters)
    assert model["focus"]["n_photos"] == model["n_photos"]  # one imported box, the rest proposed
    assert 0 <= model["focus"]["uniform"] <= 1
    assert model["concepts"] and all(len(c["concepts"]) <= 2 for c in model["concepts"])
    sources = {r["path"]: r["source"] for r in report["regions"]}
    assert sources[f"{CLASSES[0][0]}/img_0.png"] == "imported" and "proposed" in sources.values()
    html = (out / "patterns.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<script src" not in html and "http" not in html
    found = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', html)
    pictures = [Image.open(io.BytesIO(base64.b64decode(data))) for _, data in found]
    expected = (sum(1 + len(c["typical"]) for c in clusters)  # each cluster: mean map + typical photos
                + sum(len(c["top_photos"]) for group in model["concepts"] for c in group["concepts"]))
    assert len(pictures) == expected and any("concept 0:" in line for line in html.split("<h4>"))
    # every map has its colour bar to its right: wider than the square mean map (1.0) or the 80 x 60 photo (1.33)
    ratios = [(alt.startswith("mean map"), p.width / p.height) for (alt, _), p in zip(found, pictures, strict=True)]
    assert all(ratio > (1.2 if mean else 1.5) for mean, ratio in ratios), ratios
    assert "# Patterns" in (out / "patterns.md").read_text(encoding="utf-8")
    assert len(load_regions(store)) == model["n_photos"]
    assert load_focus(store)[0].summary.n_photos == model["n_photos"]
    assert len(load_clusters(store)) == len(clusters)
    assert "wrote" in capsys.readouterr().out

    warm = CamCache(cache)
    entries = len(warm.entries())
    assert entries >= model["n_photos"]
    args = _parser().parse_args(argv[:-3] + ["--concepts", "0"])
    assert args.handler(args) == 0
    assert len(CamCache(cache).entries()) == entries
    assert "(0 computed, the rest from the cache)" in capsys.readouterr().out  # a warm cache: no model call


def test_patterns_refuses_bad_options(made):
    root, manifest, data = made
    base = ["patterns", "--store", str(root / "r.sqlite"), "--data", str(data), "--manifest", str(manifest),
            "--out", str(root / "o"), "--cache", str(root / "cams")]
    for extra in (["--model", "nope"], ["--model", "mobilenet_v3_large", "--method", "magic"],
                  ["--model", "mobilenet_v3_large", "--max-clusters", "0"]):
        args = _parser().parse_args(base + extra)
        with pytest.raises(MushcamError):
            args.handler(args)
