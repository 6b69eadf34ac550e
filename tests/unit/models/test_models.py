"""Backbones and checkpoint loading: what people save loads; what does not fit is named."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from factories import write_checkpoint

from mushcam import models
from mushcam.models import (
    BACKBONES,
    DEFAULT_LAYERS,
    CheckpointError,
    PretrainedWeightsUnavailable,
    build_model,
    get_layer,
    load_imagenet_model,
    load_model,
)


def test_public_names():
    assert BACKBONES == ("resnet50", "efficientnet_b0", "mobilenet_v3_large")
    assert DEFAULT_LAYERS == {
        "resnet50": "layer4",
        "efficientnet_b0": "features.7",
        "mobilenet_v3_large": "features.16",
    }


@pytest.mark.parametrize("backbone", BACKBONES)
def test_build_model_has_n_outputs_and_default_layer(backbone):
    model = build_model(backbone, 7).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert isinstance(get_layer(model, DEFAULT_LAYERS[backbone]), torch.nn.Module)


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError, match="resnet50, efficientnet_b0, mobilenet_v3_large"):
        build_model("vgg16", 3)


@pytest.mark.parametrize("wrap", [None, "module", "state_dict", "model_state_dict"])
def test_load_model_accepts_common_checkpoint_shapes(tmp_path: Path, wrap):
    path = write_checkpoint(tmp_path / "m.pt", "mobilenet_v3_large", 4, seed=3, wrap=wrap)
    model = load_model("mobilenet_v3_large", path)
    assert not model.training
    torch.manual_seed(3)
    reference = build_model("mobilenet_v3_large", 4).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_nested_prefixes_are_stripped(tmp_path: Path):
    torch.manual_seed(0)
    state = {f"module.backbone.{k}": v for k, v in build_model("efficientnet_b0", 2).state_dict().items()}
    torch.save({"model_state_dict": state}, tmp_path / "e.pt")
    assert load_model("efficientnet_b0", tmp_path / "e.pt").classifier[1].out_features == 2


def test_num_classes_read_from_head_and_mismatch_named(tmp_path: Path):
    path = write_checkpoint(tmp_path / "r.pt", "resnet50", 9)
    assert load_model("resnet50", path).fc.out_features == 9
    with pytest.raises(CheckpointError, match=r"has 9 classes \(fc.weight \(9, 2048\)\), but 8 were expected"):
        load_model("resnet50", path, num_classes=8)


def test_wrong_architecture_is_refused_by_name(tmp_path: Path):
    path = write_checkpoint(tmp_path / "m.pt", "mobilenet_v3_large", 4)
    with pytest.raises(CheckpointError, match="has no 'fc.weight': it is not a resnet50"):
        load_model("resnet50", path)


def test_partial_checkpoint_names_missing_and_unexpected_keys(tmp_path: Path):
    torch.manual_seed(0)
    state = build_model("mobilenet_v3_large", 4).state_dict()
    state.pop("features.0.0.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError) as caught:
        load_model("mobilenet_v3_large", tmp_path / "m.pt")
    message = str(caught.value)
    assert "1 missing keys (features.0.0.weight)" in message
    assert "1 unexpected keys (extra.weight)" in message


def test_shape_mismatch_is_named(tmp_path: Path):
    torch.manual_seed(0)
    state = build_model("mobilenet_v3_large", 4).state_dict()
    state["features.0.0.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(
        CheckpointError, match=r"features.0.0.weight: checkpoint \(16, 3, 5, 5\) vs model \(16, 3, 3, 3\)"
    ):
        load_model("mobilenet_v3_large", tmp_path / "m.pt")


class WritesAFile:
    """Unpickling this would call Path.write_text: the classic malicious checkpoint."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def test_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path: Path):
    target = tmp_path / "pwned.txt"
    torch.manual_seed(0)
    state = build_model("mobilenet_v3_large", 4).state_dict()
    state["features.0.0.weight"] = WritesAFile(target)
    torch.save(state, tmp_path / "evil.pt")
    assert not target.exists()
    with pytest.raises(CheckpointError, match="refused evil.pt: it holds Python objects"):
        load_model("mobilenet_v3_large", tmp_path / "evil.pt")
    assert not target.exists()
    # The same through a raw pickle file.
    (tmp_path / "evil2.pt").write_bytes(pickle.dumps(WritesAFile(target)))
    with pytest.raises(CheckpointError):
        load_model("mobilenet_v3_large", tmp_path / "evil2.pt")
    assert not target.exists()


def test_unreadable_files_are_clear_errors(tmp_path: Path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read checkpoint empty.pt"):
        load_model("resnet50", tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="text.pt"):
        load_model("resnet50", tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model("resnet50", tmp_path / "nope.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int, not a tensor"):
        load_model("resnet50", tmp_path / "meta.pt")


def test_imagenet_weights_from_the_torch_cache_offline(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(
        PretrainedWeightsUnavailable, match="could not download ImageNet weights for mobilenet_v3_large"
    ):
        load_imagenet_model("mobilenet_v3_large")

    path = models.imagenet_weights_path("mobilenet_v3_large")
    assert path.parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert path.name == "mobilenet_v3_large-5c1a4163.pth"  # the exact name torchvision expects
    write_checkpoint(path, "mobilenet_v3_large", 1000, seed=4)
    model = load_imagenet_model("mobilenet_v3_large")
    torch.manual_seed(4)
    assert torch.equal(model.classifier[3].weight, build_model("mobilenet_v3_large", 1000).classifier[3].weight)
