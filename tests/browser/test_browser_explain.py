"""The home and Explain pages in a real browser: upload, slider, bad file, screenshots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_for_text, wait_idle
from factories import make_image, write_manifest

pytestmark = pytest.mark.browser

OVERLAY = '[data-testid="stTabPanel"]:not([hidden]) [data-testid="stImage"] img'


def image_digest(page) -> str:
    """Hash of the visible overlay image's bytes, fetched by the browser itself."""
    src = page.locator(OVERLAY).first.get_attribute("src")
    body = page.evaluate(
        "async (src) => { const r = await fetch(src); const b = new Uint8Array(await r.arrayBuffer());"
        " return Array.from(b); }",
        src,
    )
    return hashlib.sha256(bytes(body)).hexdigest()


def wait_for_new_overlay(page, old_src: str | None, timeout_ms: int = 120_000) -> None:
    """Wait until the visible overlay's picture is another file than ``old_src`` (a rerun drew a new one)."""
    page.wait_for_function(
        "([selector, old]) => { const img = document.querySelector(selector);"
        " return img !== null && img.getAttribute('src') !== old; }",
        arg=[OVERLAY, old_src], timeout=timeout_ms,
    )


def test_upload_move_alpha_and_recover_from_a_bad_file(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large", "efficientnet_b0"), size=128)
    photo = tmp_path / "boletus_photo.jpg"
    make_image(640, 480, seed=7).save(photo, quality=92)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": ""}

    with running_app(env) as url, browser_page(height=1100) as page:
        page.goto(url)
        wait_idle(page, ready='[data-testid="stTable"]')
        assert exception_texts(page) == []
        assert page.get_by_text("Research tool, not a field guide").count() == 1
        screenshot(page, "home")

        page.goto(f"{url}/Explain")
        wait_idle(page, ready='input[type="file"]')
        page.locator('input[type="file"]').set_input_files(str(photo))
        wait_idle(page, ready=OVERLAY)
        assert exception_texts(page) == []
        before = image_digest(page)
        screenshot(page, "explain-uploaded")

        shown_src = page.locator(OVERLAY).first.get_attribute("src")
        slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
        slider.focus()
        for _ in range(6):
            page.keyboard.press("ArrowRight")
        sync_api = pytest.importorskip("playwright.sync_api")
        sync_api.expect(page.locator('[data-testid="stSlider"]').first).to_contain_text("0.75", timeout=120_000)
        wait_for_new_overlay(page, shown_src)  # the slider moves at once; the rerun's picture comes later
        wait_idle(page, ready=OVERLAY)
        after = image_digest(page)
        assert after != before, "the overlay did not change when alpha moved"
        assert exception_texts(page) == []
        screenshot(page, "explain-alpha")

        page.locator('input[type="file"]').set_input_files(str(broken))
        wait_for_text(page, "cannot be used")
        assert page.get_by_text("broken.png").count() >= 1
        assert page.get_by_text("cannot be used").count() == 1
        assert exception_texts(page) == []
        screenshot(page, "explain-bad-file")

        page.locator('input[type="file"]').set_input_files(str(photo))
        wait_for_text(page, "cannot be used", count=0)
        wait_idle(page, ready=OVERLAY)
        assert exception_texts(page) == []
