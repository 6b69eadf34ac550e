"""Recognition details: head rebuilding rules, prefixes, automatic layers, architecture names,
and the memory a load takes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from project_paths import PROJECT_ROOT
from torch import nn

from mushcam.models import (
    ArchitectureError,
    LayerError,
    build_architecture,
    check_architecture,
    choose_layer,
    get_layer,
    load_checkpoint,
    load_model,
)
from mushcam.models.heads import describe, rebuild_head

PROJECT = PROJECT_ROOT


class FunctionalMLP(nn.Module):
    """Activation applied in forward, not as a module: no index holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.silu(self.fc1(x)))


def same_function(source: nn.Module, rebuilt: nn.Module, width: int) -> bool:
    rebuilt.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(5, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(source.eval()(x), rebuilt.eval()(x), atol=1e-6)


@pytest.mark.parametrize(
    ("source", "activation", "text"),
    [
        (nn.Sequential(nn.Dropout(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3)), "relu",
         "Dropout → Linear(16→8) → ReLU → Dropout → Linear(8→3)"),
        (nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)), "relu",
         "Linear(16→8) → BatchNorm1d(8) → ReLU → Linear(8→3)"),
        (nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3)), "relu",
         "Linear(16→8) → ReLU → BatchNorm1d(8) → Linear(8→3)"),
        (nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)), "none",
         "Linear(16→8) → BatchNorm1d(8) → Linear(8→3)"),
        (FunctionalMLP(), "silu", "Linear(16→8) → SiLU → Linear(8→3)"),
        (nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 3)), "none", "Linear(16→8) → Linear(8→3)"),
        (nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Hardswish(), nn.Linear(8, 4), nn.Hardswish(), nn.Identity(),
                       nn.Linear(4, 3)), "hardswish",
         "Dropout → Linear(16→8) → Hardswish → Linear(8→4) → Hardswish → Dropout → Linear(4→3)"),
        (nn.Sequential(OrderedDict(fc1=nn.Linear(16, 8), act=nn.GELU(), fc2=nn.Linear(8, 3))), "gelu",
         "Linear(16→8) → GELU → Linear(8→3)"),
        (nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 3)), "relu", "LayerNorm(16) → Linear(16→3)"),
    ],
)
def test_heads_rebuilt_from_keys_compute_the_same(source, activation, text):
    torch.manual_seed(0)
    for module in source.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
    rebuilt = rebuild_head(source.state_dict(), activation)
    assert describe(rebuilt) == text
    assert same_function(source, rebuilt, 16)


def test_wrong_activation_is_visible_in_the_description_and_changes_the_function():
    source = nn.Sequential(nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 3))
    rebuilt = rebuild_head(source.state_dict(), "relu")
    assert describe(rebuilt) == "Linear(16→8) → ReLU → Linear(8→3)"
    assert not same_function(source, rebuilt, 16)  # which is why head_activation exists


def test_second_copy_and_loss_buffers_are_set_aside_and_said(tmp_path: Path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"model_ema.{k}": v.clone() for k, v in model.state_dict().items()})
    state["criterion.weight"] = torch.tensor([4.0, 1.0, 1.0])
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]  # old checkpoints lack BatchNorm's step counter
    torch.save(state, tmp_path / "m.pt")
    found = load_checkpoint(tmp_path / "m.pt", "resnet18")
    assert "ignored a second copy of the weights under 'model_ema.'" in found.how
    assert "ignored training state criterion.weight" in found.how
    assert not any(t.is_meta for t in (*found.model.parameters(), *found.model.buffers()))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(found.model(x), model.eval()(x))


@pytest.mark.parametrize(
    ("arch", "kwargs", "expected"),
    [
        ("resnet18", {}, "layer4"),
        ("efficientnet_b0", {}, "features"),
        ("densenet121", {}, "features"),
        ("vit_b_16", {"image_size": 64}, "encoder.layers.encoder_layer_11.ln_1"),
    ],
)
def test_automatic_layer_is_the_last_spatial_map_that_reaches_the_logits(arch, kwargs, expected):
    torch.manual_seed(0)
    model = build_architecture(arch, 3, kwargs)
    name, note = choose_layer(model, 64)
    assert name == expected
    assert note.startswith(f"chosen automatically: {expected} (the last ")
    assert model.training and all(m.training for m in model.modules())  # modes restored after the probe
    assert all(p.grad is None for p in model.parameters())  # nothing written to the weights' .grad


def test_automatic_layer_refuses_a_model_without_a_spatial_map():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(LayerError, match="no module of Sequential outputs a spatial feature map"):
        choose_layer(model, 8)


def test_architecture_names_say_what_exists():
    check_architecture("regnet_y_400mf")
    with pytest.raises(ArchitectureError, match="unknown architecture 'resnet_50'. Did you mean resnet50"):
        check_architecture("resnet_50")
    with pytest.raises(ArchitectureError, match="timm has no model named 'resnet_eighteen'"):
        check_architecture("timm:resnet_eighteen")


def test_timm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ArchitectureError, match="needs the timm package, which is not installed: pip install timm"):
        check_architecture("timm:resnet18")


def test_layer_error_on_a_wrapper_lists_both_namings(tmp_path: Path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    torch.save({f"backbone.{k}": v for k, v in model.state_dict().items()}, tmp_path / "w.pt")
    loaded = load_model("resnet18", tmp_path / "w.pt")
    assert get_layer(loaded, "backbone.layer4.1") is get_layer(loaded, "layer4.1")
    with pytest.raises(
        LayerError, match="no module named 'backbone.layer9'.*source model's names work too: 'backbone.…' = '…'"
    ):
        get_layer(loaded, "backbone.layer9")


MEMORY_SCRIPT = """
import json, sys, torch, torchvision
from mushcam.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from mushcam.models import load_model
reset_peak_rss()
before = current_rss_bytes()
model = load_model("resnet50", sys.argv[1], num_classes=9)
print((peak_rss_bytes() - before) / 2**20)
"""


def test_loading_holds_the_weights_once_not_twice(tmp_path: Path):
    """Built on meta and assigned: the peak is well under the old 2x (random init + checkpoint)."""
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(num_classes=9).state_dict(), tmp_path / "r.pt")
    weights_mb = (tmp_path / "r.pt").stat().st_size / 2**20
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "r.pt")], capture_output=True,
                          text=True, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    extra_mb = float(done.stdout.strip().splitlines()[-1])
    assert extra_mb < 1.5 * weights_mb, (extra_mb, weights_mb)
