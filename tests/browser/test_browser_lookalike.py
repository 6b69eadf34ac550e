"""The Errors page's look-alike strip in a real browser: a live `streamlit run app.py` and Debian's Chromium.

The Errors setup (tests/helpers/errors_setup.py) plus a ``train`` folder beside its test folder (3 photos
per class), which the page proposes by itself. The strip is behind a toggle; once on, it shows the
nearest training photos of the model's predicted class and, when the true class differs, of the true
class, each with its map, decoded by the browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_for_text, wait_idle
from errors_setup import NAMES, write_errors_setup
from factories import write_image_folder

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect
PER_CLASS = 3


def test_lookalike_strip_on_the_errors_page_in_chromium(tmp_path: Path) -> None:
    setup = write_errors_setup(tmp_path, size=(160, 120))
    write_image_folder(tmp_path / "train", NAMES, per_class=PER_CLASS, size=(96, 72))
    env = {"MUSHCAM_CHECKPOINTS": str(setup["ckpt"]), "MUSHCAM_RESULTS": str(setup["out"]),
           "MUSHCAM_DATA": str(setup["data"]), "MUSHCAM_CACHE": str(tmp_path / "cache")}
    with running_app(env=env) as url, browser_page() as page:
        page.goto(f"{url}/Errors")
        wait_idle(page, ready='[data-testid="stImage"] img')
        images = page.locator('[data-testid="stImage"] img')
        assert images.count() == 4  # the explanation only: the strip is off until asked for
        assert page.get_by_text("Look-alike training photos", exact=True).count() == 0

        page.get_by_text("Show look-alike training photos").click()
        wait_for_text(page, "Look-alike training photos", count=1, timeout=180)
        assert exception_texts(page) == []
        training = page.get_by_role("textbox", name="Training photos (for look-alikes)")
        assert training.input_value() == str(tmp_path / "train")  # proposed from the test folder's sibling

        called = page.get_by_text(re.compile(r"^Called \w+ \(\d+\.\d%\)\. Nearest training photos")).first
        predicted = re.match(r"Called (\w+)", called.inner_text()).group(1)
        assert predicted in NAMES
        expect(page.get_by_text(f"It resembles these {predicted}")).to_have_count(1)
        true_row = page.get_by_text("Nearest Amanita (the true class)")  # the first row shown is Amanita/img_1
        expect(true_row).to_have_count(0 if predicted == "Amanita" else 1)
        assert page.get_by_text(re.compile(r"among 12 training photos")).count() == 1

        rows = 1 if predicted == "Amanita" else 2
        expect(images).to_have_count(4 + rows * PER_CLASS)
        captions = page.get_by_text(re.compile(r"^\w+ · distance \d\.\d{3}")).all_inner_texts()
        assert len(captions) == rows * PER_CLASS
        assert [c.split(" ·")[0] for c in captions[:PER_CLASS]] == [predicted] * PER_CLASS
        if rows == 2:
            assert [c.split(" ·")[0] for c in captions[PER_CLASS:]] == ["Amanita"] * PER_CLASS
        distances = [float(re.search(r"distance (\d\.\d{3})", c).group(1)) for c in captions[:PER_CLASS]]
        assert distances == sorted(distances) and all(0.0 <= d <= 2.0 for d in distances)
        last = images.nth(4 + rows * PER_CLASS - 1)
        last.scroll_into_view_if_needed()
        wait_idle(page, ready='[data-testid="stImage"] img')
        widths = [images.nth(i).evaluate("img => img.naturalWidth") for i in range(4, 4 + rows * PER_CLASS)]
        assert all(w > 0 for w in widths), widths  # every look-alike (photo with its map) decoded
        screenshot(page, "errors_lookalikes")
        assert exception_texts(page) == []
