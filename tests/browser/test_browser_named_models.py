"""Five user-named models (two ResNet-50s) in a real browser: Home lists them, Compare lines
all five up. A live `streamlit run app.py` and Debian's Chromium; screenshots land in
artifacts/screenshots/named_*.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_idle
from factories import CLASSES, write_five_models, write_image_folder
from named_models import LABELS, NAMES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    write_five_models(tmp_path / "ckpt")
    samples = write_image_folder(tmp_path / "samples", [n for n, _ in CLASSES], per_class=1, size=(120, 90))
    return {"MUSHCAM_CHECKPOINTS": str(tmp_path / "ckpt"), "MUSHCAM_SAMPLES": str(samples), "OMP_NUM_THREADS": "1",
            "MUSHCAM_CACHE": str(tmp_path / "cams"), "MUSHCAM_RESULTS": str(tmp_path / "none.sqlite")}


def table_text(page: object) -> str:
    """The text of the page's static tables (the Home page's model table is one)."""
    return "\n".join(page.locator('[data-testid="stTable"]').all_inner_texts())


def test_home_and_compare_with_five_named_models(env: dict[str, str]) -> None:
    with running_app(env=env) as url, browser_page(width=1600, height=2000) as page:
        page.goto(url)
        page.get_by_text("5 of 5 models ready").wait_for(state="visible", timeout=180_000)
        wait_idle(page)
        assert exception_texts(page) == []
        assert page.get_by_role("heading", name="Models (5)").is_visible()
        table = table_text(page)
        for text in [*LABELS, *NAMES, "layer4 (from the manifest)", "features.16 (from the manifest)"]:
            assert text in table, text
        screenshot(page, "named_home")

        page.goto(f"{url}/Compare")
        page.get_by_role("button", name="Download summary (CSV)").wait_for(state="visible", timeout=300_000)
        wait_idle(page, ready='[data-testid="stImage"]')
        assert exception_texts(page) == []
        assert page.get_by_role("heading", name="Compare models").is_visible()
        for label in LABELS:  # one column per model, headed by its label
            assert page.get_by_text(label, exact=True).first.is_visible(), label
        # 4 photos: the original, 5 maps and, five maps a row, the photo's pairwise agreement as a
        # small matrix (a picture), not a line of text; under Numbers, the whole grid's matrix
        assert page.locator('[data-testid="stImage"]').count() == 4 * (1 + 5 + 1) + 1
        assert page.get_by_text("of every two maps").count() == 4
        screenshot(page, "named_compare")
