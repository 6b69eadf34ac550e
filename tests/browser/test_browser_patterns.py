"""The Patterns page in Chromium: pick a model, see the strategy clusters and the scatter, open a photo on Explain."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_for_text, wait_idle
from factories import CLASSES, write_image_folder, write_manifest

pytestmark = pytest.mark.browser


def test_patterns_page_shows_clusters_and_opens_a_photo_on_explain(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), size=64)
    data = write_image_folder(tmp_path / "test", [n for n, _ in CLASSES], per_class=4, size=(72, 56))
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": str(data),
           "MUSHCAM_RESULTS": str(tmp_path / "results.sqlite")}
    with running_app(env) as url, browser_page(width=1440, height=2400) as page:
        page.goto(url)
        wait_idle(page, ready='[data-testid="stSidebar"] a')
        page.locator('[data-testid="stSidebar"] a').filter(has_text="Patterns").first.click()
        wait_for_text(page, "cluster(s)", timeout=300)
        assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1  # the 2-D embedding of the maps
        assert page.locator('[data-testid="stImage"]').count() >= 1  # mean maps and typical photos
        assert exception_texts(page) == []
        screenshot(page, "patterns")
        page.get_by_role("button", name="Open on Explain").first.click()  # the photo picked beside the scatter
        wait_for_text(page, "Explain a photo", timeout=300)
        wait_idle(page, ready='[data-testid="stTabPanel"]:not([hidden]) [data-testid="stImage"] img', timeout=300)
        assert exception_texts(page) == []
        screenshot(page, "patterns_opened_on_explain")
