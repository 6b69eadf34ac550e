"""`python -m mushcam import-checkpoint`: whole pickled models become weights-only checkpoints
plus a manifest entry, only with --trust; a malicious pickle never runs without it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch
from cli_run import run_cli
from project_paths import PROJECT_ROOT

from mushcam.catalog import load_catalog_entry
from mushcam.manifest import load_manifest
from mushcam.models import CheckpointError, load_model
from mushcam.models.usercode import CodeConsent

PROJECT = PROJECT_ROOT

MODELS_PY = textwrap.dedent('''
    import torch
    from torch import nn
    from torchvision import models

    class MushroomClassifier(nn.Module):
        def __init__(self, num_classes=9):
            super().__init__()
            self.backbone = models.resnet18(weights=None)
            in_features = self.backbone.fc.in_features
            self.backbone.fc = nn.Identity()
            self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(in_features, 64), nn.ReLU(inplace=True),
                                            nn.Dropout(0.3), nn.Linear(64, num_classes))

        def forward(self, x):
            return self.classifier(self.backbone(x))

    class Tiny(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.fc(torch.tanh(self.conv(x)).mean((2, 3)))
''')


def pickle_whole(tmp_path: Path, cls: str, main_module: bool = False) -> tuple[Path, Path]:
    """Save ``torch.save(model)`` in a separate process (as a training script would)."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "thesis_models.py").write_text(MODELS_PY)
    target = tmp_path / f"{cls}.pt"
    if main_module:  # the class defined in the training script itself: pickled as __main__.Tiny
        script = MODELS_PY + f"\ntorch.manual_seed(0)\ntorch.save({cls}(4), {str(target)!r})\n"
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    else:
        with thesis_module(code) as module:
            torch.manual_seed(0)
            torch.save(getattr(module, cls)(4), target)
    return target, code


@contextmanager
def thesis_module(code: Path) -> Iterator[ModuleType]:
    """``thesis_models`` imported from ``code`` for the block, then forgotten."""
    sys.path.insert(0, str(code))
    sys.modules.pop("thesis_models", None)
    try:
        yield importlib.import_module("thesis_models")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("thesis_models", None)


def reference(code: Path, cls: str) -> torch.nn.Module:
    with thesis_module(code) as module:
        torch.manual_seed(0)
        return getattr(module, cls)(4).eval()


def manifest_from_entry(entry_file: Path, classes: int = 4) -> Path:
    entry = json.loads(entry_file.read_text())
    data = {"classes": [f"G{i}" for i in range(classes)], "input": {"size": 64}, **entry}
    (entry_file.parent / "manifest.json").write_text(json.dumps(data))
    return entry_file.parent


def test_refused_without_trust_with_the_way_out_named(tmp_path: Path, capsys):
    whole, _ = pickle_whole(tmp_path, "MushroomClassifier")
    way_out = r"import-checkpoint MushroomClassifier.pt --trust \[--code DIR\] --out DIR"
    with pytest.raises(CheckpointError, match=way_out):
        load_model("resnet18", whole)
    status, _, err = run_cli(["import-checkpoint", str(whole), "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert "run again with --trust" in err
    assert not (tmp_path / "out").exists()


def test_wrapper_round_trip_gives_an_entry_that_loads_without_trust(tmp_path: Path, capsys):
    whole, code = pickle_whole(tmp_path, "MushroomClassifier")
    out = tmp_path / "out"
    status, printed, err = run_cli(["import-checkpoint", str(whole), "--trust", "--code", str(code), "--out", str(out),
                                "--name", "thesis", "--size", "64"], capsys)
    assert status == 0, err
    assert "logits equal to the pickled model's" in printed
    entry = json.loads((out / "thesis.entry.json").read_text())
    assert entry == {"models": {"thesis": {"checkpoint": "thesis.pt", "arch": "resnet18"}}}
    assert not list(out.glob("*.py"))  # no code needed, none copied

    loaded = load_catalog_entry(load_manifest(manifest_from_entry(out / "thesis.entry.json")), "thesis")
    assert loaded.runs_code is None
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), reference(code, "MushroomClassifier")(x), atol=1e-5)


@pytest.mark.parametrize("main_module", [False, True], ids=["importable", "defined-in-__main__"])
def test_unrecognisable_model_gives_a_code_entry(tmp_path: Path, capsys, main_module):
    whole, code = pickle_whole(tmp_path, "Tiny", main_module=main_module)
    out = tmp_path / "out"
    status, printed, err = run_cli(["import-checkpoint", str(whole), "--trust", "--code", str(code), "--out", str(out),
                                "--size", "64"], capsys)
    if main_module:
        # A class pickled from __main__ is found in --code's files, but it then lives in thesis_models.
        assert status == 0, err
    entry = json.loads((out / "Tiny.entry.json").read_text())["models"]["Tiny"]
    assert entry == {"checkpoint": "Tiny.pt", "code": "thesis_models.py:Tiny", "kwargs": {}}
    assert (out / "thesis_models.py").is_file()
    # Its constructor's arguments are not in the pickle: the check says to fill in kwargs.
    assert "fill in the entry's 'kwargs'" in printed
    data = json.loads((out / "Tiny.entry.json").read_text())
    data["models"]["Tiny"]["kwargs"] = {"num_classes": 4}
    (out / "Tiny.entry.json").write_text(json.dumps(data))
    loaded = load_catalog_entry(load_manifest(manifest_from_entry(out / "Tiny.entry.json")), "Tiny",
                                consent=CodeConsent(trust_code=True))
    assert loaded.runs_code == "thesis_models.py"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), reference(code, "Tiny")(x), atol=1e-6)


class WritesAFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


class CallsSystem:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("payload", ["write_text", "os.system"])
def test_malicious_pickle_never_runs(tmp_path: Path, capsys, payload):
    target = tmp_path / "pwned.txt"
    evil = WritesAFile(target) if payload == "write_text" else CallsSystem(f"touch {target}")
    torch.save({"model": evil, "epoch": 1}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused evil.pt"):
        load_model("resnet18", tmp_path / "evil.pt")
    status, _, err = run_cli(["import-checkpoint", str(tmp_path / "evil.pt"), "--out", str(tmp_path / "out")], capsys)
    assert status == 2 and "--trust" in err
    status, _, err = run_cli(["import-checkpoint", str(tmp_path / "evil.pt"), "--trust", "--out",
                              str(tmp_path / "out")], capsys)
    assert status == 2
    assert "refused evil.pt even with --trust" in err and "may be malicious" in err
    assert not target.exists()


def test_weights_only_file_needs_no_import(tmp_path: Path, capsys):
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "w.pt")
    status, _, err = run_cli(["import-checkpoint", str(tmp_path / "w.pt"), "--trust", "--out", str(tmp_path / "out")],
                         capsys)
    assert status == 2
    assert "already a weights-only checkpoint" in err


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", ""])
def test_a_name_that_is_no_file_name_is_refused_before_anything_is_read(tmp_path: Path, capsys, name: str):
    """`--name ../x` named OUT/../x.pt: a file outside --out. It is refused, and nothing is written."""
    out = tmp_path / "out"
    out.mkdir()
    status, _, err = run_cli(["import-checkpoint", str(tmp_path / "missing.pt"), "--trust", "--out", str(out),
                          "--name", name], capsys)
    assert status == 2
    assert f"--name {name!r} cannot name a file" in err and "Traceback" not in err
    assert list(tmp_path.rglob("*.pt")) == [] and list(out.iterdir()) == []
