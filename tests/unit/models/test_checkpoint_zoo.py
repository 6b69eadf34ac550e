"""The checkpoint zoo: checkpoints saved the ways people save them, from real modules, loaded
from the file and a manifest entry alone (no user code): logits equal to the source module's
(1e-5, float32) and Grad-CAM at the entry's layer equal to Grad-CAM on the source module at
the corresponding layer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from mushcam.catalog import load_catalog_entry, load_catalog_model
from mushcam.gradcam import grad_cam
from mushcam.manifest import load_manifest

SIZE = 64


class MushroomClassifier(nn.Module):
    """The thesis's wrapper (section 4.4.4), on any torchvision backbone, weights=None here."""

    def __init__(self, arch: str, num_classes: int = 9, keep_stock_head: bool = False) -> None:
        super().__init__()
        self.backbone = torchvision.models.get_model(arch, weights=None)
        if keep_stock_head:  # the backbone's own 1000-way head stays; the wrapper's head reads its logits
            in_features = 1000
        elif hasattr(self.backbone, "fc"):
            in_features = self.backbone.fc.in_features
            self.backbone.fc = nn.Identity()
        elif arch.startswith("mobilenet_v3"):
            in_features = self.backbone.classifier[0].in_features
            self.backbone.classifier = nn.Identity()
        else:
            in_features = self.backbone.classifier[-1].in_features
            self.backbone.classifier = nn.Identity()
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(in_features, 512), nn.ReLU(inplace=True),
                                        nn.Dropout(0.3), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


class Lightning(nn.Module):
    """A LightningModule's shape: the network under ``model``, a weighted loss beside it."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        weights = torch.ones(num_classes)
        weights[0] = 4.0  # poisonous x4, as the thesis does
        self.criterion = nn.CrossEntropyLoss(weight=weights)


def tv(arch: str, **kwargs: Any) -> nn.Module:
    return torchvision.models.get_model(arch, weights=None, **kwargs)


def with_head(model: nn.Module, path: str, head: nn.Module) -> nn.Module:
    model.set_submodule(path, head)
    return model


@dataclass
class Case:
    """One zoo entry: how the source is built and saved, its manifest entry, the layers compared."""

    name: str
    build: Callable[[], nn.Module]
    classes: int
    entry: dict[str, Any]
    source_layer: str
    save: str = "state_dict"  # state_dict | module | orig_mod | training | lightning | ema | fp16 | bf16 | safetensors
    expect_head: str = ""
    expect_how: tuple[str, ...] = ()
    marks: list = field(default_factory=list)


def mlp_head(width: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(width, 128), nn.BatchNorm1d(128), nn.GELU(),
                         nn.Dropout(0.2), nn.Linear(128, 64), nn.GELU(), nn.Linear(64, classes))


CASES = [
    Case("thesis_resnet50", lambda: MushroomClassifier("resnet50", 9), 9,
         {"arch": "resnet50", "layer": "backbone.layer4"}, "backbone.layer4",
         expect_head="Dropout → Linear(2048→512) → ReLU → Dropout → Linear(512→9)",
         expect_how=("under 'backbone.'", "wrapper's own head 'classifier'")),
    Case("thesis_efficientnet_b0", lambda: MushroomClassifier("efficientnet_b0", 9), 9,
         {"arch": "efficientnet_b0"}, "backbone.features.7", save="training",
         expect_head="Dropout → Linear(1280→512) → ReLU → Dropout → Linear(512→9)",
         expect_how=("under 'backbone.'", "training dict's 'model_state_dict'")),
    Case("thesis_mobilenet_v3_large", lambda: MushroomClassifier("mobilenet_v3_large", 9), 9,
         {"arch": "mobilenet_v3_large", "layer": "backbone.features.16"}, "backbone.features.16", save="module",
         expect_head="Dropout → Linear(960→512) → ReLU → Dropout → Linear(512→9)",
         expect_how=("under 'module.backbone.'",)),
    Case("wrapper_over_stock_head", lambda: MushroomClassifier("resnet18", 4, keep_stock_head=True), 4,
         {"arch": "resnet18", "layer": "backbone.layer3"}, "backbone.layer3",
         expect_head="Linear(512→1000) → Dropout → Linear(1000→512) → ReLU → Dropout → Linear(512→4)"),
    Case("resnet18_dropout_fc",
         lambda: with_head(tv("resnet18"), "fc", nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 5))), 5,
         {"arch": "resnet18", "layer": "layer4"}, "layer4", save="orig_mod",
         expect_head="Dropout → Linear(512→5)", expect_how=("under '_orig_mod.'",)),
    Case("mobilenet_final_replaced", lambda: with_head(tv("mobilenet_v3_large"), "classifier.3",
                                                         nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 6))), 6,
         {"arch": "mobilenet_v3_large", "layer": "features.16"}, "features.16",
         expect_head="Linear(960→1280) → Hardswish → Dropout → Dropout → Linear(1280→6)"),
    Case("densenet121_fp16", lambda: tv("densenet121", num_classes=4), 4, {"arch": "densenet121"}, "features",
         save="fp16", expect_how=("float16 weights computed in float32",)),
    Case("convnext_mlp_safetensors", lambda: with_head(tv("convnext_tiny"), "classifier.2", mlp_head(768, 5)), 5,
         {"arch": "convnext_tiny", "layer": "features.7", "head_activation": "gelu"}, "features.7", save="safetensors",
         expect_head=("Dropout → Linear(768→128) → BatchNorm1d(128) → GELU → Dropout → Linear(128→64) → GELU"
                      " → Linear(64→5)"),
         expect_how=("safetensors",)),
    Case("squeezenet_lightning", lambda: Lightning(tv("squeezenet1_1", num_classes=4), 4), 4,
         {"arch": "squeezenet1_1", "layer": "model.features"}, "features", save="lightning",
         expect_how=("ignored training state criterion.weight",)),
    Case("shufflenet_ema", lambda: tv("shufflenet_v2_x1_0", num_classes=3), 3, {"arch": "shufflenet_v2_x1_0"}, "conv5",
         save="ema"),
    Case("mnasnet_plain", lambda: tv("mnasnet0_5", num_classes=3), 3, {"arch": "mnasnet0_5", "layer": "layers"},
         "layers"),
    Case("regnet_bf16", lambda: tv("regnet_y_400mf", num_classes=3), 3, {"arch": "regnet_y_400mf"}, "trunk_output",
         save="bf16"),
    Case("timm_resnet18", lambda: __import__("timm").create_model("resnet18", num_classes=4), 4,
         {"arch": "timm:resnet18"}, "layer4"),
    Case("swin_t", lambda: tv("swin_t", num_classes=4), 4, {"arch": "swin_t"}, "norm"),
    Case("timm_vit_tiny",
         lambda: __import__("timm").create_model("vit_tiny_patch16_224", num_classes=4, img_size=SIZE), 4,
         {"arch": "timm:vit_tiny_patch16_224"}, "blocks.11.norm1"),
    Case("vit_b_16", lambda: tv("vit_b_16", num_classes=4, image_size=SIZE), 4, {"arch": "vit_b_16"},
         "encoder.layers.encoder_layer_11.ln_1", marks=[pytest.mark.slow]),
]


def _wake_head(model: nn.Module) -> None:
    """Random heads of fresh networks are tiny (ViT's is zero): scale the last Linear so maps are real."""
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(5)))


def save(case: Case, model: nn.Module, path: Path) -> tuple[Path, nn.Module]:
    """Write ``model`` as the case says; returns the file and the module that the file computes."""
    state = model.state_dict()
    if case.save == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    elif case.save == "orig_mod":
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    elif case.save == "training":
        state = {"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.01}]},
                 "epoch": 12, "best_accuracy": 0.91, "classes": [f"c{i}" for i in range(case.classes)]}
    elif case.save == "lightning":
        state = {"state_dict": state, "epoch": 5, "global_step": 400, "optimizer_states": [{"state": {}}],
                 "lr_schedulers": [], "hyper_parameters": {"lr": 0.001}}
    elif case.save == "ema":
        ema = {k: v.clone() for k, v in state.items()}
        state = {"ema": ema, "optimizer": {"state": {}}, "epoch": 3}
    elif case.save in ("fp16", "bf16"):
        model = model.to(torch.float16 if case.save == "fp16" else torch.bfloat16)
        state = model.state_dict()
        model = model.float()  # the half-precision weights, computed in float32
    if case.save == "safetensors":
        from safetensors.torch import save_file

        path = path.with_suffix(".safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path, model


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], tuple[Path, nn.Module, nn.Module]]:
    """Build, save and write a one-model manifest per case, once per module."""
    folder = tmp_path_factory.mktemp("zoo")
    built: dict[str, tuple[Path, nn.Module, nn.Module]] = {}

    def get(case: Case) -> tuple[Path, nn.Module, nn.Module]:
        if case.name not in built:
            torch.manual_seed(0)
            source = case.build().eval()
            _wake_head(source)
            here = folder / case.name
            here.mkdir()
            file, source = save(case, source, here / f"{case.name}.pt")
            manifest = {
                "classes": [f"Genus{i}" for i in range(case.classes)],
                "input": {"size": SIZE},
                "models": {case.name: {"checkpoint": file.name, **case.entry}},
            }
            (here / "manifest.json").write_text(json.dumps(manifest))
            network = source.model if isinstance(source, Lightning) else source
            built[case.name] = (here, network.eval(), source)
        return built[case.name]

    return get


def batch() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_zoo_loads_to_the_source_models_function(zoo, case: Case):
    if case.entry["arch"].startswith("timm:"):
        pytest.importorskip("timm")
    if case.save == "safetensors":
        pytest.importorskip("safetensors")
    folder, network, _ = zoo(case)
    manifest = load_manifest(folder)
    loaded = load_catalog_entry(manifest, case.name)
    x = batch()
    with torch.no_grad():
        expected = network(x)
        got = loaded.model(x)
    assert got.dtype == torch.float32
    assert torch.allclose(got, expected, rtol=0, atol=1e-5), float((got - expected).abs().max())

    layer = manifest.models[case.name].layer or loaded.layer
    peak = 0.0
    for target in range(min(case.classes, 4)):  # random networks leave some classes with empty maps
        ours = grad_cam(loaded.model, x, layer, class_idx=target)
        theirs = grad_cam(network, x, case.source_layer, class_idx=target)
        assert ours.cams.shape == theirs.cams.shape
        assert torch.allclose(ours.cams, theirs.cams, rtol=1e-4, atol=1e-6 * float(theirs.cams.max()))
        peak = max(peak, float(theirs.cams.max()))
    assert peak > 0
    if case.expect_head:
        assert loaded.head == case.expect_head
    for fragment in case.expect_how:
        assert fragment in loaded.recognised
    if manifest.models[case.name].layer is None:
        assert loaded.layer == case.source_layer  # the automatic choice, by name
        assert loaded.layer_note.startswith(f"chosen automatically: {case.source_layer} (the last ")


@pytest.mark.parametrize("layer", ["backbone.layer4", "layer4"])
def test_layer_in_either_naming_explains_the_catalog_model(zoo, layer):
    folder, network, _ = zoo(CASES[0])
    data = json.loads((folder / "manifest.json").read_text())
    data["models"]["thesis_resnet50"]["layer"] = layer
    (folder / "manifest.json").write_text(json.dumps(data))
    manifest = load_manifest(folder)
    x = batch()
    ours = grad_cam(load_catalog_model(manifest, "thesis_resnet50"), x, manifest.models["thesis_resnet50"].layer)
    theirs = grad_cam(network, x, "backbone.layer4")
    assert torch.equal(ours.class_idx, theirs.class_idx)
    assert torch.allclose(ours.cams, theirs.cams, rtol=1e-5, atol=0)
    assert load_catalog_entry(manifest, "thesis_resnet50").layer == "layer4"


def _peer_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: list[int], reshape) -> np.ndarray:
    """pytorch-grad-cam's own unnormalised map, with its reshape_transform for token layers."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)
    try:
        targets = [ClassifierOutputTarget(c) for c in classes]
        outputs = cam.activations_and_grads(x)
        model.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
        activations = cam.activations_and_grads.activations[0].cpu().numpy()
        gradients = cam.activations_and_grads.gradients[0].cpu().numpy()
        return np.maximum(cam.get_cam_image(x, layer, targets, activations, gradients, False), 0)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)


def vit_reshape(tensor: torch.Tensor, height: int = 4, width: int = 4) -> torch.Tensor:
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("case_name", "layer", "reshape"),
    [("timm_vit_tiny", "blocks.11.norm1", vit_reshape), ("swin_t", "features.7", swin_reshape),
     ("swin_t", "norm", swin_reshape)],
)
def test_token_grids_equal_pytorch_grad_cam_with_its_reshape_transform(zoo, case_name, layer, reshape):
    case = next(c for c in CASES if c.name == case_name)
    if case.entry["arch"].startswith("timm:"):
        pytest.importorskip("timm")
    folder, network, _ = zoo(case)
    model = load_catalog_model(load_manifest(folder), case_name)
    x = batch()
    ours = grad_cam(model, x, layer, class_idx=[1, 3])
    theirs = _peer_cam(network, network.get_submodule(layer), x, [1, 3], reshape)
    assert float(ours.cams.max()) > 0
    assert ours.cams.shape == theirs.shape
    scale = float(np.abs(theirs).max())
    assert float((ours.cams.double() - torch.as_tensor(theirs, dtype=torch.float64)).abs().max()) < 1e-4 * scale
