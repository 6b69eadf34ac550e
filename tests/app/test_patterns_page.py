"""The Patterns page in Streamlit's AppTest: pick a model and a class, see clusters, open a photo, box a photo,
watch the job's progress and stop it; and the drawn-box conversion as a unit."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
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


def settled(at: AppTest, timeout: float = 120.0) -> AppTest:
    """When the page shows the job's progress, wait for the job and rerun (its result is then drawn),
    like a user who waits; a page that drew its result is left as it is."""
    deadline = time.monotonic() + timeout
    while at.get("progress"):
        jobs = at.session_state["cam_jobs"] if "cam_jobs" in at.session_state else {}
        if not any(job.running for job in jobs.values()):
            at.run()
        elif time.monotonic() > deadline:
            raise AssertionError("the patterns job did not finish")
        else:
            time.sleep(0.05)
    return at


def patterns_page(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, settle: bool = True) -> AppTest:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(setup["data"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(setup["store"]))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()  # from home: pages can switch
    at = at.switch_page(PAGE).run()
    return settled(at) if settle else at


def select(at: AppTest, key: str, value: object) -> AppTest:
    at.selectbox(key=key).select(value).run()
    return settled(at)


def test_pick_a_model_and_a_class_and_see_clusters(setup, monkeypatch):
    at = patterns_page(setup, monkeypatch)
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("Patterns")
    select(at, "patterns_model", "mobilenet_v3_large")
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
    caption = next(c.value for c in at.caption if "colour bar gives the raw values" in c.value)
    assert caption.startswith("Dark red: regions that raised the score")  # jet's ends named, as on Explain


def test_a_point_of_the_scatter_opens_the_photo_on_explain(setup, monkeypatch):
    at = patterns_page(setup, monkeypatch)
    select(at, "patterns_model", "mobilenet_v3_large")
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
    select(at, "patterns_model", "mobilenet_v3_large")
    at.toggle(key="patterns_propose").set_value(True).run()
    settled(at)
    assert not at.exception, at.exception
    markdown = "\n".join(m.value for m in at.markdown)
    assert "energy inside the object" in markdown and "a uniform map would get" in markdown
    photo = at.selectbox(key="patterns_box_photo").value
    assert load_regions(setup["store"])  # the proposals were saved
    at.number_input(key=f"patterns_box_{photo}_x0").set_value(1.0)
    at.button(key="patterns_box_accept").click().run()  # the form's submit button
    settled(at)
    assert not at.exception, at.exception
    assert any(f"Saved the box of {photo} as accepted" in s.value for s in at.success)
    accepted = [r for r in load_regions(setup["store"]).values() if r.path == photo]
    assert accepted and accepted[0].source == "accepted" and accepted[0].x0 == 1.0


def test_concepts_are_shown_as_their_regions_in_the_photos_with_their_logit_contribution(setup, monkeypatch):
    at = patterns_page(setup, monkeypatch)
    select(at, "patterns_model", "mobilenet_v3_large")
    images_before = len(at.get("image"))
    at.number_input(key="patterns_concepts").set_value(2).run()
    at = settled(at)
    assert not at.exception, at.exception
    concepts = [m.value for m in at.markdown if m.value.startswith("**Concept ")]
    assert len(concepts) == 2 and all("% of the activation, contributes **" in c for c in concepts)
    contributions = [float(c.split("contributes **")[1].split("**")[0]) for c in concepts]
    assert all(np.isfinite(contributions))
    assert len(at.get("image")) == images_before + 2  # one row per concept: its strongest photos, the concept over them


def test_a_drawn_box_is_saved_as_drawn_with_its_pixels_and_counts_in_the_focus(setup, monkeypatch, tmp_path):
    """AppTest cannot drag: the chart's selection is what box_from_selection reads, so it is given here
    (the conversion itself is tested below, the drag in tests/browser/test_browser_patterns.py)."""
    from mushcam.patterns.store import load_regions
    from ui import patterns_support

    store = tmp_path / "drawn.sqlite"
    monkeypatch.setitem(setup, "store", store)
    at = patterns_page(setup, monkeypatch)
    select(at, "patterns_model", "mobilenet_v3_large")
    photo = at.selectbox(key="patterns_box_photo").value
    assert at.selectbox(key="patterns_box_photo").format_func(photo) == f"{photo} · no box"
    assert not any("Drawn box" in m.value for m in at.markdown)
    no_drag = patterns_support.box_from_selection
    monkeypatch.setattr(patterns_support, "box_from_selection", lambda _event, _size: (10.0, 8.0, 50.0, 40.0))
    at.run()
    assert any("**Drawn box: x0 = 10, y0 = 8, x1 = 50, y1 = 40** (pixels of the 72 x 56 photo)" in m.value
               for m in at.markdown)
    at.button(key="patterns_draw_save").click().run()
    monkeypatch.setattr(patterns_support, "box_from_selection", no_drag)  # a new, empty chart after a save
    at = settled(at)
    assert not at.exception, at.exception
    [(sha, region)] = load_regions(store).items()
    assert (region.path, region.box, region.source) == (photo, (10.0, 8.0, 50.0, 40.0), "drawn")
    assert any("Saved the drawn box" in s.value and "(10, 8, 50, 40)" in s.value for s in at.success)
    markdown = "\n".join(m.value for m in at.markdown)
    assert "On 1 photos with a region" in markdown  # the focus numbers were recomputed with it
    uniform = 40 * 32 / (72 * 56)  # the box's share of the frame (the network sees the whole photo: squash)
    assert f"a uniform map would get {uniform:.0%}" in markdown


def test_the_job_shows_its_stage_and_progress_and_stop_ends_it(setup, monkeypatch):
    from ui import patterns_support

    seen = threading.Event()

    def slow(*_args, progress, **_kwargs):
        for done in range(1, 2001):
            progress("mobilenet_v3_large · maps", done, 2000)  # raises once Stop was pressed
            seen.set()
            time.sleep(0.01)
        raise AssertionError("never stopped")

    monkeypatch.setattr(patterns_support, "run_patterns", slow)
    at = patterns_page(setup, monkeypatch, settle=False)
    assert seen.wait(30)
    assert not at.exception, at.exception
    [bar] = at.get("progress")
    assert "Finding the patterns: mobilenet_v3_large · maps ·" in bar.proto.text
    assert at.button(key="patterns_stop")
    at.button(key="patterns_stop").click().run()
    at = settled(at, timeout=10)
    assert not at.exception, at.exception
    assert any(i.value.startswith("Stopped: nothing of this run was kept") for i in at.info)
    [job] = at.session_state["cam_jobs"].values()
    deadline = time.monotonic() + 10
    while job.running and time.monotonic() < deadline:  # the worker unwinds at its next report
        time.sleep(0.01)
    assert job.stopped and not job.running and job.done < 2000
    assert at.button(key="patterns_restart")  # started again only on a click


@pytest.mark.parametrize(("boxes", "expected"), [
    ([{"x": [10.4, 50.6], "y": [8.2, 40.0]}], (10.0, 8.0, 51.0, 40.0)),  # rounded to whole pixels
    ([{"x": [50, 10], "y": [40, 8]}], (10.0, 8.0, 50.0, 40.0)),  # dragged up and left
    ([{"x": [-30, 500], "y": [-2, 20]}], (0.0, 0.0, 72.0, 20.0)),  # clamped to the 72 x 56 photo
    ([{"x": [1, 2], "y": [3, 4]}, {"x": [5, 60], "y": [6, 50]}], (5.0, 6.0, 60.0, 50.0)),  # the last box
    ([{"x": [10, 11], "y": [10, 40]}], None),  # a click, not a box
    ([], None),
    ([{"x": [], "y": []}], None),
])
def test_a_dragged_selection_becomes_a_box_in_the_photos_pixels(boxes, expected):
    from ui.patterns_support import box_from_selection

    event = {"selection": {"points": [], "point_indices": [], "box": boxes, "lasso": []}}
    assert box_from_selection(event, (72, 56)) == expected
    assert box_from_selection(None, (72, 56)) is None


def test_the_drawing_figure_has_the_photos_pixels_on_its_axes(setup):
    from mushcam.patterns.regions import Region
    from ui.patterns_support import draw_figure

    photo = f"{CLASSES[0][0]}/img_0.png"
    figure, size = draw_figure(str(setup["data"]), photo, Region(photo, 4, 5, 30, 20, "proposed"))
    spec = figure.to_plotly_json()
    image = spec["data"][0]
    assert size == (72, 56) and image["type"] == "image" and image["dx"] == 1.0 and image["x0"] == 0.5
    assert spec["layout"]["dragmode"] == "select"
    assert list(spec["layout"]["xaxis"]["range"]) == [0, 72] and list(spec["layout"]["yaxis"]["range"]) == [56, 0]
    [shape] = spec["layout"]["shapes"]
    assert (shape["x0"], shape["y0"], shape["x1"], shape["y1"]) == (4, 5, 30, 20)
