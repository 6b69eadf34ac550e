"""Models built from the user's own code: only when an entry names it, one clear line when it fails."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mushcam.catalog import load_catalog_entry
from mushcam.gradcam import grad_cam
from mushcam.manifest import load_manifest
from mushcam.models import CheckpointError
from mushcam.models.usercode import CodeConsent, UserCodeError

# These tests are about what the user's code does once it may run: they consent explicitly
# (tests/unit/models/test_code_consent.py is about the consent itself).
TRUSTED = CodeConsent(trust_code=True)

THESIS_MODELS = textwrap.dedent('''
    import torch
    from torch import nn
    from torchvision import models

    class MushroomClassifier(nn.Module):
        def __init__(self, num_classes=9, pretrained=False, hidden=512):
            super().__init__()
            self.backbone = models.resnet18(weights="IMAGENET1K_V1" if pretrained else None)
            in_features = self.backbone.fc.in_features
            self.backbone.fc = nn.Identity()
            self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                            nn.Dropout(0.3), nn.Linear(hidden, num_classes))
            self.temperature = nn.Parameter(torch.tensor(1.5))  # something no recogniser could guess

        def forward(self, x):
            return self.classifier(self.backbone(x)) / self.temperature

    class Broken(nn.Module):
        def __init__(self, num_classes=9):
            super().__init__()
            raise RuntimeError("forgot to set the backbone")
''')


def write_folder(tmp_path: Path, entry: dict, code: str = THESIS_MODELS, classes: int = 4) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "thesis_models.py").write_text(code)
    manifest = {"classes": [f"G{i}" for i in range(classes)], "input": {"size": 64}, "models": {"mine": entry}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def source_model(folder: Path, **kwargs) -> torch.nn.Module:
    sys.path.insert(0, str(folder))
    try:
        import importlib

        module = importlib.import_module("thesis_models")
        importlib.reload(module)
        torch.manual_seed(0)
        return module.MushroomClassifier(**kwargs).eval()
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("thesis_models", None)


def test_code_entry_builds_the_users_class_and_loads_weights_strictly(tmp_path: Path):
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "code": "thesis_models.py:MushroomClassifier",
                                     "kwargs": {"num_classes": 4, "hidden": 32}, "layer": "backbone.layer4"})
    source = source_model(folder, num_classes=4, hidden=32)
    with torch.no_grad():
        source.temperature.fill_(2.5)
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, folder / "mine.pt")

    loaded = load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)
    assert loaded.runs_code == "thesis_models.py"
    assert loaded.layer == "backbone.layer4"
    assert "built by your code thesis_models.py:MushroomClassifier" in loaded.recognised
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), source(x), atol=1e-6)
    assert torch.allclose(grad_cam(loaded.model, x, "backbone.layer4").cams,
                          grad_cam(source, x, "backbone.layer4").cams)


def test_code_is_not_imported_unless_an_entry_names_it(tmp_path: Path):
    marker = tmp_path / "imported.txt"
    code = THESIS_MODELS + f"\nopen({str(marker)!r}, 'w').write('ran')\n"
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "arch": "resnet18"}, code=code)
    torch.manual_seed(0)
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), folder / "mine.pt")
    loaded = load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)
    assert loaded.runs_code is None
    assert not marker.exists()


def test_exception_in_user_code_is_one_line_with_the_traceback_kept(tmp_path: Path):
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "code": "thesis_models.py:Broken",
                                     "kwargs": {"num_classes": 4}})
    (folder / "mine.pt").write_bytes(b"")
    with pytest.raises(UserCodeError) as caught:
        load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)
    message = str(caught.value)
    assert "\n" not in message
    assert "thesis_models.py:Broken" in message and "RuntimeError: forgot to set the backbone" in message
    assert "thesis_models.py line 22" in message
    assert "Traceback (most recent call last)" in caught.value.details
    assert "raise RuntimeError" in caught.value.details


def test_pretrained_download_in_user_code_says_what_to_do(tmp_path: Path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "code": "thesis_models.py:MushroomClassifier",
                                     "kwargs": {"num_classes": 4, "pretrained": True}})
    (folder / "mine.pt").write_bytes(b"")
    with pytest.raises(UserCodeError, match="tried to download pretrained weights.*weights=None"):
        load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("missing.py:Net", "code file not found"),
        ("../outside.py:Net", "outside the manifest's folder"),
        ("thesis_models.py:Nope", "has no class 'Nope' \\(its nn.Module classes: Broken, MushroomClassifier\\)"),
        ("thesis_models.py:models", "is not a torch.nn.Module subclass"),
    ],
)
def test_bad_code_references_are_clear(tmp_path: Path, code, message):
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "code": code})
    (tmp_path / "outside.py").write_text("")
    with pytest.raises(UserCodeError, match=message):
        load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)


def test_weights_that_do_not_fit_the_users_class_name_keys_and_kwargs(tmp_path: Path):
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "code": "thesis_models.py:MushroomClassifier",
                                     "kwargs": {"num_classes": 4, "hidden": 32}})
    torch.save(source_model(folder, num_classes=4, hidden=64).state_dict(), folder / "mine.pt")
    mismatch = r"shape mismatches \(classifier.1.weight: checkpoint \(64, 512\) vs model \(32, 512\).*check 'kwargs'"
    with pytest.raises(CheckpointError, match=mismatch):
        load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)


def test_a_class_count_other_than_the_manifests_is_named(tmp_path: Path):
    folder = write_folder(tmp_path, {"checkpoint": "mine.pt", "code": "thesis_models.py:MushroomClassifier",
                                     "kwargs": {"num_classes": 7, "hidden": 32}}, classes=4)
    torch.save(source_model(folder, num_classes=7, hidden=32).state_dict(), folder / "mine.pt")
    with pytest.raises(UserCodeError, match=r"returns \(1, 7\), but the manifest lists 4 classes"):
        load_catalog_entry(load_manifest(folder), "mine", consent=TRUSTED)
