"""Things the tests make for themselves: images, checkpoints, manifests, image folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model

CLASSES = [("Amanita", "poisonous"), ("Boletus", "edible"), ("Gyromitra", "poisonous"), ("Suillus", "edible")]


def make_image(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A deterministic RGB image with a gradient, noise and a bright disc (not uniform)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), 0.5 * np.ones_like(xx, dtype=float)], -1)
    cx, cy, r = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height, 0.2 * min(width, height)
    disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
    base[disc] = rng.uniform(0.6, 1.0, size=3)
    noisy = np.clip(base * 255 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


class ThesisWrapper(nn.Module):
    """The thesis's ``MushroomClassifier`` (section 4.4.4): a torchvision trunk whose head is
    removed, under ``backbone``, and its own MLP head ``classifier``; weights=None here."""

    def __init__(self, arch: str, num_classes: int) -> None:
        super().__init__()
        self.backbone = torchvision.models.get_model(arch, weights=None)
        if hasattr(self.backbone, "fc"):
            in_features = self.backbone.fc.in_features
            self.backbone.fc = nn.Identity()
        else:  # EfficientNet / MobileNet: the first Linear of the stock classifier reads the pooled features
            in_features = next(m for m in self.backbone.classifier.modules() if isinstance(m, nn.Linear)).in_features
            self.backbone.classifier = nn.Identity()
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(in_features, 512), nn.ReLU(inplace=True),
                                        nn.Dropout(0.3), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


def write_checkpoint(path: Path, backbone: str, num_classes: int, seed: int = 0, wrap: str | None = None) -> Path:
    """Save a randomly initialised backbone's state dict (optionally wrapped / prefixed;
    ``wrap="thesis"``: the thesis's wrapper around that backbone, see :class:`ThesisWrapper`)."""
    torch.manual_seed(seed)
    if wrap == "thesis":
        state = ThesisWrapper(backbone, num_classes).state_dict()
    else:
        state = build_model(backbone, num_classes).state_dict()
    if wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "state_dict":
        state = {"state_dict": state, "epoch": 3}
    elif wrap == "model_state_dict":
        state = {"model_state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_manifest(
    folder: Path,
    backbones: tuple[str, ...] = BACKBONES,
    classes: list[tuple[str, str]] = CLASSES,
    size: int = 64,
    resize: str = "squash",
    write_weights: bool = True,
) -> Path:
    """A checkpoint folder: ``manifest.json`` plus one random-weights file per backbone."""
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for i, backbone in enumerate(backbones):
        if write_weights:
            write_checkpoint(folder / f"{backbone}.pt", backbone, len(classes), seed=i)
        models[backbone] = {"checkpoint": f"{backbone}.pt", "layer": DEFAULT_LAYERS[backbone]}
    manifest = {
        "classes": [{"name": n, "toxicity": t} for n, t in classes],
        "input": {"size": size, "resize": resize, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "models": models,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder / "manifest.json"


def write_image_folder(root: Path, classes: list[str], per_class: int = 3, size: tuple[int, int] = (80, 60)) -> Path:
    """An ImageFolder layout ``root/<Class>/img_k.png`` of generated images."""
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            make_image(*size, seed=100 * ci + k).save(root / name / f"img_{k}.png")
    return root


# Five named models, two of the same architecture: what a user with their own checkpoints has.
# Each entry: name -> (manifest entry, how its checkpoint is written). "thesis-mobilenet" is the
# thesis's wrapper (ThesisWrapper: trunk under `backbone.`, its own MLP `classifier`), its layer
# written in the wrapper's own naming.
FIVE_MODELS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "resnet50": ({"checkpoint": "resnet50.pt"}, {"arch": "resnet50", "seed": 0}),
    "resnet50-x4": (
        {"checkpoint": "resnet50_poison_x4.pt", "arch": "resnet50", "label": "ResNet-50 (poisonous ×4)"},
        {"arch": "resnet50", "seed": 1},
    ),
    "efficientnet_b0": ({"checkpoint": "efficientnet_b0.pt", "layer": "features.7"}, {"arch": "efficientnet_b0",
                                                                                      "seed": 2}),
    "mobilenet_v3_large": ({"checkpoint": "mobilenet_v3_large.pt"}, {"arch": "mobilenet_v3_large", "seed": 3}),
    "thesis-mobilenet": (
        {"checkpoint": "thesis_mobilenet.pt", "arch": "mobilenet_v3_large", "label": "Thesis MobileNetV3",
         "layer": "backbone.features.16"},
        {"arch": "mobilenet_v3_large", "seed": 4, "wrap": "thesis"},
    ),
}


def write_five_models(folder: Path, classes: list[tuple[str, str]] = CLASSES, size: int = 64) -> Path:
    """A checkpoint folder with the five models of :data:`FIVE_MODELS` and their manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry, how in FIVE_MODELS.values():
        write_checkpoint(folder / str(entry["checkpoint"]), str(how["arch"]), len(classes), seed=int(how["seed"]),
                         wrap=how.get("wrap"))  # type: ignore[arg-type]
    manifest = {
        "classes": [{"name": n, "toxicity": t} for n, t in classes],
        "input": {"size": size, "resize": "squash"},
        "models": {name: entry for name, (entry, _) in FIVE_MODELS.items()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder / "manifest.json"
