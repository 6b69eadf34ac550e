"""Models named by the user, two of them of one architecture, through the whole app.

Five models (tests/helpers/factories.py FIVE_MODELS): the three presets, a second ResNet-50 under its
own name and label, and a MobileNetV3 saved through a wrapper. Home lists them with their
architecture and layer; Explain, Compare and Errors work with every one; ``evaluate``,
``gradcam``, ``explain`` and the results store key everything by the name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from factories import CLASSES, write_five_models, write_image_folder
from named_models import LABELS, NAMES
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from mushcam import store
from mushcam.cli import main
from mushcam.evaluate import evaluate_models, format_report
from mushcam.manifest import load_manifest

ROOT = PROJECT_ROOT
HOME, EXPLAIN, COMPARE, ERRORS = (str(ROOT / p) for p in ("app.py", "pages/1_Explain.py", "pages/2_Compare.py",
                                                          "pages/3_Errors.py"))
ARCHS = ["resnet50", "resnet50", "efficientnet_b0", "mobilenet_v3_large", "mobilenet_v3_large"]


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The five-model checkpoint folder, a 4-image test folder and a store evaluated by the library."""
    base = tmp_path_factory.mktemp("five")
    write_five_models(base / "ckpt")
    data = write_image_folder(base / "data", [n for n, _ in CLASSES], per_class=1, size=(72, 56))
    out = base / "results.sqlite"
    evaluate_models(data, load_manifest(base / "ckpt"), out, log=lambda line: None)
    return {"ckpt": base / "ckpt", "data": data, "out": out}


# Streamlit caches persist across AppTest instances in one process: every test starts clean.
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def app_env(five: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(five["ckpt"]))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(five["data"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(five["out"]))
    monkeypatch.setenv("MUSHCAM_DATA", str(five["data"]))  # the image folder the Errors page reads under
    return five


# --- the library: evaluate and the store ------------------------------------------------------


def test_evaluate_stores_one_run_per_name_with_its_architecture(five: dict[str, Path]) -> None:
    contents = store.load_store(five["out"])
    runs = {r.name: r for r in contents.runs}
    assert sorted(runs) == sorted(NAMES)
    assert [runs[n].arch for n in NAMES] == ARCHS
    assert [runs[n].label for n in NAMES] == LABELS
    assert runs["resnet50-x4"].layer == runs["resnet50"].layer == "layer4"
    # two checkpoints of one architecture are two models: their predictions differ
    a, b = (contents.predictions[runs[n].run_id].probabilities for n in ("resnet50", "resnet50-x4"))
    assert a.shape == b.shape == (4, 4) and not np.allclose(a, b)
    report = format_report(contents, summary_only=True)
    for label in LABELS:
        assert label in report


def test_evaluate_names_one_model_and_refuses_unknown_names(five: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.sqlite"
    assert main(["evaluate", "--manifest", str(five["ckpt"]), "--data", str(five["data"]), "--model",
                 "resnet50-x4", "--out", str(out)]) == 0
    assert [(r.name, r.arch) for r in store.load_runs(out)] == [("resnet50-x4", "resnet50")]
    capsys.readouterr()
    assert main(["evaluate", "--manifest", str(five["ckpt"]), "--data", str(five["data"]), "--backbones",
                 "resnet51", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lists no checkpoint for resnet51" in err and "resnet50-x4" in err and "Traceback" not in err


def test_cli_explain_and_gradcam_take_the_name(five: dict[str, Path], tmp_path: Path) -> None:
    image = five["data"] / "Amanita" / "img_0.png"
    assert main(["explain", str(image), "--model", "resnet50-x4", "--manifest", str(five["ckpt"]),
                 "--out", str(tmp_path / "e")]) == 0
    prediction = json.loads((tmp_path / "e" / "prediction.json").read_text())
    assert (prediction["model"], prediction["arch"], prediction["layer"]) == ("resnet50-x4", "resnet50", "layer4")
    assert main(["gradcam", "--data", str(five["data"]), "--model", "resnet50-x4,thesis-mobilenet",
                 "--manifest", str(five["ckpt"]), "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "g")]) == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["resnet50-x4", "thesis-mobilenet"]
    settings = json.loads((tmp_path / "g" / "resnet50-x4" / "run.json").read_text())
    assert (settings["backbone"], settings["arch"]) == ("resnet50-x4", "resnet50")
    # the same map through the app's shared cache key: the explain command's map is the gradcam one
    np.testing.assert_allclose(np.load(tmp_path / "g" / "resnet50-x4" / "Amanita" / "img_0.png.cam.npy"),
                               np.load(tmp_path / "e" / "cam.npy"), rtol=1e-2, atol=1e-6)


def test_unsafe_names_get_their_own_safe_folders(tmp_path: Path) -> None:
    from mushcam.manifest import file_safe_name

    assert file_safe_name("resnet50-x4") == "resnet50-x4" and file_safe_name("v1.2") == "v1.2"
    unsafe = ["../escape", "a/b", "a b", ".hidden", "", "ä"]
    safe = [file_safe_name(n) for n in unsafe]
    assert len(set(safe)) == len(unsafe)
    for name in safe:
        assert "/" not in name and not name.startswith(".") and name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


# --- the pages ------------------------------------------------------------------------------


def test_home_lists_the_five_models_with_architecture_and_layer(app_env: dict[str, Path]) -> None:
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception
    table = at.table[0].value
    assert list(table["Model"]) == LABELS
    assert list(table["Name"]) == NAMES
    assert list(table["Architecture"]) == ARCHS
    assert list(table["Status"]) == ["loaded"] * 5
    assert list(table["Grad-CAM layer"].str.split(" ").str[0]) == [
        "layer4", "layer4", "features.7", "features.16", "features.16"]
    assert all("(" in layer for layer in table["Grad-CAM layer"])  # with where the layer came from
    wrapper = table.set_index("Name").loc["thesis-mobilenet"]
    assert wrapper["Head"] == "Dropout → Linear(960→512) → ReLU → Dropout → Linear(512→4)"  # the head as rebuilt
    assert "under 'backbone.'" in wrapper["Recognised as"] and "classifier" in wrapper["Recognised as"]
    assert wrapper["Grad-CAM layer"] == "features.16 (from the manifest (backbone.features.16 = features.16))"
    assert "5 of 5 models ready" in at.success[0].value
    metrics = at.dataframe[0].value  # the results store's runs, by label
    assert sorted(metrics["Model"]) == sorted(LABELS)


def test_home_shows_a_load_failure_in_one_line_with_details_on_demand(five: dict[str, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "ckpt"
    write_five_models(ckpt)
    (ckpt / "resnet50_poison_x4.pt").write_bytes(b"not a checkpoint at all")
    (ckpt / "efficientnet_b0.pt").unlink()
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(tmp_path / "none.sqlite"))
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception
    table = at.table[0].value
    assert list(table["Status"]) == ["loaded", "failed to load", "missing", "loaded", "loaded"]
    assert "cannot read checkpoint resnet50_poison_x4.pt" in table["Note"][1]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("**ResNet-50 (poisonous ×4)** failed to load: cannot read")
    assert "\n" not in errors[0]
    assert [x.label for x in at.expander] == ["Details: why ResNet-50 (poisonous ×4) failed to load"]
    assert "cannot read checkpoint resnet50_poison_x4.pt" in at.expander[0].code[0].value
    assert "3 of 5 models ready" in at.success[0].value


def test_explain_works_with_each_of_the_five(app_env: dict[str, Path]) -> None:
    at = AppTest.from_file(EXPLAIN, default_timeout=180).run()
    at.radio(key="source").set_value("Sample folder").run()
    selector = at.selectbox(key="backbone")
    assert selector.options == LABELS  # the selector shows display names
    confidences = {}
    for name, label in zip(NAMES, LABELS, strict=True):
        at.selectbox(key="backbone").set_value(name).run()
        assert not at.exception, name
        assert len(at.get("image")) == 4
        line = next(m.value for m in at.markdown if "confidence ·" in m.value)
        assert f"· {label} · layer `" in line
        confidences[name] = line.split("**")[1]
        about = [c.value for c in at.caption if "layer `" in c.value and "from the manifest" in c.value]
        assert about and about[0].startswith(f"`{ARCHS[NAMES.index(name)]}`"), about
    assert confidences["resnet50"] != confidences["resnet50-x4"]  # one architecture, two models


def test_compare_grid_takes_all_five_or_any_subset(app_env: dict[str, Path]) -> None:
    at = AppTest.from_file(COMPARE, default_timeout=300).run()
    at.number_input(key="compare_n").set_value(2).run()
    assert not at.exception
    assert at.multiselect(key="compare_backbones").value == NAMES  # all five by default
    headers = [m.value for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]
    assert [h.strip("*") for h in headers[1:6]] == LABELS
    images = at.get("image")
    assert len(images) == 2 * (1 + 5 + 1) + 1  # per photo: the original, 5 maps, its matrix; the grid's matrix
    assert [i.proto.imgs[0].caption for i in images].count("IoU of the top regions of every two maps") == 2
    by_model = at.dataframe[0].value
    assert list(by_model["model"]) == LABELS
    assert len(at.dataframe[1].value) == 10  # 5 choose 2
    at.multiselect(key="compare_backbones").set_value(["resnet50-x4", "resnet50"]).run()
    assert not at.exception
    assert list(at.dataframe[1].value["pair"]) == ["ResNet-50 (poisonous ×4) vs ResNet-50"]
    assert len(at.get("image")) == 2 * (1 + 2)


def test_errors_page_works_with_each_of_the_five(app_env: dict[str, Path]) -> None:
    at = AppTest.from_file(ERRORS, default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    assert sorted(at.selectbox(key="err_run").options) == sorted(LABELS)
    at.selectbox(key="err_kind").set_value("all").run()  # every row, wrong or right
    assert sorted(at.radio(key="err_view").options) == sorted(LABELS)  # the image as each model saw it
    for run in store.load_runs(app_env["out"]):
        at.radio(key="err_view").set_value(run.run_id).run()
        assert not at.exception, run.name
        assert at.radio(key="err_view").value == run.run_id
        assert not at.error, [e.value for e in at.error]
        assert len([i for e in at.get("image") for i in e.proto.imgs]) >= 3  # original + two maps


def test_home_shows_how_each_model_was_understood_and_marks_user_code(
        five: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the loader reports (head, recognition, layer note, user code) reaches the page as
    it is; an exception raised in the user's code is one line, its traceback in the expander."""
    import mushcam.catalog as catalog
    from mushcam.exceptions import MushcamError

    real = catalog.load_catalog_entry

    def user_code_fails() -> None:
        raise ZeroDivisionError("division by zero in MushroomClassifier.__init__")

    def reported(manifest, name, demo=False):  # noqa: ANN001, ANN202
        if name == "resnet50-x4":
            try:
                user_code_fails()
            except ZeroDivisionError as exc:
                raise MushcamError("thesis_models.py:MushroomClassifier raised ZeroDivisionError: division by "
                                   "zero\nsecond line of detail") from exc
        loaded = real(manifest, name, demo)
        if name == "thesis-mobilenet":
            from dataclasses import replace

            return replace(loaded, head="Dropout → Linear(960→512) → ReLU → Dropout → Linear(512→4)",
                           recognised="thesis wrapper: trunk under 'backbone.', head 'classifier'",
                           layer_note="chosen automatically: last 4-D feature map", runs_code="thesis_models.py")
        return loaded

    monkeypatch.setattr(catalog, "load_catalog_entry", reported)
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(five["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(five["out"]))
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception
    table = at.table[0].value.set_index("Name")
    wrapped = table.loc["thesis-mobilenet"]
    assert wrapped["Head"] == "Dropout → Linear(960→512) → ReLU → Dropout → Linear(512→4)"
    assert wrapped["Recognised as"].startswith("thesis wrapper")
    assert wrapped["Grad-CAM layer"] == "features.16 (chosen automatically: last 4-D feature map)"
    assert "runs code from thesis_models.py" in wrapped["Note"]
    assert any("**Thesis MobileNetV3** runs code from `thesis_models.py`" in c.value for c in at.caption)
    failed = table.loc["resnet50-x4"]
    assert failed["Status"] == "failed to load"
    assert failed["Note"] == "thesis_models.py:MushroomClassifier raised ZeroDivisionError: division by zero"
    assert [e.value for e in at.error] == [
        "**ResNet-50 (poisonous ×4)** failed to load: thesis_models.py:MushroomClassifier raised "
        "ZeroDivisionError: division by zero"]
    detail = at.expander[0].code[0].value
    assert "second line of detail" in detail and "Traceback" in detail and "in user_code_fails" in detail
    assert "4 of 5 models ready" in at.success[0].value


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"classes": ["A"], "input": {"std": [NaN, 0.2, 0.2]}}', "NaN is not allowed"),
     ("[" * 100_000 + "]" * 100_000, "more than 32 levels deep"),
     ('{"classes": ["A"], "input": {"size": ' + "7" * 5000 + "}}", "Exceeds the limit (4300 digits)")],
    ids=["nan-std", "nested-100000", "5000-digits"],
)
@pytest.mark.parametrize("page", [HOME, EXPLAIN, COMPARE], ids=["home", "explain", "compare"])
def test_hostile_manifests_are_one_message_on_every_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         page: str, text: str, message: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(page, default_timeout=60).run()
    assert not at.exception
    if page == EXPLAIN:  # the Explain page sends the user to Home, which names the problem
        assert [w.value for w in at.warning] == ["No model is available: the [home page](/) says what to put where."]
    else:
        assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]


def test_the_map_cache_is_keyed_by_what_the_model_computes(tmp_path: Path) -> None:
    """Three names on one weights file: the same entry fields share maps (the same function);
    another head activation never does."""
    from dataclasses import replace

    from factories import write_checkpoint

    from mushcam.cache import CamCache
    from mushcam.manifest import manifest_from_dict
    from mushcam.pipeline import PipelineConfig, collect_images, run_pipeline

    write_checkpoint(tmp_path / "m.pt", "mobilenet_v3_large", len(CLASSES))
    data = write_image_folder(tmp_path / "data", [n for n, _ in CLASSES], per_class=1)
    manifest = manifest_from_dict({
        "classes": [n for n, _ in CLASSES], "input": {"size": 64},
        "models": {
            "a": {"arch": "mobilenet_v3_large", "checkpoint": "m.pt"},
            "b": {"arch": "mobilenet_v3_large", "checkpoint": "m.pt", "head_activation": "gelu"},
            "c": {"arch": "mobilenet_v3_large", "checkpoint": "m.pt", "label": "same as a"},
        },
    }, root=tmp_path)
    config = PipelineConfig(manifest=manifest, out=tmp_path / "out", cache=CamCache(tmp_path / "cams"),
                            backbones=("a", "b", "c"), views=("overlay",))
    reports = run_pipeline(config, collect_images([str(data)]))
    assert [(r.backbone, r.computed, r.cached) for r in reports] == [("a", 4, 0), ("b", 4, 0), ("c", 0, 4)]
    settings = {n: json.loads((tmp_path / "out" / n / "run.json").read_text()) for n in "abc"}
    assert "entry" in settings["b"] and "entry" not in settings["a"] and "entry" not in settings["c"]
    again = run_pipeline(replace(config, out=tmp_path / "again"), collect_images([str(data)]))
    assert [r.cached for r in again] == [4, 4, 4]


def test_compare_command_exports_a_grid_of_all_five(five: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    assert main(["compare", str(five["data"]), "--manifest", str(five["ckpt"]), "--n", "2", "--no-outcome-mix",
                 "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "Per model, over 2 images" in out and "ResNet-50 vs ResNet-50 (poisonous ×4): top-20% IoU" in out
    header = next((tmp_path / "c").glob("*[0-9].csv")).read_text().splitlines()[0]
    for name in NAMES:
        assert f"{name}_predicted" in header
    grid = Image.open(next((tmp_path / "c").glob("*.png")))
    # ten pairs of two lines of 20 px per image row: the rows grow to hold them, nothing overlaps
    assert grid.height >= 2 * (4 + 10 * (2 * 20 + 4))
    assert grid.width >= 6 * 224
