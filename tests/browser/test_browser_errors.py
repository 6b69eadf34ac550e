"""The Errors page in a real browser: a live `streamlit run app.py` and Debian's Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_idle
from errors_setup import write_errors_setup

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect


def count_shown(page: object) -> int:
    text = page.get_by_text(re.compile(r"\d+ matching rows")).first.inner_text()
    return int(re.search(r"(\d+) matching rows", text).group(1))


def choose(page: object, label: str, option: str) -> None:
    """Pick ``option`` (a regex) in the selectbox labelled ``label``; retries if the list did not open."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    box.scroll_into_view_if_needed()
    wanted = page.get_by_role("option", name=re.compile(option))
    for _ in range(5):
        box.click()
        try:
            wanted.wait_for(state="visible", timeout=5_000)
        except Exception:  # noqa: BLE001 - the list did not open (a rerun redrew it): try again
            page.keyboard.press("Escape")
            continue
        wanted.click()
        return
    raise AssertionError(f"could not open the {label!r} selectbox")


def settle_on(page: object, pattern: str) -> None:
    """Wait for the rerun after an interaction to finish and show ``pattern`` (a regex)."""
    expect(page.get_by_text(re.compile(pattern)).first).to_be_visible(timeout=60_000)
    wait_idle(page, ready='[data-testid="stImage"] img')


def test_errors_page_in_chromium(tmp_path: Path) -> None:
    setup = write_errors_setup(tmp_path, size=(160, 120))
    ckpt, out = setup["ckpt"], setup["out"]

    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_RESULTS": str(out), "MUSHCAM_DATA": str(setup["data"])}
    with running_app(env=env) as url, browser_page() as page:
        page.goto(f"{url}/Errors")
        wait_idle(page, ready='[data-testid="stImage"] img')
        assert exception_texts(page) == []
        assert page.get_by_text("EfficientNet-B0: poisonous → edible").count() == 1
        assert count_shown(page) == 6
        metric_values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert metric_values == ["3 / 6", "0 / 6"]
        screenshot(page, "errors_top")

        # the explanation: original + predicted-class map + true-class map + their contrast, decoded by the browser
        images = page.locator('[data-testid="stImage"] img')
        assert images.count() == 4
        images.nth(3).scroll_into_view_if_needed()
        wait_idle(page, ready='[data-testid="stImage"] img')
        widths = [images.nth(i).evaluate("img => img.naturalWidth") for i in range(4)]
        assert all(w >= 100 for w in widths), widths
        assert page.get_by_text(re.compile(r"Why Boletus\? \(95\.0%\)")).count() == 1
        screenshot(page, "errors_explained")

        # a filter: error kind -> poisonous -> edible
        choose(page, "Error kind", "Poisonous → edible")
        settle_on(page, r"^3 matching rows")
        assert count_shown(page) == 3
        assert exception_texts(page) == []

        # a click on the confusion matrix cell Gyromitra -> Suillus lists exactly that pair
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        chart.scroll_into_view_if_needed()
        cells = chart.locator(".scatterlayer .point")
        assert cells.count() == 16
        cells.nth(2 * 4 + 3).click(force=True)
        settle_on(page, r"^1 matching rows")
        assert count_shown(page) == 1
        true_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="True class").locator("input")
        assert true_box.input_value() == "Gyromitra"
        screenshot(page, "errors_matrix_cell")

        # one click: the same image as MobileNetV3 saw it
        page.locator('[data-testid="stRadio"]').get_by_text("MobileNetV3-Large").click()
        settle_on(page, r"MobileNetV3-Large, layer")
        assert page.get_by_text(re.compile(r"Why Gyromitra\? \(80\.0%\)")).count() == 1
        assert exception_texts(page) == []
        screenshot(page, "errors_other_backbone")


def test_review_flow_in_chromium(tmp_path: Path) -> None:
    """Tag an error, save & next, next, unreviewed only, and download the report, in a real browser."""
    from mushcam.review import store as review_store

    setup = write_errors_setup(tmp_path, size=(160, 120))
    env = {"MUSHCAM_CHECKPOINTS": str(setup["ckpt"]), "MUSHCAM_RESULTS": str(setup["out"]),
           "MUSHCAM_DATA": str(setup["data"])}
    with running_app(env=env) as url, browser_page(height=1400) as page:
        page.goto(f"{url}/Errors")
        wait_idle(page, ready='[data-testid="stImage"] img')
        name = page.locator('[data-testid="stSidebar"] input[aria-label="Reviewer name"]')
        name.fill("Ana")
        name.press("Enter")
        wait_idle(page, ready='[data-testid="stImage"] img')
        expect(page.get_by_text(re.compile(r"0 of 6 errors reviewed \(you: 0\)"))).to_be_visible(timeout=60_000)

        # tag the first error and move on with one click
        page.get_by_text("look-alike genus", exact=True).click()
        page.get_by_label("Note").fill("cap like a bolete")
        page.get_by_role("button", name="Save & next").click()
        settle_on(page, r"1 of 6 errors reviewed")
        assert exception_texts(page) == []
        reviews = review_store.load_reviews(setup["out"])
        assert [(r.reviewer, r.causes, r.note) for r in reviews] == [("Ana", ("look_alike",), "cap like a bolete")]
        expect(page.locator("h4").filter(has_text="Boletus/img_1.png")).to_be_visible(timeout=60_000)  # moved on
        screenshot(page, "review_tagged")

        # next without scrolling
        page.get_by_role("button", name="Next ▶").click()
        expect(page.locator("h4").filter(has_text="Suillus/img_2.png")).to_be_visible(timeout=60_000)
        wait_idle(page, ready='[data-testid="stImage"] img')

        # unreviewed only: the tagged error is gone from the list
        choose(page, "Review", "Not reviewed by me")
        settle_on(page, r"^5 matching rows")
        assert count_shown(page) == 5

        # the report downloads as one self-contained HTML file with the figures embedded
        with page.expect_download(timeout=120_000) as download_info:
            page.get_by_role("button", name="Download review report (HTML)").click()
        report_path = tmp_path / "report.html"
        download_info.value.save_as(report_path)
        text = report_path.read_text()
        assert "cap like a bolete" in text and "data:image/webp;base64," in text
        assert exception_texts(page) == []
        screenshot(page, "review_unreviewed_only")


def test_errors_page_at_1440_px(tmp_path: Path) -> None:
    """Issue 22 item 4 on Errors, at 1440 px: the cell selector shows its default, the maps are large, the
    matrix labels do not overlap, "Add a cause" closes, the reviewer name comes back in a new session; and the
    look-alike strip (issue 20) appears when asked."""
    from errors_setup import NAMES
    from factories import write_image_folder

    setup = write_errors_setup(tmp_path, size=(160, 120))
    write_image_folder(tmp_path / "train", NAMES, per_class=2, size=(96, 72))
    env = {"MUSHCAM_CHECKPOINTS": str(setup["ckpt"]), "MUSHCAM_RESULTS": str(setup["out"]),
           "MUSHCAM_DATA": str(setup["data"])}
    with running_app(env=env) as url:
        with browser_page(width=1440, height=3000) as page:
            page.goto(f"{url}/Errors")
            wait_idle(page, ready='[data-testid="stImage"] img')
            assert exception_texts(page) == []
            cell = page.locator('[data-testid="stSelectbox"]').filter(has_text="Or choose a cell")
            shown = f'{cell.inner_text()} {cell.locator("input").first.get_attribute("placeholder") or ""}'
            assert "(none: all pairs)" in shown and "Choose an option" not in shown, shown
            screenshot(page, "errors_1440")
            shown_widths = 'imgs => imgs.map(i => i.getBoundingClientRect().width)'
            widths = page.locator('[data-testid="stImage"] img').evaluate_all(shown_widths)
            assert len(widths) == 4 and min(widths[1:]) >= 280, widths  # half the explanation column; was ~190 px
            page.get_by_text("Larger maps").click()
            wait_idle(page, ready='[data-testid="stImage"] img')
            larger = page.locator('[data-testid="stImage"] img').evaluate_all(shown_widths)
            assert min(larger) >= 1.8 * min(widths[1:]), larger  # the full column
            screenshot(page, "errors_1440_larger")
            page.get_by_text("Larger maps").click()
            wait_idle(page, ready='[data-testid="stImage"] img')
            ticks = page.locator('[data-testid="stPlotlyChart"]').first.locator(".xtick text")
            boxes = [ticks.nth(i).bounding_box() for i in range(ticks.count())]
            for a, b in zip(boxes, boxes[1:], strict=False):  # slanted labels: no two overlap
                assert a["x"] + a["width"] <= b["x"] + 1 or a["y"] + a["height"] <= b["y"] + 1, (a, b)

            name = page.locator('[data-testid="stSidebar"] input[aria-label="Reviewer name"]')
            name.fill("Ana")
            name.press("Enter")
            wait_idle(page, ready='[data-testid="stImage"] img')
            page.get_by_role("button", name="Add a cause").click()
            field = page.get_by_label("New cause")
            field.fill("Slug bites")
            page.get_by_role("button", name="Add", exact=True).click()
            expect(page.get_by_text("Added the cause")).to_be_visible(timeout=60_000)
            wait_idle(page, ready='[data-testid="stImage"] img')
            expect(page.get_by_label("New cause")).to_be_hidden(timeout=10_000)  # the popover closed
            expect(page.get_by_text("Slug bites", exact=True)).to_be_visible()  # now a cause in the form
            page.get_by_text("Show look-alike training photos").click()  # another rerun: it stays closed
            expect(page.get_by_text("Look-alike training photos", exact=True)).to_be_visible(timeout=180_000)
            wait_idle(page, ready='[data-testid="stImage"] img')
            assert page.get_by_label("New cause").count() == 0 or not page.get_by_label("New cause").is_visible()
            page.get_by_role("button", name="Add a cause").click()
            expect(page.get_by_label("New cause")).to_have_value("")  # opened again: empty
            page.keyboard.press("Escape")

            assert exception_texts(page) == []
            page.get_by_text("Look-alike training photos", exact=True).scroll_into_view_if_needed()
            screenshot(page, "errors_1440_lookalikes")
        with browser_page(width=1440, height=1000) as again:  # a new browser session
            again.goto(f"{url}/Errors")
            wait_idle(again, ready='[data-testid="stImage"] img')
            field = again.locator('[data-testid="stSidebar"] input[aria-label="Reviewer name"]')
            assert field.input_value() == "Ana"
