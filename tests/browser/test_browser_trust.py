"""The Trust page in a real browser: a live `streamlit run app.py` and Debian's Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_idle
from trust_setup import write_trust_setup

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect


def test_trust_page_in_chromium(tmp_path: Path) -> None:
    setup = write_trust_setup(tmp_path, size=(160, 120))
    env = {"MUSHCAM_CHECKPOINTS": str(setup["ckpt"]), "MUSHCAM_RESULTS": str(setup["store"]),
           "MUSHCAM_DATA": str(setup["data"])}  # the image folder the page reads photos from
    with running_app(env=env) as url, browser_page(height=2200) as page:
        page.goto(f"{url}/Trust")
        wait_idle(page, ready='[data-testid="stImage"] img')
        assert exception_texts(page) == []
        expect(page.get_by_text("Faithfulness per model × method")).to_be_visible(timeout=60_000)
        # Three Plotly charts drawn by the browser: deletion, insertion, sanity.
        expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=60_000)
        assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 6
        # The least faithful photos are really decoded and shown.
        images = page.locator('[data-testid="stImage"] img')
        assert images.count() == 6
        assert page.evaluate("img => img.naturalWidth", images.first.element_handle()) > 0
        screenshot(page, "trust_top")

        first = page.locator('[data-testid="stMarkdownContainer"] code').filter(has_text=re.compile(r"\.png$")).first
        relpath = first.inner_text()
        page.get_by_role("button", name=re.compile("Open on Explain")).first.click()
        expect(page.get_by_text("Explain a photo")).to_be_visible(timeout=60_000)
        wait_idle(page, ready='[data-testid="stPlotlyChart"]')
        screenshot(page, "trust_opened_on_explain")
        assert exception_texts(page) == []
        assert "Explain" in page.url
        sample = page.locator('[data-testid="stSelectbox"]').filter(has_text="Sample photo").locator("input")
        assert sample.input_value() == relpath
        expect(page.get_by_text(f"True class: {relpath.split('/')[0]}")).to_be_visible(timeout=60_000)
