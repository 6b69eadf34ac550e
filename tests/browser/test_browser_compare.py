"""The Compare page in a real browser: a live `streamlit run app.py`, Debian's Chromium.

Checks what AppTest cannot: the page renders without an exception box, the grid and its
marks are on screen, several photos can be uploaded, and the PNG download arrives with the
issue's file name and decodes. Screenshots land in artifacts/screenshots/compare_*.png.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_idle
from compare_setup import NAMES, TWO, write_biased_checkpoint
from factories import make_image, write_image_folder, write_manifest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

READY = '[data-testid="stImage"]'


def wait_grid(page: object, timeout_ms: float = 60_000) -> None:
    """Wait for the end of a run that drew a grid: the last element the page writes is the
    summary download button (the status widget alone proved an unreliable signal here)."""
    page.get_by_role("button", name="Download summary (CSV)").wait_for(state="visible", timeout=timeout_ms)
    wait_idle(page, ready=READY)


def wait_images_loaded(page: object) -> None:
    """Streamlit adds <img> elements before their bytes arrive: wait for every picture to decode."""
    page.wait_for_function(
        """() => { const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
                   return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=TWO)
    for backbone in TWO:
        write_biased_checkpoint(ckpt / f"{backbone}.pt", backbone)
    samples = write_image_folder(tmp_path / "samples", NAMES, per_class=2, size=(160, 120))
    # One intra-op thread: on the shared 2-core host two spinning threads were far slower.
    return {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": str(samples), "OMP_NUM_THREADS": "1",
            "MUSHCAM_CACHE": str(tmp_path / "cams")}


def test_compare_page_in_chromium(env: dict[str, str], tmp_path: Path) -> None:
    with running_app(env=env) as url, browser_page(width=1400, height=2400) as page:
        page.goto(f"{url}/Compare")
        wait_grid(page)
        assert exception_texts(page) == []
        assert page.get_by_role("heading", name="Compare models").is_visible()
        assert page.locator(READY).count() == 8 * 3  # 8 sampled images: original + 2 backbones each
        assert page.get_by_text("Poisonous called edible").count() == 4  # MobileNet's Boletus on 4 poisonous
        assert page.get_by_text("Agreement: EfficientNet-B0 vs MobileNetV3-Large").count() == 8
        wait_images_loaded(page)
        shot = screenshot(page, "compare_grid")
        assert Image.open(shot).size == (1400, 2400)

        # The export: the PNG arrives with the name and holds the whole grid.
        button = page.get_by_role("button", name="Download grid (PNG, with numbers)")
        button.scroll_into_view_if_needed()
        screenshot(page, "compare_numbers")
        with page.expect_download() as download_info:
            button.click()
        download = download_info.value
        assert re.fullmatch(r"gradcam_detailed_comparison_\d{8}_\d{6}\.png", download.suggested_filename)
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        grid = Image.open(saved)
        assert grid.width >= 3 * 224 and grid.height >= 8 * 224

        # Several uploads instead of the sample.
        page.get_by_text("Upload images").click()
        page.get_by_text("Upload one or more photos, or sample them from a test folder.").wait_for(state="visible")
        wait_idle(page, ready='[data-testid="stFileUploader"]')
        assert page.locator(READY).count() == 0
        files = []
        for seed in (7, 8):
            buffer = io.BytesIO()
            make_image(120, 90, seed=seed).save(buffer, format="PNG")
            files.append({"name": f"upload_{seed}.png", "mimeType": "image/png", "buffer": buffer.getvalue()})
        files.append({"name": "notes.png", "mimeType": "image/png", "buffer": b"not a picture"})
        page.locator('input[type="file"]').set_input_files(files)
        page.wait_for_selector("text=upload_8.png")
        wait_grid(page)
        assert exception_texts(page) == []
        assert page.locator(READY).count() == 2 * 3
        assert page.get_by_text("notes.png: this is not an image file").count() == 1
        assert page.get_by_text("true class unknown").count() == 2 + 2 * 2  # under each original and cell
        wait_images_loaded(page)
        screenshot(page, "compare_uploads")


LONG_TEXT = 300  # characters: no markdown or caption on the page says more at once
SLOW_GRID_MS = 300_000  # 9 columns incl. ResNet-50 on a shared 2-core host: a run took over 60 s


def choose_methods(page: object, labels: list[str]) -> None:
    """Add CAM methods to the 'CAM methods' multiselect (type the label, Enter), waiting for each run."""
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="CAM methods")
    for label in labels:
        box.locator("input").click()
        page.keyboard.type(label)
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        wait_grid(page, SLOW_GRID_MS)


def test_compare_three_by_three_reads_at_a_glance(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("resnet50", *TWO))
    samples = write_image_folder(tmp_path / "samples", NAMES[:3], per_class=1, size=(96, 72))
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": str(samples), "OMP_NUM_THREADS": "1",
           "MUSHCAM_CACHE": str(tmp_path / "cams")}
    with running_app(env=env) as url, browser_page(width=1440, height=3000) as page:
        page.goto(f"{url}/Compare")
        wait_grid(page, SLOW_GRID_MS)
        choose_methods(page, ["HiResCAM", "XGrad-CAM"])
        screenshot(page, "compare_3x3")
        assert exception_texts(page) == []
        tabs = page.get_by_role("tab")
        assert [t.inner_text().strip() for t in tabs.all()] == ["Grad-CAM", "HiResCAM", "XGrad-CAM"]
        texts = page.locator('[data-testid="stMarkdownContainer"]').all_text_contents()
        long = [t for t in texts if len(t) > LONG_TEXT]
        assert long == [], long
        # The open tab: 3 photos x (original + 3 models + the photo's agreement matrix, a picture);
        # the other tabs are not drawn until opened; the grid's mean matrix is a picture under Numbers.
        assert page.locator(f'[data-testid="stTabPanel"]:visible {READY}').count() == 3 * 5
        assert page.locator(f'[data-testid="stTabPanel"]:not(:visible) {READY}').count() == 0
        assert page.get_by_text("of every two maps").count() == 3
        assert page.get_by_text("Mean IoU of the top regions over 3 photos").count() == 1
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 0  # no chart to draw on the whole page
        for label in ("ResNet-50", "EfficientNet-B0", "MobileNetV3-Large"):
            header = page.locator('[data-testid="stTabPanel"]:visible strong').filter(has_text=label).first
            box = header.bounding_box()
            assert box is not None and box["height"] < 30, (label, box)  # one line: not broken mid-word
        wait_images_loaded(page)
        screenshot(page, "compare_3x3")
