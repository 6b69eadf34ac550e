"""Issue 18 §2.6 in a real browser: a note (or a cause label) holding HTML or a Markdown image loads nothing.

A local HTTP server counts every hit; Chromium records every request the page makes. The
note must show as the characters typed, with no <img> element for it, no request to the
server, and no heading made from it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browser_support import browser_page, exception_texts, running_app, screenshot, wait_for_text, wait_idle
from errors_setup import write_errors_setup

from mushcam import store
from mushcam.review import store as rs

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect


@contextmanager
def counting_server() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server on a free port that records the path of every request; yields (port, hits)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_hostile_note_and_cause_load_nothing_and_show_as_text(tmp_path: Path) -> None:
    setup = write_errors_setup(tmp_path, size=(160, 120))
    contents = store.load_store(setup["out"])
    run = next(r for r in contents.runs if r.backbone == "efficientnet_b0")
    rows = contents.predictions[run.run_id]
    key = rs.ReviewKey(rows.image_sha256[rows.image_paths.index("Amanita/img_1.png")], run.backbone,
                       run.checkpoint_sha256)
    with counting_server() as (port, hits):
        html_note = f"<img src=http://127.0.0.1:{port}/x.png>"
        md_note = f"![x](http://127.0.0.1:{port}/y.png)"
        rs.save_review(setup["out"], rs.Review(key, "Ben", ("other",), f"{html_note} {md_note}\n# Fake heading",
                                               image_path="Amanita/img_1.png"))
        rs.add_cause(setup["out"], f"![c](http://127.0.0.1:{port}/c.png) mould")
        env = {"MUSHCAM_CHECKPOINTS": str(setup["ckpt"]), "MUSHCAM_RESULTS": str(setup["out"]),
               "MUSHCAM_DATA": str(setup["data"])}
        with running_app(env=env) as url, browser_page(height=1400) as page:
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{url}/Errors")
            wait_idle(page, ready='[data-testid="stImage"] img')
            wait_for_text(page, html_note)  # the note, shown as the characters typed
            expect(page.get_by_text(md_note).first).to_be_visible()
            expect(page.get_by_text(f"![c](http://127.0.0.1:{port}/c.png) mould")).to_be_visible()  # the checkbox
            # the page's own images have loaded (so any image the note made would have been requested by now)
            page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
                                   ".every(img => img.complete && img.naturalWidth > 0)")
            assert page.locator(f'img[src*="127.0.0.1:{port}"]').count() == 0
            assert page.locator("h1, h2, h3, h4, h5, h6").filter(has_text="Fake heading").count() == 0
            assert [r for r in requests if f":{port}" in r] == [] and hits == []
            assert exception_texts(page) == []
            page.get_by_text(html_note).first.scroll_into_view_if_needed()
            screenshot(page, "errors_hostile_note")
