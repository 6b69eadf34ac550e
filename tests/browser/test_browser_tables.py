"""Tables fit at 1440 px in Chromium: no column hidden past the edge, no header cut (Home, Errors, Trust).

For ``st.dataframe`` (a canvas grid) the DOM tells whether the grid scrolls sideways (its scroller's
``scrollWidth`` against its ``clientWidth``) and which headers it draws (the grid's accessible
table); each header is measured in the grid's own font and must fit the width ``ui.table_fit``
gives it. For ``st.table`` (HTML) every header cell and the table itself must not overflow.
"""

from __future__ import annotations

import json

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_idle
from factories import CLASSES, write_image_folder, write_manifest

from mushcam.cli import main
from ui.home import WHOLE_WORD_COLUMNS
from ui.table_fit import HEADER_EXTRA, text_px

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect

LONG_NAME = "mushroom-classifier-from-the-thesis-run-2024"
LONG_PATH = "/home/someone/experiments/thesis/runs/2024-05-17/resnet50_finetuned_best_epoch_37.pt"

GRIDS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'))
  .filter(frame => frame.offsetParent !== null).map(frame => {
    const scroller = frame.querySelector('.dvn-scroller');
    const style = getComputedStyle(frame.querySelector('[style*="--gdg-header-font-style"]'));
    const font = style.getPropertyValue('--gdg-header-font-style').trim() + ' '
      + style.getPropertyValue('--gdg-font-family').trim();
    const context = document.createElement('canvas').getContext('2d');
    context.font = font;
    const headers = Array.from(frame.querySelectorAll('thead th, [role="columnheader"]'))
      .map(th => th.textContent.trim()).filter(text => text);
    return {scroll: scroller.scrollWidth, client: scroller.clientWidth, font,
            headers: headers.map(text => [text, context.measureText(text).width])};
  })"""
TABLES_JS = """() => Array.from(document.querySelectorAll('[data-testid="stTable"]')).map(frame => ({
    scroll: frame.scrollWidth, client: frame.clientWidth,
    table: frame.querySelector('table').getBoundingClientRect().width,
    cut: Array.from(frame.querySelectorAll('th, td')).filter(c => c.scrollWidth > c.clientWidth + 1)
      .map(c => c.textContent.trim())}))"""

# Words split over two lines in the header cells and in the cells of the given columns (1-based):
# a word is a run of characters between spaces and hyphens, split when its text spans two lines.
BROKEN_WORDS_JS = """(columns) => {
  const cells = Array.from(document.querySelectorAll('[data-testid="stTable"] th'));
  for (const n of columns) {
    cells.push(...document.querySelectorAll(`[data-testid="stTable"] td:nth-child(${n})`));
  }
  const broken = [];
  for (const cell of cells) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/[^\\s-]+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0)
          .map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two evaluated models, one missing under a long path, faithfulness results: every table filled."""
    base = tmp_path_factory.mktemp("tables")
    ckpt = base / "ckpt"
    write_manifest(ckpt, backbones=("efficientnet_b0", "mobilenet_v3_large"), size=64)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["models"][LONG_NAME] = {"checkpoint": LONG_PATH, "arch": "resnet50"}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    data = write_image_folder(base / "test", [n for n, _ in CLASSES], per_class=2, size=(96, 72))
    store = base / "results.sqlite"
    models = ["--models", "efficientnet_b0", "mobilenet_v3_large"]
    assert main(["evaluate", "--data", str(data), "--manifest", str(ckpt), *models, "--out", str(store)]) == 0
    assert main(["faithfulness", "--data", str(data), "--manifest", str(ckpt), *models, "--steps", "4",
                 "--road-percentages", "50", "--out", str(store)]) == 0
    return {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_RESULTS": str(store), "MUSHCAM_DATA": str(data),
            "MUSHCAM_CACHE": str(base / "cache")}


def grid_problems(page: object, where: str, expected: int) -> list[str]:
    """What does not fit in the visible grids: one that scrolls sideways, a header wider than its fitted width."""
    grids = page.evaluate(GRIDS_JS)
    problems = [] if len(grids) >= expected else [f"{where}: {len(grids)} grids, expected {expected}"]
    for grid in grids:
        if grid["scroll"] > grid["client"] + 1:
            problems.append(f"{where}: a grid {grid['scroll']} px wide in {grid['client']} px")
        if not grid["headers"]:
            problems.append(f"{where}: no header found in the grid's DOM")
        # the width ui.table_fit gives a header is text_px + HEADER_EXTRA; the grid needs measured + 16
        problems += [f"{where}: header {text!r} is {measured:.0f} px" for text, measured in grid["headers"]
                     if measured + 16 > text_px(text) + HEADER_EXTRA]
    return problems


def table_problems(page: object) -> list[str]:
    """What does not fit in the Home page's static table: the table past its frame, a cell cut, a
    word broken in a header or in a column of words (ui.home.WHOLE_WORD_COLUMNS)."""
    headers = [h.strip() for h in page.locator('[data-testid="stTable"] th').all_inner_texts()]
    columns = [headers.index(c) + 1 for c in WHOLE_WORD_COLUMNS if c in headers]
    problems = [] if len(columns) == len(WHOLE_WORD_COLUMNS) else [f"Home: columns {headers}"]
    problems += [f"Home: word broken across lines: {word!r}" for word in page.evaluate(BROKEN_WORDS_JS, columns)]
    tables = page.evaluate(TABLES_JS)
    problems += [] if len(tables) == 1 else [f"Home: {len(tables)} static tables, expected 1"]
    for table in tables:
        if max(table["scroll"], table["table"]) > table["client"] + 1:
            problems.append(f"Home: the model table is {table['table']:.0f} px wide in {table['client']} px")
        problems += [f"Home: cell cut: {text!r}" for text in table["cut"]]
    return problems


def open_page(page: object, url: str, name: str) -> None:
    page.goto(url)
    wait_idle(page, ready='[data-testid="stDataFrame"]')
    assert exception_texts(page) == []
    screenshot(page, name)


def test_tables_fit_at_1440_px(setup: dict[str, str]) -> None:
    with running_app(env=setup) as url, browser_page(width=1440, height=1400) as page:
        open_page(page, url, "tables_home")
        problems = table_problems(page) + grid_problems(page, "Home", 1)  # the test-set metrics
        if not page.get_by_text("…/2024-05-17/resnet50_finetuned_best_epoch_37.pt").count():
            problems.append("Home: the missing checkpoint's path is not shortened")
        open_page(page, f"{url}/Errors", "tables_errors")
        problems += grid_problems(page, "Errors", 1)  # the list (and how the other model saw the chosen photo)
        open_page(page, f"{url}/Trust", "tables_trust")
        for tab in ("Deletion", "Insertion", "Average Drop · Increase · ROAD"):
            tabs = page.get_by_role("tab", name=tab)
            if tabs.count():
                tabs.click()
                wait_idle(page, ready='[data-testid="stDataFrame"]')
                screenshot(page, f"tables_trust_{tab.split()[0].lower()}")
            problems += grid_problems(page, f"Trust, {tab}", 1)
        assert problems == []
