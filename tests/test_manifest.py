"""The manifest users edit: defaults, round trip, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mushcam.manifest import (
    ManifestError,
    default_checkpoint_dir,
    default_manifest,
    load_manifest,
    manifest_from_dict,
    save_manifest,
)
from mushcam.models import BACKBONES

PROJECT = Path(__file__).resolve().parent.parent


def test_committed_manifest_is_the_thesis_default():
    manifest = load_manifest(PROJECT / "checkpoints")
    assert manifest.class_names == [
        "Agaricus", "Amanita", "Boletus", "Cortinarius", "Entoloma", "Hygrocybe", "Lactarius", "Russula", "Suillus",
    ]
    poisonous = [c.name for c in manifest.classes if c.toxicity == "poisonous"]
    assert poisonous == ["Amanita", "Cortinarius", "Entoloma"]
    assert set(manifest.models) == set(BACKBONES)
    assert manifest.models["efficientnet_b0"].layer == "features.7"
    assert manifest.input.size == 224 and manifest.input.resize == "squash"
    assert manifest.checkpoint_path("resnet50") == (PROJECT / "checkpoints" / "resnet50.pt").resolve()


def test_round_trip(tmp_path: Path):
    original = default_manifest(tmp_path)
    save_manifest(original, tmp_path / "manifest.json")
    loaded = load_manifest(tmp_path / "manifest.json")
    assert loaded.to_dict() == original.to_dict()
    assert loaded.class_index("amanita") == 1
    assert loaded.toxicity(3) == "poisonous" and loaded.toxicity("Boletus") == "edible"


def test_default_checkpoint_dir_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(tmp_path))
    assert default_checkpoint_dir() == tmp_path
    monkeypatch.delenv("MUSHCAM_CHECKPOINTS")
    assert default_checkpoint_dir() == PROJECT / "checkpoints"


GOOD = {"classes": [{"name": "A", "toxicity": "edible"}], "models": {"resnet50": {"checkpoint": "r.pt"}}}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"classes": []}, "classes"),
        ({"classes": [{"name": ""}]}, "classes[0].name"),
        ({"classes": [{"name": "A", "toxicity": "deadly"}]}, "classes[0].toxicity"),
        ({"classes": ["A", "A"]}, "classes"),
        ({"input": {"size": 5}}, "input.size"),
        ({"input": {"size": "224"}}, "input.size"),
        ({"input": {"resize": "stretch"}}, "input.resize"),
        ({"input": {"mean": [0.5, 0.5]}}, "input.mean"),
        ({"input": {"std": [0.5, 0.0, 0.5]}}, "input.std"),
        ({"models": {"vgg16": {"checkpoint": "v.pt", "colour": "red"}}}, "models.vgg16.colour"),
        ({"models": {"mine": {"checkpoint": "v.pt", "head_activation": "tanh"}}}, "models.mine.head_activation"),
        ({"models": {"mine": {"checkpoint": "v.pt", "code": "nocolon.py"}}}, "models.mine.code"),
        ({"models": {"resnet50": {"checkpoint": ""}}}, "models.resnet50.checkpoint"),
        ({"models": {"resnet50": {"checkpoint": "r.pt", "layer": 4}}}, "models.resnet50.layer"),
    ],
)
def test_malformed_fields_are_named(patch, field):
    with pytest.raises(ManifestError, match=f"field '{field.replace('[', '.').replace(']', '.')}'"):
        manifest_from_dict({**GOOD, **patch})


def test_defaults_and_short_forms():
    manifest = manifest_from_dict({"classes": ["A", "B"], "models": {"resnet50": "r.pt"}})
    assert [c.toxicity for c in manifest.classes] == ["unknown", "unknown"]
    assert manifest.models["resnet50"].layer == "layer4"
    assert manifest.input.mean == (0.485, 0.456, 0.406)


def test_unreadable_manifests(tmp_path: Path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ManifestError, match="must be a JSON object"):
        load_manifest(tmp_path)
