"""The sidebar's checkpoint folder shows the folder in use on every page, visit after visit (Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_idle
from factories import write_manifest

pytestmark = pytest.mark.browser

FIELD = '[data-testid="stSidebar"] [data-testid="stTextInput"] input'


def test_the_checkpoint_folder_field_shows_the_folder_after_visiting_every_page(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), size=64)
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": ""}
    sync_api = pytest.importorskip("playwright.sync_api")
    with running_app(env) as url, browser_page(width=1440, height=1000) as page:
        page.goto(url)
        wait_idle(page, ready=FIELD)
        seen = []
        for name in ("Explain", "Compare", "Errors", "Trust", "Home", "Explain", "Errors", "Home"):
            page.locator('[data-testid="stSidebar"] a').filter(has_text=name).first.click()
            wait_idle(page, ready=FIELD)
            sync_api.expect(page.locator(FIELD).first).to_have_value(str(ckpt), timeout=60_000)
            seen.append((name, page.locator(FIELD).first.input_value()))
            assert exception_texts(page) == []
        assert all(value == str(ckpt) for _, value in seen), seen
        screenshot(page, "sidebar_after_every_page")
