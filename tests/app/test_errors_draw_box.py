"""The Errors page lets a reviewer mark the mushroom (issue 19: an object region "drawn on the
Errors/Explain page by a reviewer"): the box is stored as the photo's region, source "drawn"."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from errors_setup import open_page, write_errors_setup

from mushcam.patterns.store import load_regions
from mushcam.store import load_store


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def test_a_box_drawn_on_the_errors_page_is_stored_for_the_photo_shown(tmp_path: Path, monkeypatch):
    from ui import patterns_support

    setup = write_errors_setup(tmp_path)
    at = open_page(monkeypatch, setup["ckpt"], setup["out"])
    assert not any("Drawn box" in m.value for m in at.markdown)  # nothing drawn until the toggle is on
    at.toggle(key="err_draw_box").set_value(True).run()
    assert not at.exception, at.exception
    assert any("Drag on the photo to draw a box" in c.value for c in at.caption)
    # AppTest cannot drag: the selection is what box_from_selection reads (the drag: the browser test)
    monkeypatch.setattr(patterns_support, "box_from_selection", lambda _event, _size: (4.0, 6.0, 30.0, 40.0))
    at.run()
    at.button(key="errors_draw_save").click().run()
    assert not at.exception, at.exception
    [(sha, region)] = load_regions(setup["out"]).items()
    shown = next(m.value for m in at.markdown if m.value.startswith("#### "))
    assert region.path in shown.replace("\\", "")  # the photo the page shows
    assert (region.box, region.source) == ((4.0, 6.0, 30.0, 40.0), "drawn")
    run = load_store(setup["out"]).runs[0]
    assert sha in load_store(setup["out"]).predictions[run.run_id].image_sha256
