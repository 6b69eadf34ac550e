"""Consent covers every file a code entry could import (issue 18 §1 leftovers, items 12-13).

The entry's folder is on ``sys.path`` while its file is imported, so a package beside it
(``layers/blocks.py``), a ``__pycache__`` file or an extension module could run too: all are
hashed, a change to any asks again, and running the code writes no new bytecode (which would
change the hashes). Entries in subfolders (``"code": "sub/model.py:Net"``) work the same;
``..``, absolute paths and links out of the manifest's folder are refused before any import.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from mushcam.catalog import code_requests, load_catalog_entry
from mushcam.cli import main
from mushcam.manifest import load_manifest
from mushcam.models import usercode
from mushcam.models.consent import CodeConsent, CodeConsentError
from mushcam.models.usercode import UserCodeError
from mushcam.settings import CONFIG_DIR_ENV, remember_trusted_code

CLASSES = ["Amanita", "Boletus", "Russula", "Suillus"]
NET = textwrap.dedent('''
    from torch import nn
    from layers.blocks import stem

    class Net(nn.Module):
        def __init__(self, num_classes=4, width=8):
            super().__init__()
            self.features = stem(width)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(self.features(x)).flatten(1))
''')
BLOCKS = textwrap.dedent('''
    from torch import nn
    open(MARKER, "a").write("blocks ran\\n")

    def stem(width):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
''')


@pytest.fixture(autouse=True)
def settings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    return folder


def write_tree(base: Path, code_folder: str = "") -> dict[str, Path]:
    """A checkpoint folder whose entry's model.py (in ``code_folder``) imports layers/blocks.py,
    which writes ``marker`` when it runs."""
    root, marker = base / "ckpt", base / "ran.txt"
    code_dir = root / code_folder
    (code_dir / "layers").mkdir(parents=True)
    (code_dir / "model.py").write_text(NET)
    (code_dir / "layers" / "__init__.py").write_text("")
    (code_dir / "layers" / "blocks.py").write_text(f"MARKER = {str(marker)!r}\n" + BLOCKS)
    torch.manual_seed(0)
    state = {"features.0.weight": torch.randn(8, 3, 3, 3), "features.0.bias": torch.zeros(8),
             "fc.weight": torch.randn(4, 8), "fc.bias": torch.zeros(4)}
    torch.save(state, root / "mine.pt")
    code = f"{code_folder}/model.py:Net" if code_folder else "model.py:Net"
    manifest = {"classes": CLASSES, "input": {"size": 32},
                "models": {"mine": {"checkpoint": "mine.pt", "code": code, "layer": "features"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return {"root": root, "code_dir": code_dir, "marker": marker}


def trust_as_shown(root: Path) -> None:
    """What "Trust and run" on Home does: remember the files as the page listed them."""
    [request] = code_requests(load_manifest(root))
    remember_trusted_code((f.path, f.sha256) for f in request.files)


@pytest.mark.parametrize("code_folder", ["", "sub"])
def test_a_package_beside_the_code_is_hashed_and_a_change_asks_again(tmp_path: Path, code_folder: str) -> None:
    tree = write_tree(tmp_path, code_folder)
    manifest = load_manifest(tree["root"])
    [request] = code_requests(manifest)
    listed = [f.path.relative_to(tree["code_dir"]).as_posix() for f in request.files]
    assert listed == ["model.py", "layers/__init__.py", "layers/blocks.py"]
    with pytest.raises(CodeConsentError, match=r"model 'mine' needs your consent to run model\.py \(sha256 "
                                               r"[0-9a-f]{12}…\), layers/__init__\.py .*layers/blocks\.py"):
        load_catalog_entry(manifest, "mine")
    assert not tree["marker"].exists()

    trust_as_shown(tree["root"])
    assert load_catalog_entry(manifest, "mine").runs_code == (f"{code_folder}/model.py" if code_folder else "model.py")
    assert tree["marker"].read_text() == "blocks ran\n"
    assert not list(tree["root"].rglob("__pycache__"))  # no bytecode written: the hashes stay as trusted
    [again] = code_requests(manifest)
    assert again.trusted

    (tree["code_dir"] / "layers" / "blocks.py").write_text(f"MARKER = {str(tree['marker'])!r}\n" + BLOCKS + "# x\n")
    with pytest.raises(CodeConsentError) as refused:
        load_catalog_entry(manifest, "mine")
    assert "needs your consent to run layers/blocks.py (sha256 " in str(refused.value)
    assert "model.py (sha256" not in str(refused.value)  # only what changed is asked for


def test_bytecode_planted_in_pycache_asks_again(tmp_path: Path) -> None:
    tree = write_tree(tmp_path)
    trust_as_shown(tree["root"])
    cache = tree["code_dir"] / "layers" / "__pycache__"
    cache.mkdir()
    (cache / "blocks.cpython-311.pyc").write_bytes(b"\x00" * 32)
    planted = r"needs your consent to run layers/__pycache__/blocks\.cpython-311\.pyc"
    with pytest.raises(CodeConsentError, match=planted):
        load_catalog_entry(load_manifest(tree["root"]), "mine")
    assert not tree["marker"].exists()


def test_files_outside_the_code_folder_are_not_listed(tmp_path: Path) -> None:
    """A sub/ entry imports from sub/ only (sub/ is what goes on sys.path)."""
    tree = write_tree(tmp_path, "sub")
    (tree["root"] / "unrelated.py").write_text("x = 1\n")
    (tree["code_dir"] / "not-a-package").mkdir()
    (tree["code_dir"] / "not-a-package" / "skipped.py").write_text("x = 1\n")
    [request] = code_requests(load_manifest(tree["root"]))
    names = {f.path.name for f in request.files}
    assert "unrelated.py" not in names and "skipped.py" not in names and "blocks.py" in names


def test_a_sub_folder_entry_runs_from_the_cli_with_trust_code(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from factories import make_image

    tree = write_tree(tmp_path, "sub")
    image = tmp_path / "photo.png"
    make_image(40, 40).save(image)
    args = ["explain", str(image), "--model", "mine", "--manifest", str(tree["root"]), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'mine' needs your consent to run model.py (sha256 ") and err.count("\n") == 1
    assert not tree["marker"].exists() and not (tmp_path / "out").exists()
    assert main([*args, "--trust-code"]) == 0
    assert tree["marker"].exists() and (tmp_path / "out" / "prediction.json").is_file()


@pytest.mark.parametrize("code", ["../evil.py:Net", "{outside}/evil.py:Net", "sub/link.py:Net"])
def test_code_out_of_the_folder_is_refused_even_with_trust_code(tmp_path: Path, code: str) -> None:
    tree = write_tree(tmp_path, "sub")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "evil.py").write_text(f"open({str(tree['marker'])!r}, 'w')\n")
    (tmp_path / "evil.py").write_text(f"open({str(tree['marker'])!r}, 'w')\n")
    (tree["code_dir"] / "link.py").symlink_to(outside / "evil.py")
    manifest_path = tree["root"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["models"]["mine"]["code"] = code.format(outside=outside)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UserCodeError, match=r"is outside the manifest's folder .*: put it beside manifest\.json"):
        load_catalog_entry(load_manifest(tree["root"]), "mine", consent=CodeConsent(trust_code=True))
    assert not tree["marker"].exists()


def test_a_crowded_code_folder_is_refused_with_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = write_tree(tmp_path)
    for i in range(12):
        (tree["code_dir"] / f"photo_{i}.jpg").write_bytes(b"x")
    monkeypatch.setattr(usercode, "MAX_CODE_TREE_ENTRIES", 10)
    [request] = code_requests(load_manifest(tree["root"]))
    assert "holds more than 500 importable files or 10 entries" in request.error
    assert "put the model's code in a folder of its own" in request.error
    with pytest.raises(UserCodeError, match="folder of its own"):
        load_catalog_entry(load_manifest(tree["root"]), "mine", consent=CodeConsent(trust_code=True))
    assert not tree["marker"].exists()
