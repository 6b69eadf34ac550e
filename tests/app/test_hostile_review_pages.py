"""Issue 18 §2 on the Errors page (AppTest): damaged marks, notes shown as text, hidden characters in names.

Each case: no exception, one box with the library's message, the store unchanged by a refusal.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import streamlit as st
from errors_setup import open_page, write_errors_setup
from streamlit.testing.v1 import AppTest

from mushcam import settings, store
from mushcam.review import store as rs

NOTE = "![x](http://127.0.0.1:9/y.png) <img src=http://127.0.0.1:9/x.png>\n# Fake heading\n- **Ben**: fake"


@pytest.fixture
def written(tmp_path: Path) -> dict[str, Path]:
    return write_errors_setup(tmp_path)


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def key_of_first_error(results: Path) -> rs.ReviewKey:
    contents = store.load_store(results)
    run = next(r for r in contents.runs if r.backbone == "efficientnet_b0")
    rows = contents.predictions[run.run_id]
    i = rows.image_paths.index("Amanita/img_1.png")
    return rs.ReviewKey(rows.image_sha256[i], run.backbone, run.checkpoint_sha256)


def boxes(at: AppTest) -> list[str]:
    return [e.value for e in (*at.error, *at.warning)]


def test_damaged_near_duplicate_marks_are_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                      written: dict[str, Path]) -> None:
    key = key_of_first_error(written["out"])
    rs.save_duplicates(written["out"], [rs.NearDuplicate(key.image_sha256, "test/Amanita/img_1.png", "test",
                                                         "f" * 64, "train/Amanita/twin.png", "train", 4)])
    with sqlite3.connect(written["out"]) as connection:  # one direction of the pair damaged: text as distance
        connection.execute("UPDATE near_duplicates SET distance = 'near' WHERE split = 'train'")
    stamp = written["out"].read_bytes()
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    assert not at.exception and not at.error
    damaged = [w for w in boxes(at) if "could not be read" in w]
    assert len(damaged) == 1 and "1 damaged near\\-duplicate mark" not in damaged[0]
    assert "skipped 1 damaged near-duplicate mark" in damaged[0] and "run check-data --store again" in damaged[0]
    assert any("Near-duplicate in train: train/Amanita/twin.png (4 bits)" in w for w in boxes(at))  # the whole row
    assert written["out"].read_bytes() == stamp


def test_notes_are_shown_as_text_never_markdown(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    rs.save_review(written["out"], rs.Review(key_of_first_error(written["out"]), "Ben", ("other",), NOTE,
                                             image_path="Amanita/img_1.png"))
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    shown = [m.value for m in at.markdown if "Fake heading" in m.value]
    assert len(shown) == 1, shown
    source = shown[0]
    assert "<img" not in source and "&lt;img src=http://127.0.0.1:9/x.png&gt;" in source
    assert "!\\[x\\](http://127.0.0.1:9/y.png)" in source and not re.search(r"(?<!\\)\]\(", source)
    assert "\\# Fake heading" in source and "\\- \\*\\*Ben\\*\\*: fake" in source
    assert all(not line.lstrip().startswith(("#", "- **Ben**")) for line in source.splitlines()[1:])


def test_reviewer_name_with_a_right_to_left_override_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                written: dict[str, Path]) -> None:
    monkeypatch.delenv("MUSHCAM_REVIEWER", raising=False)
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    stamp = written["out"].read_bytes()
    at.text_input(key="reviewer_widget").input("Ana\u202egnp.exe").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "a reviewer name cannot hold invisible or control characters: U+202E RIGHT-TO-LEFT OVERRIDE at "
        "character 4; type the name again without it"]
    assert at.button(key="rv_save").disabled  # no reviewer: nothing can be saved under that name
    assert settings.read_reviewer_name() == "" and written["out"].read_bytes() == stamp
    at.text_input(key="reviewer_widget").input("Ana").run()
    assert not at.error and settings.read_reviewer_name() == "Ana"


def test_a_colliding_cause_is_one_error_and_the_note_field_has_the_store_limit(monkeypatch: pytest.MonkeyPatch,
                                                                   written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.text_input(key="reviewer_widget").input("Ana").run()
    at.text_input(key="rv_new_cause").input("ＳＨＯＲＴＣＵＴ").run()
    at.button(key="rv_add_cause").click().run()
    assert not at.exception and len(at.error) == 1
    assert "would be the same as the existing “shortcut (watermark, text, ruler, hand)”" in at.error[0].value
    assert rs.load_custom_causes(written["out"]) == ()
    # the note field holds at most the library's limit (the browser stops typing there; the store refuses more)
    assert at.text_area(key="rv_note").proto.max_chars == rs.MAX_NOTE == 5000
    at.checkbox(key="rv_c_other").check()
    at.text_area(key="rv_note").input("n" * 5000)
    at.button(key="rv_save").click().run()
    assert not at.exception and not at.error
    assert [len(r.note) for r in rs.load_reviews(written["out"])] == [5000]
