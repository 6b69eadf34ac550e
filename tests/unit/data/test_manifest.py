"""The manifest users edit: defaults, round trip, and errors that name the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from project_paths import PROJECT_ROOT

from mushcam.manifest import (
    ManifestError,
    default_checkpoint_dir,
    default_manifest,
    load_manifest,
    manifest_from_dict,
    save_manifest,
)
from mushcam.models import BACKBONES

PROJECT = PROJECT_ROOT


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


# --- hostile manifests (issue 12): every one is a ManifestError naming what to fix ------------

VALID_TEXT = json.dumps({**GOOD, "input": {"size": 224}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID_TEXT.replace('"size": 224', '"size": 224, "mean": [NaN, 0.4, 0.4]'),
         "manifest.json: NaN is not allowed (JSON has no NaN or Infinity); write a finite number"),
        (VALID_TEXT.replace('"size": 224', '"size": 224, "std": [Infinity, 0.2, 0.2]'),
         "manifest.json: Infinity is not allowed (JSON has no NaN or Infinity); write a finite number"),
        (VALID_TEXT.replace('"size": 224', '"size": 224, "mean": [-Infinity, 0.4, 0.4]'),
         "manifest.json: -Infinity is not allowed"),
        (VALID_TEXT.replace('"size": 224', '"size": 224, "std": [1e999, 0.2, 0.2]'),
         "manifest.json: the number 1e999 is too large to be finite"),
        (VALID_TEXT.replace('"size": 224', '"size": 224, "std": [0.2, 1e-9, 0.2]'),
         "field 'input.std' must hold numbers of at least 0.001"),
        (VALID_TEXT.replace('"size": 224', '"size": 224, "std": [0.2, 0, 0.2]'),
         "field 'input.std' must hold numbers of at least 0.001"),
        (VALID_TEXT.replace('"size": 224', '"size": 224, "mean": [1e300, 0.4, 0.4]'),
         "field 'input.mean' must hold the mean of pixel values in [0, 1]"),
        (VALID_TEXT.replace('"size": 224', '"size": ' + "9" * 5000),
         "manifest.json holds a value that cannot be read: Exceeds the limit (4300 digits)"),
        (VALID_TEXT.replace('"size": 224', '"size": ' + "9" * 4000),
         "field 'input.size' must be an integer between 16 and 2048; got 999"),
        (VALID_TEXT.replace('"r.pt"}', '"r.pt", "kwargs": {"p": [1, NaN]}}'),
         "manifest.json: NaN is not allowed"),
        ("[" * 100_000 + "]" * 100_000,
         "manifest.json is nested too deeply: lists or objects more than 32 levels deep"),
        ('{"classes": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001,
         "manifest.json is nested too deeply: lists or objects more than 32 levels deep"),
    ],
    ids=["nan-mean", "inf-std", "minus-inf-mean", "overflow-std", "tiny-std", "zero-std", "huge-mean",
         "5000-digit-int", "4000-digit-size", "nan-in-kwargs", "nested-lists", "nested-objects"],
)
def test_hostile_manifest_files_get_one_clear_message(tmp_path: Path, text: str, message: str):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 300  # one line, not a 5,000-digit echo


def test_nesting_inside_strings_does_not_count(tmp_path: Path):
    entry = {"checkpoint": "[" * 100 + ".pt", "label": '{\\"' * 50}
    (tmp_path / "manifest.json").write_text(json.dumps({**GOOD, "models": {"m": entry}}))
    manifest = load_manifest(tmp_path)
    assert manifest.models["m"].checkpoint == entry["checkpoint"]
    assert manifest.models["m"].label == entry["label"]


@pytest.mark.parametrize(
    ("input_spec", "field"),
    [({"mean": [float("nan"), 0.4, 0.4]}, "input.mean"), ({"std": [0.2, float("inf"), 0.2]}, "input.std"),
     ({"std": [0.2, 0.2, -0.2]}, "input.std")],
)
def test_non_finite_numbers_from_python_are_refused_too(input_spec, field):
    with pytest.raises(ManifestError, match=f"field '{field}' must hold"):
        manifest_from_dict({**GOOD, "input": input_spec})


def test_non_finite_kwargs_from_python_are_refused():
    with pytest.raises(ManifestError, match=r"field 'models.m.kwargs.opts\[1\]' must be a finite number; got nan"):
        manifest_from_dict({**GOOD, "models": {"m": {"checkpoint": "m.pt", "kwargs": {"opts": [1.0, float("nan")]}}}})


def test_every_number_of_a_loaded_manifest_is_finite(tmp_path: Path):
    save_manifest(default_manifest(tmp_path), tmp_path / "manifest.json")
    loaded = load_manifest(tmp_path)
    numbers = [*loaded.input.mean, *loaded.input.std, float(loaded.input.size)]
    assert all(math.isfinite(v) for v in numbers) and min(loaded.input.std) >= 1e-3


def test_models_named_by_the_user_with_labels_and_architectures():
    manifest = manifest_from_dict({
        "classes": ["A"],
        "models": {
            "resnet50": "r.pt",
            "resnet50-x4": {"arch": "resnet50", "checkpoint": "r4.pt", "label": "ResNet-50 (poison x4)"},
            "small": {"arch": "resnet18", "checkpoint": "s.pt"},
        },
    })
    assert [m.arch for m in manifest.models.values()] == ["resnet50", "resnet50", "resnet18"]
    assert manifest.display_name("resnet50") == "ResNet-50"
    assert manifest.display_name("resnet50-x4") == "ResNet-50 (poison x4)"
    assert manifest.display_name("small") == "small"
    assert manifest.models["resnet50-x4"].layer == "layer4"  # the preset's layer follows the arch
    assert manifest.models["small"].layer is None  # found automatically at load
    assert manifest.checkpoint_path("resnet50-x4").name == "r4.pt"


def test_two_models_shown_alike_are_refused():
    with pytest.raises(ManifestError, match=r"field 'models.mine.label' shows the model as 'ResNet-50', as "
                                            r"models.resnet50 is shown: give one of them another label"):
        manifest_from_dict(
            {**GOOD, "models": {"resnet50": "a.pt", "mine": {"checkpoint": "b.pt", "label": "ResNet-50"}}}
        )
    manifest = manifest_from_dict({**GOOD, "models": {"resnet50": "a.pt", "mine": {"checkpoint": "b.pt",
                                                                                    "arch": "resnet50"}}})
    assert [manifest.display_name(n) for n in manifest.models] == ["ResNet-50", "mine"]
