"""The Patterns page in Streamlit's AppTest: pick a model and a class, see clusters, open a photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import CLASSES, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

ROOT = PROJECT_ROOT
PAGE = "pages/5_Patterns.py"

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("patterns_page")
    ckpt = root / "ckpt"
    write_manifest(ckpt, backbones=("efficientnet_b0", "mobilenet_v3_large"))
    data = write_image_folder(root / "test", [n for n, _ in CLASSES], per_class=4, size=(72, 56))
    return {"ckpt": ckpt, "data": data, "store": root / "results.sqlite"}


def patterns_page(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(setup["data"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(setup["store"]))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()  # from home: pages can switch
    return at.switch_page(PAGE).run()


def test_pick_a_model_and_a_class_and_see_clusters(setup, monkeypatch):
    at = patterns_page(setup, monkeypatch)
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("Patterns")
    at.selectbox(key="patterns_model").select("mobilenet_v3_large").run()
    assert not at.exception
    classes = at.selectbox(key="patterns_class").options
    assert classes and set(classes) <= {n for n, _ in CLASSES}
    at.selectbox(key="patterns_class").select(classes[-1]).run()
    markdown = "\n".join(m.value for m in at.markdown)
    assert "cluster(s)" in markdown and "**Cluster 0**" in markdown
    scatter = json.loads(at.get("plotly_chart")[0].proto.spec)
    paths = [p for trace in scatter["data"] for p in trace["customdata"]]
    assert paths and all("/" in p for p in paths)  # each point carries its photo's path
    assert len(at.get("image")) >= 1  # mean maps and typical photos
    assert setup["store"].is_file()  # the clusters were saved in the results store


def test_a_point_of_the_scatter_opens_the_photo_on_explain(setup, monkeypatch):
    at = patterns_page(setup, monkeypatch)
    at.selectbox(key="patterns_model").select("mobilenet_v3_large").run()
    relpath = at.selectbox(key="patterns_pick").options[0]
    at.session_state["patterns_open"] = relpath  # what the scatter's click callback stores
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["sample"] == relpath
    assert at.session_state["backbone"] == "mobilenet_v3_large"
    assert at.session_state["explain_folder"] == str(setup["data"].resolve())
    assert at.title[0].value == "Explain a photo"


def test_proposed_boxes_give_focus_numbers_and_a_reviewer_accepts_one(setup, monkeypatch):
    from mushcam.patterns.store import load_regions

    at = patterns_page(setup, monkeypatch)
    at.selectbox(key="patterns_model").select("mobilenet_v3_large").run()
    at.toggle(key="patterns_propose").set_value(True).run()
    assert not at.exception, at.exception
    markdown = "\n".join(m.value for m in at.markdown)
    assert "energy inside the object" in markdown and "a uniform map would get" in markdown
    photo = at.selectbox(key="patterns_box_photo").value
    assert load_regions(setup["store"])  # the proposals were saved
    at.number_input(key=f"patterns_box_{photo}_x0").set_value(1.0)
    at.button[-1].click().run()  # the form's submit button
    assert not at.exception, at.exception
    accepted = [r for r in load_regions(setup["store"]).values() if r.path == photo]
    assert accepted and accepted[0].source == "accepted" and accepted[0].x0 == 1.0
