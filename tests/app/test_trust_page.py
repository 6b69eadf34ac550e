"""The Trust page in Streamlit's AppTest, on a store the test writes (random-weight models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest
from trust_setup import write_trust_setup

ROOT = PROJECT_ROOT
TRUST = str(ROOT / "pages" / "4_Trust.py")


# Streamlit caches persist across AppTest instances in one process: every test starts clean.
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_trust_setup(tmp_path_factory.mktemp("trust"))


def trust_page(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(setup["store"]))
    monkeypatch.setenv("MUSHCAM_DATA", str(setup["data"]))  # the image folder the user gives (sidebar)
    return AppTest.from_file(TRUST, default_timeout=180).run()


def figure(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_table_curves_and_sanity_chart(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = trust_page(setup, monkeypatch)
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["model"]) == ["EfficientNet-B0", "MobileNetV3-Large"]
    assert list(table["method"]) == ["gradcam", "gradcam"] and list(table["images"]) == [8, 8]
    assert all("[" in cell and "]" in cell for cell in table["deletion AUC ↓"])  # mean [low, high]
    deletion = figure(at, 0)
    names = [trace["name"] for trace in deletion["data"]]
    assert names == ["EfficientNet-B0 · gradcam", "EfficientNet-B0 · gradcam · random map",
                     "MobileNetV3-Large · gradcam", "MobileNetV3-Large · gradcam · random map"]
    assert deletion["data"][0]["x"] == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert "Deletion" in deletion["layout"]["title"]["text"] and "Insertion" in figure(at, 1)["layout"]["title"]["text"]
    sanity = figure(at, 2)
    assert [t["name"] for t in sanity["data"]] == ["MobileNetV3-Large · gradcam · Spearman",
                                                   "MobileNetV3-Large · gradcam · SSIM"]
    assert "passes" in "\n".join(m.value for m in at.markdown) or "flagged" in "\n".join(m.value for m in at.markdown)
    assert len(at.button) >= 6  # six least faithful photos, each with its button


def test_open_on_explain_hands_over_the_photo_and_model(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(setup["store"]))
    monkeypatch.setenv("MUSHCAM_DATA", str(setup["data"]))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()  # from home: pages can switch
    at.switch_page("pages/4_Trust.py").run()
    at.selectbox(key="trust_worst_run").select_index(1).run()  # MobileNet
    relpath = at.markdown[[i for i, m in enumerate(at.markdown) if "deletion AUC" in m.value][0]].value.split("`")[1]
    open_buttons = [b for b in at.button if b.key and b.key.startswith("open_")]
    open_buttons[0].click().run()
    assert not at.exception
    assert at.session_state["sample"] == relpath
    assert at.session_state["backbone"] == "mobilenet_v3_large"
    assert at.session_state["explain_folder"] == str(setup["data"].resolve())
    # Now on the Explain page, with that photo and model.
    assert at.title[0].value == "Explain a photo"
    assert at.selectbox(key="sample").value == relpath and at.selectbox(key="backbone").value == "mobilenet_v3_large"
    assert at.radio(key="source").value == "Sample folder"
    assert len(at.get("image")) >= 4


def test_sanity_check_of_one_photo(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = trust_page(setup, monkeypatch)
    at.selectbox(key="sanity_model").select("mobilenet_v3_large")
    assert "Before you start:" in "\n".join(c.value for c in at.caption)  # the cost, said before it starts
    at.button(key="sanity_run").click()
    at.run()
    assert not at.exception
    charts = at.get("plotly_chart")
    one = json.loads(charts[-1].proto.spec)
    assert one["data"][0]["x"][0] == 1 and len(one["data"][0]["x"]) > 5  # one point per randomised block
    assert at.success or at.error  # a verdict is shown


def test_without_a_store_the_page_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSHCAM_RESULTS", str(tmp_path / "none.sqlite"))
    at = AppTest.from_file(TRUST, default_timeout=60).run()
    assert not at.exception
    assert "python -m mushcam faithfulness" in at.info[0].value


def test_compare_page_gains_each_maps_deletion_and_insertion_auc(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(setup["data"]))
    at = AppTest.from_file(str(ROOT / "pages" / "2_Compare.py"), default_timeout=180)
    at.session_state["compare_n"] = 2
    at.session_state["compare_mix"] = False
    at.run()
    assert not at.exception
    at.toggle(key="compare_faithfulness").set_value(True).run()
    assert not at.exception
    table = at.dataframe[-1].value  # the last table: AppTest does not expose a dataframe's key
    assert list(table.columns) == ["image", "model", "explained", "deletion_auc", "insertion_auc"]
    assert len(table) == 2 * 2  # images x backbones
    assert set(table["model"]) == {"EfficientNet-B0", "MobileNetV3-Large"}
    for column in ("deletion_auc", "insertion_auc"):
        assert ((table[column] >= 0) & (table[column] <= 1)).all()


@pytest.mark.parametrize("content", [b"not a database at all" * 100, None])
def test_a_broken_store_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None) -> None:
    path = tmp_path / "results.sqlite"
    if content is None:
        path.mkdir()  # a folder where the file should be
    else:
        path.write_bytes(content)
    monkeypatch.setenv("MUSHCAM_RESULTS", str(path))
    at = AppTest.from_file(TRUST, default_timeout=60).run()
    assert not at.exception
    boxes = [b.value for b in (*at.info, *at.error)]  # a damaged store is an error box (a missing one: info)
    assert len(boxes) == 1 and ("not a readable SQLite" in boxes[0] or "no results store" in boxes[0])


def test_the_store_picked_on_trust_is_the_one_errors_reads(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One results-store field for both pages: the file picked on one is remembered on the other."""
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(tmp_path / "absent.sqlite"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()  # from home: pages can switch
    at.switch_page("pages/4_Trust.py").run()
    at.text_input(key="results_store_widget").input(str(setup["store"])).run()
    assert not at.exception and at.dataframe  # the picked store's faithfulness table
    at.switch_page("pages/3_Errors.py").run()
    assert not at.exception
    assert at.session_state["results_store"] == str(setup["store"])
    assert any(f"{setup['store']} holds no runs yet" in i.value for i in at.info)  # trust results only
