"""The Patterns page in Chromium: pick a model, see the strategy clusters, the scatter and the concepts, drag a box
on a photo and save it, open a photo on Explain."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_for_text, wait_idle
from factories import CLASSES, write_image_folder, write_manifest

pytestmark = pytest.mark.browser

DRAGGED = (10.0, 8.0, 50.0, 40.0)  # in the 72 x 56 photo's pixels


def drag_box(page: object, chart: object, size: tuple[int, int], box: tuple[float, float, float, float]) -> None:
    """Drag with the mouse from (x0, y0) to (x1, y1) of the photo on the plotly figure's plot area."""
    chart.scroll_into_view_if_needed()
    area = chart.locator(".nsewdrag").first.bounding_box()  # the plot area: the axes' ranges are the photo's pixels
    to_screen = lambda x, y: (area["x"] + x / size[0] * area["width"],  # noqa: E731
                              area["y"] + y / size[1] * area["height"])
    page.mouse.move(*to_screen(box[0], box[1]))
    page.mouse.down()
    page.mouse.move(*to_screen((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), steps=5)
    page.mouse.move(*to_screen(box[2], box[3]), steps=5)
    page.mouse.up()


def test_patterns_page_shows_clusters_concepts_a_drawn_box_and_opens_a_photo_on_explain(tmp_path: Path):
    from mushcam.patterns.store import load_regions

    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), size=64)
    data = write_image_folder(tmp_path / "test", [n for n, _ in CLASSES], per_class=4, size=(72, 56))
    store = tmp_path / "results.sqlite"
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": str(data), "MUSHCAM_RESULTS": str(store)}
    with running_app(env) as url, browser_page(width=1440, height=2400) as page:
        page.goto(url)
        wait_idle(page, ready='[data-testid="stSidebar"] a')
        page.locator('[data-testid="stSidebar"] a').filter(has_text="Patterns").first.click()
        wait_for_text(page, "cluster(s)", timeout=300)
        concepts = page.get_by_label("Concepts per class (0: none)")
        concepts.fill("2")
        concepts.press("Enter")
        wait_for_text(page, "Concept 0", timeout=300)
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 2  # the embedding and the photo to box
        assert page.locator('[data-testid="stImage"]').count() >= 3  # mean maps, typical photos, concepts
        assert exception_texts(page) == []
        screenshot(page, "patterns")
        page.get_by_text("Concept 0").first.scroll_into_view_if_needed()
        screenshot(page, "patterns_concepts")

        chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Drag a box")
        drag_box(page, chart, (72, 56), DRAGGED)
        wait_for_text(page, "Drawn box:", timeout=120)
        text = page.get_by_text("Drawn box:").first.inner_text()
        shown = [float(v) for v in re.findall(r"[xy][01] = (\d+)", text)]
        assert len(shown) == 4 and all(abs(a - b) <= 2 for a, b in zip(shown, DRAGGED, strict=True)), text
        page.get_by_text("Drawn box:").first.scroll_into_view_if_needed()
        screenshot(page, "patterns_box")
        page.get_by_role("button", name="Save this box").click()
        wait_for_text(page, "Saved the drawn box", timeout=300)
        [region] = load_regions(store).values()  # a new store: the one box is the one drawn
        assert (data / region.path).is_file() and region.source == "drawn"
        assert region.box == tuple(shown)  # what was confirmed is what is stored
        assert all(abs(a - b) <= 2 for a, b in zip(region.box, DRAGGED, strict=True)), region
        wait_for_text(page, "On 1 photos with a region", timeout=120)  # the focus numbers now use it
        page.get_by_text("On 1 photos with a region").first.scroll_into_view_if_needed()
        screenshot(page, "patterns_box_saved")  # the stored box drawn in green on the photo
        assert exception_texts(page) == []

        page.get_by_role("button", name="Open on Explain").first.click()  # the photo picked beside the scatter
        wait_for_text(page, "Explain a photo", timeout=300)
        wait_idle(page, ready='[data-testid="stTabPanel"]:not([hidden]) [data-testid="stImage"] img', timeout=300)
        assert exception_texts(page) == []
        screenshot(page, "patterns_opened_on_explain")
