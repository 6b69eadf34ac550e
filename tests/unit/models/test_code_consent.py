"""A folder you did not write runs no code until you consent (issue 18, section 1).

The folder's ``model.py`` writes a marker file when it is imported: the marker must never
appear on any command or page until the user passes ``--trust-code`` or presses "Trust and
run" on Home, and a changed file asks again. Also: ``kwargs`` are checked against the class
and may not name files; ``import-checkpoint --code DIR`` imports only the class's file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from factories import write_image_folder
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from mushcam.catalog import checkpoint_statuses, code_requests, load_catalog_entry, with_code_consent
from mushcam.cli import main
from mushcam.manifest import load_manifest
from mushcam.models.consent import CodeConsent, CodeConsentError
from mushcam.models.usercode import KwargsError
from mushcam.settings import CONFIG_DIR_ENV, read_trusted_code, remember_trusted_code, trusted_code_path

ROOT = PROJECT_ROOT
HOME, EXPLAIN, COMPARE, ERRORS, TRUST = (str(ROOT / p) for p in (
    "app.py", "pages/1_Explain.py", "pages/2_Compare.py", "pages/3_Errors.py", "pages/4_Trust.py"))
CLASSES = ["Amanita", "Boletus", "Russula", "Suillus"]

NET = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=4, width=8):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(self.features(x)).flatten(1))
''')

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture(autouse=True)
def settings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test has its own settings folder: nothing trusted, nothing read from ~/.config."""
    folder = tmp_path / "config"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    return folder


def write_folder(base: Path, kwargs: dict | None = None) -> dict[str, Path]:
    """A checkpoint folder with a plain resnet18 entry and a 'mine' entry built by model.py
    (which writes ``marker`` when imported), and a labelled image folder."""
    folder, marker = base / "ckpt", base / "ran.txt"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\n" + NET)
    namespace: dict = {}
    exec(compile(NET, "net", "exec"), namespace)  # the same class, without the marker, for the weights
    torch.manual_seed(0)
    torch.save(namespace["Net"]().state_dict(), folder / "mine.pt")
    torch.save(torchvision.models.resnet18(num_classes=len(CLASSES)).state_dict(), folder / "plain.pt")
    entry = {"checkpoint": "mine.pt", "code": "model.py:Net", "layer": "features", "label": "My net"}
    if kwargs is not None:
        entry["kwargs"] = kwargs
    manifest = {"classes": [{"name": c, "toxicity": "poisonous" if c == "Amanita" else "edible"} for c in CLASSES],
                "input": {"size": 64},
                "models": {"plain": {"checkpoint": "plain.pt", "arch": "resnet18", "layer": "layer4"}, "mine": entry}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    data = write_image_folder(base / "data", CLASSES, per_class=1, size=(72, 56))
    return {"ckpt": folder, "marker": marker, "data": data, "image": data / "Amanita" / "img_0.png"}


@pytest.fixture
def folder(tmp_path: Path) -> dict[str, Path]:
    return write_folder(tmp_path)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.err


# --- the command line ----------------------------------------------------------------------------


def test_explain_refuses_without_trust_code_and_runs_with_it(folder: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = ["explain", str(folder["image"]), "--model", "mine", "--manifest", str(folder["ckpt"]),
            "--out", str(tmp_path / "out")]
    status, err = cli(args, capsys)
    assert status == 2
    assert "model 'mine' needs your consent to run model.py (sha256 " in err
    assert "pass --trust-code, or press 'Trust and run' on the Home page" in err
    assert not folder["marker"].exists()
    assert cli([*args, "--trust-code"], capsys)[0] == 0
    assert folder["marker"].read_text() == "ran\n"
    assert not trusted_code_path().exists()  # --trust-code is per command: nothing remembered


@pytest.mark.parametrize("command", ["evaluate", "compare", "gradcam", "sanity", "faithfulness"])
def test_other_commands_refuse_without_trust_code(folder: dict[str, Path], tmp_path: Path, command: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data, out = str(folder["ckpt"]), str(folder["data"]), str(tmp_path / "out")
    args = {
        "evaluate": ["evaluate", "--manifest", ckpt, "--data", data, "--out", str(tmp_path / "r.sqlite"),
                     "--model", "mine"],
        "compare": ["compare", data, "--manifest", ckpt, "--model", "mine", "--n", "1", "--no-outcome-mix",
                    "--out", out],
        "gradcam": ["gradcam", "--data", data, "--manifest", ckpt, "--model", "mine", "--out", out],
        "sanity": ["sanity", str(folder["image"]), "--manifest", ckpt, "--model", "mine"],
        "faithfulness": ["faithfulness", "--data", data, "--manifest", ckpt, "--models", "mine", "--steps", "2",
                         "--road-percentages", "none", "--out", str(tmp_path / "f.sqlite")],
    }[command]
    status, err = cli(args, capsys)
    assert status == 2, err
    assert "needs your consent to run model.py (sha256 " in err and "--trust-code" in err
    assert not folder["marker"].exists()


def test_gradcam_runs_the_code_with_trust_code(folder: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = ["gradcam", "--data", str(folder["data"]), "--manifest", str(folder["ckpt"]), "--model", "mine",
            "--out", str(tmp_path / "out"), "--trust-code"]
    status, err = cli(args, capsys)
    assert status == 0, err
    assert folder["marker"].exists()


def test_every_model_loading_command_has_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("explain", "evaluate", "compare", "gradcam", "faithfulness", "sanity", "review-report"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--trust-code" in capsys.readouterr().out, command


# --- the library: remembered consent, changed files, damaged settings ---------------------------


def test_remembered_consent_is_per_file_hash_and_a_changed_file_asks_again(folder: dict[str, Path]) -> None:
    manifest = load_manifest(folder["ckpt"])
    [request] = code_requests(manifest)
    assert request.name == "mine" and not request.trusted and request.files[0].path.name == "model.py"
    assert {s.name: s.status for s in checkpoint_statuses(manifest)} == {"plain": "found", "mine": "needs consent"}
    with pytest.raises(CodeConsentError, match=f"sha256 {request.files[0].sha256[:12]}"):
        load_catalog_entry(manifest, "mine")
    assert not folder["marker"].exists()
    load_catalog_entry(manifest, "plain")  # everything else in the folder works

    remember_trusted_code((f.path, f.sha256) for f in request.files)
    assert load_catalog_entry(manifest, "mine").runs_code == "model.py"
    assert folder["marker"].exists()

    folder["marker"].unlink()
    with (folder["ckpt"] / "model.py").open("a") as handle:
        handle.write("\n# edited after it was trusted\n")
    with pytest.raises(CodeConsentError, match="needs your consent to run model.py"):
        load_catalog_entry(manifest, "mine")
    assert not folder["marker"].exists()


def test_a_new_file_beside_the_code_asks_again(folder: dict[str, Path]) -> None:
    """model.py can import its neighbours: consent covers the .py files beside it."""
    manifest = load_manifest(folder["ckpt"])
    remember_trusted_code((f.path, f.sha256) for f in code_requests(manifest)[0].files)
    (folder["ckpt"] / "helpers.py").write_text("x = 1\n")
    with pytest.raises(CodeConsentError, match=r"helpers\.py"):
        load_catalog_entry(manifest, "mine")
    assert not folder["marker"].exists()


def test_the_consent_travels_with_the_manifest(folder: dict[str, Path]) -> None:
    manifest = with_code_consent(load_manifest(folder["ckpt"]), trust_code=True)
    assert with_code_consent(load_manifest(folder["ckpt"])) == load_manifest(folder["ckpt"])
    assert code_requests(manifest)[0].trusted
    assert load_catalog_entry(manifest, "mine").runs_code == "model.py"
    assert folder["marker"].exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"trusted": 3}', "\udcff"], ids=["syntax", "list",
                                                                                          "no-object", "bytes"])
def test_a_damaged_settings_file_trusts_nothing_and_never_crashes(folder: dict[str, Path], text: str) -> None:
    path = trusted_code_path()
    path.parent.mkdir(parents=True)
    if text == "\udcff":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(text)
    found = read_trusted_code()
    assert found.hashes == frozenset() and "cannot be read" in found.warning
    with pytest.raises(CodeConsentError, match="cannot be read"):
        load_catalog_entry(load_manifest(folder["ckpt"]), "mine")
    assert not folder["marker"].exists()
    request = code_requests(load_manifest(folder["ckpt"]))[0]
    remember_trusted_code((f.path, f.sha256) for f in request.files)  # rewrites the damaged file
    assert read_trusted_code().warning == "" and request.files[0].sha256 in read_trusted_code().hashes


# --- kwargs ---------------------------------------------------------------------------------------


def test_unknown_kwargs_name_the_accepted_ones(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, kwargs={"num_clases": 4})
    with pytest.raises(KwargsError, match=r"kwargs 'num_clases' is not accepted by model.py:Net "
                                          r"\(it accepts: num_classes, width\)"):
        load_catalog_entry(load_manifest(folder["ckpt"]), "mine", consent=CodeConsent(trust_code=True))


@pytest.mark.parametrize("kwargs", [{"checkpoint_path": "w.pt"}, {"pretrained_cfg_overlay": {"file": "w.pt"}},
                                    {"file": "x"}, {"width": "../../etc/passwd"}, {"width": "mine.pt"},
                                    {"width": ["https://example.com/w.pt"]}],
                         ids=["checkpoint_path", "pretrained_cfg_overlay", "file", "relative-path", "existing-file",
                              "url"])
def test_kwargs_may_not_name_files_and_nothing_runs(tmp_path: Path, kwargs: dict) -> None:
    folder = write_folder(tmp_path, kwargs=kwargs)
    with pytest.raises(KwargsError, match="kwargs may not name files"):
        load_catalog_entry(load_manifest(folder["ckpt"]), "mine", consent=CodeConsent(trust_code=True))
    assert not folder["marker"].exists()


def test_kwargs_of_an_architecture_entry_may_not_name_files_either(folder: dict[str, Path]) -> None:
    """timm's checkpoint_path in kwargs once loaded a zip bomb: refused before any builder sees it."""
    data = json.loads((folder["ckpt"] / "manifest.json").read_text())
    data["models"]["plain"]["kwargs"] = {"checkpoint_path": str(folder["ckpt"] / "plain.pt")}
    (folder["ckpt"] / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(KwargsError, match=r"models\.plain\.kwargs\.checkpoint_path: kwargs may not name files"):
        load_catalog_entry(load_manifest(folder["ckpt"]), "plain")


# --- the pages ------------------------------------------------------------------------------------


def test_home_asks_for_consent_then_trust_and_run_runs_it(folder: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(folder["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(folder["ckpt"] / "none.sqlite"))
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception
    assert not folder["marker"].exists()
    table = at.table[0].value.set_index("Name")
    assert table.loc["plain", "Status"] == "loaded"
    assert table.loc["mine", "Status"] == "needs consent"
    assert "needs your consent to run model.py" in table.loc["mine", "Note"]
    sha = code_requests(load_manifest(folder["ckpt"]))[0].files[0].sha256
    assert any("**My net** needs your consent to run `model.py`" in w.value for w in at.warning)
    assert any(sha in c.value and "model.py" in c.value for c in at.code)
    at.button(key="trust_code_mine").click().run()
    assert not at.exception
    assert folder["marker"].exists()
    assert at.table[0].value.set_index("Name").loc["mine", "Status"] == "loaded"
    assert sha in read_trusted_code().hashes

    # A changed file asks again, on a fresh session too.
    folder["marker"].unlink()
    with (folder["ckpt"] / "model.py").open("a") as handle:
        handle.write("\n# changed\n")
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception and not folder["marker"].exists()
    assert at.table[0].value.set_index("Name").loc["mine", "Status"] == "needs consent"


def test_home_with_a_damaged_settings_file_warns_and_works(folder: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    trusted_code_path().parent.mkdir(parents=True)
    trusted_code_path().write_text("{broken")
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(folder["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(folder["ckpt"] / "none.sqlite"))
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception
    assert any("cannot be read" in w.value for w in at.warning)
    assert not folder["marker"].exists()


@pytest.fixture
def evaluated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """The folder evaluated with --trust-code into a store, then model.py changed (so the
    consent given on that command line no longer covers it) and the marker removed."""
    found = write_folder(tmp_path)
    store = tmp_path / "results.sqlite"
    assert main(["evaluate", "--manifest", str(found["ckpt"]), "--data", str(found["data"]), "--out", str(store),
                 "--trust-code"]) == 0
    capsys.readouterr()
    found["marker"].unlink()
    with (found["ckpt"] / "model.py").open("a") as handle:
        handle.write("\n# changed after evaluation\n")
    return {**found, "store": store}


@pytest.mark.parametrize("page", [HOME, EXPLAIN, COMPARE, ERRORS, TRUST], ids=["home", "explain", "compare",
                                                                                 "errors", "trust"])
def test_no_page_runs_code_without_consent(evaluated: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                           page: str) -> None:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(evaluated["ckpt"]))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(evaluated["data"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(evaluated["store"]))
    monkeypatch.setenv("MUSHCAM_DATA", str(evaluated["data"]))
    at = AppTest.from_file(page, default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    if page == EXPLAIN:  # a photo from the sample folder: the model chooser appears
        at.radio(key="source").set_value("Sample folder").run()
        assert not at.exception
    if page == ERRORS:  # look at the code model's errors too
        runs, said = at.selectbox(key="err_run"), []
        for option in runs.options:
            runs.select(option).run()
            assert not at.exception
            said += [e.value for kind in ("error", "info", "warning", "caption", "markdown") for e in getattr(at, kind)]
        assert any("My net needs your consent to run model.py" in text for text in said)
    if page in (EXPLAIN, TRUST):  # the model cannot even be chosen until it is trusted
        chooser = at.selectbox(key="backbone" if page == EXPLAIN else "sanity_model")
        assert chooser.options == ["plain"]
    assert not evaluated["marker"].exists()


# --- import-checkpoint -----------------------------------------------------------------------------


def pickled_model(tmp_path: Path, main_module: bool) -> tuple[Path, Path, Path]:
    """A whole pickled Net (as ``netmod.Net`` or as a training script's ``__main__.Net``), its
    code folder holding netmod.py and an unrelated other.py that writes a marker if imported."""
    code, marker = tmp_path / "code", tmp_path / "other_ran.txt"
    code.mkdir()
    (code / "netmod.py").write_text(NET)
    (code / "other.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    target = tmp_path / "whole.pt"
    if main_module:
        script = NET + f"\ntorch.manual_seed(0)\ntorch.save(Net(), {str(target)!r})\n"
    else:
        script = (f"import sys, torch\nsys.path.insert(0, {str(code)!r})\nimport netmod\n"
                  f"torch.manual_seed(0)\ntorch.save(netmod.Net(), {str(target)!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    return target, code, marker


@pytest.mark.parametrize("main_module", [False, True], ids=["module", "__main__"])
def test_import_checkpoint_imports_only_the_module_the_pickle_needs(tmp_path: Path, main_module: bool,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    target, code, marker = pickled_model(tmp_path, main_module)
    try:
        status, err = cli(["import-checkpoint", str(target), "--trust", "--code", str(code), "--out",
                           str(tmp_path / "out")], capsys)
    finally:
        sys.modules.pop("netmod", None)
    assert status == 0, err
    assert not marker.exists()


def test_import_checkpoint_without_trust_names_the_code_a_pickle_would_run(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    evil, target = tmp_path / "evil.pt", tmp_path / "pwned.txt"
    script = (f"import os, torch\nclass E:\n    def __reduce__(self):\n"
              f"        return (os.system, ('touch {target}',))\n"
              f"torch.save({{'model': E()}}, {str(evil)!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    status, err = cli(["import-checkpoint", str(evil), "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert "this file would run code: os.system" in err and "whole pickled model" not in err
    assert not target.exists()
