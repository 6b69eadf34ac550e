"""The review flow on the Errors page under AppTest: tag, save & next, filters, edit, delete, two reviewers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit as st
from errors_setup import listed, matching, open_page, write_errors_setup
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from mushcam import store
from mushcam.review import store as rs


@pytest.fixture
def written(tmp_path: Path) -> dict[str, Path]:
    return write_errors_setup(tmp_path)


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def picked(at: AppTest) -> str:
    box = at.selectbox(key="err_pick")
    return box.format_func(box.value).split(" — ")[0]


def progress_text(at: AppTest) -> str:
    texts = [p.proto.text for p in at.get("progress")]
    assert len(texts) == 1, texts
    return texts[0]


def tag(at: AppTest, *causes: str, note: str = "", button: str = "rv_save") -> None:
    for checkbox in at.checkbox:
        if checkbox.key.startswith("rv_c_"):
            checkbox.set_value(checkbox.key[5:] in causes)
    at.text_area(key="rv_note").input(note)
    at.button(key=button).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_tag_next_filter_edit_delete(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    assert any("Set your reviewer name" in i.value for i in at.info)
    assert at.button(key="rv_save").disabled
    at.text_input(key="reviewer_widget").input("Ana").run()
    assert progress_text(at).startswith("**0 of 6 errors reviewed**")
    assert picked(at) == "Amanita/img_1.png"

    tag(at, "look_alike", "wrong_region", note="cap like Boletus", button="rv_save_next")
    assert any("Saved Ana's review of Amanita/img_1.png" in s.value for s in at.success)
    assert picked(at) == "Boletus/img_1.png"  # moved on
    assert progress_text(at).startswith("**1 of 6 errors reviewed** (you: 1)")
    stored = rs.load_reviews(written["out"])
    assert [(r.reviewer, r.causes, r.note, r.image_path) for r in stored] == [
        ("Ana", ("wrong_region", "look_alike"), "cap like Boletus", "Amanita/img_1.png")]
    assert (
        listed(at)[0] == "Amanita/img_1.png" and "Ana: wrong region" in at.dataframe(key="err_table").value["review"][0]
    )

    # unreviewed only: the reviewed error leaves the list; next/previous walk the rest
    at.selectbox(key="err_review").select("mine").run()
    assert matching(at) == 5 and "Amanita/img_1.png" not in listed(at)
    first = picked(at)
    at.button(key="rv_next").click().run()
    assert picked(at) == listed(at)[1] != first
    at.button(key="rv_prev").click().run()
    assert picked(at) == first
    assert at.button(key="rv_prev").disabled

    # edit: back to the reviewed one (cause filter), the form shows the saved review
    at.selectbox(key="err_review").select("any").run()
    at.multiselect(key="err_causes").select("look_alike").run()
    assert matching(at) == 1 and picked(at) == "Amanita/img_1.png"
    assert at.checkbox(key="rv_c_look_alike").value and at.text_area(key="rv_note").value == "cap like Boletus"
    tag(at, "poor_quality", note="blurred")
    assert matching(at) == 0  # no longer tagged look-alike
    at.multiselect(key="err_causes").unselect("look_alike").run()
    at.selectbox(key="err_review").select("reviewed").run()
    assert matching(at) == 1
    assert [r.causes for r in rs.load_reviews(written["out"])] == [("poor_quality",)]

    at.button(key="rv_delete").click().run()
    assert any("Deleted Ana's review" in s.value for s in at.success)
    assert rs.load_reviews(written["out"]) == ()
    assert matching(at) == 0 and any("No prediction matches" in i.value for i in at.info)
    # a review needs a cause or a note: a clear message, nothing stored
    at.selectbox(key="err_review").select("any").run()
    tag(at, note="")
    assert any("choose at least one cause or write a note" in e.value for e in at.error)
    assert rs.load_reviews(written["out"]) == ()


def test_two_reviewers_other_models_custom_cause_and_marks(monkeypatch: pytest.MonkeyPatch,
                                                           written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.text_input(key="reviewer_widget").input("Ana").run()
    tag(at, "look_alike", note="gills")
    at.text_input(key="reviewer_widget").input("Ben").run()
    assert not at.checkbox(key="rv_c_look_alike").value  # Ben's own (empty) form
    # a cause the list lacked
    at.text_input(key="rv_new_cause").input("Insect damage").run()
    at.button(key="rv_add_cause").click().run()
    assert any("Added the cause" in s.value for s in at.success)
    tag(at, "insect_damage", "label_doubtful")
    text = " ".join(m.value for m in at.markdown)
    assert "Reviews of this error** (2)" in text and "**Ana**: look-alike genus — gills" in text
    assert "**Ben**: label doubtful (possibly mislabelled), Insect damage" in text
    assert progress_text(at).startswith("**1 of 6 errors reviewed** (you: 1)")
    # the same photo under MobileNet shows the reviews made under EfficientNet
    at.selectbox(key="err_run").select(at.selectbox(key="err_run").options[1]).run()
    assert picked(at) == "Amanita/img_1.png"
    text = " ".join(m.value for m in at.markdown)
    assert "This photo under other models" in text and "EfficientNet-B0" in text
    assert progress_text(at).startswith("**0 of 1 errors reviewed**")
    # near-duplicate marks written by check-data show on the list and the chosen photo
    rows = store.load_store(written["out"]).predictions
    sha = next(iter(rows.values())).image_sha256[1]  # Amanita/img_1.png
    rs.save_duplicates(written["out"], [rs.NearDuplicate(sha, "test/Amanita/img_1.png", "test", "f" * 64,
                                                         "train/Amanita/x.png", "train", 4)])
    at.run()
    assert any("Near-duplicate in train" in w.value for w in at.warning)
    assert list(at.dataframe(key="err_table").value["near-duplicate in"]) == ["train"]
    assert re.search(r"labels to fix \(CSV, 1\)", " ".join(b.label for b in at.get("download_button")))


def test_two_sessions_tag_the_same_error(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    """Two browser sessions (two AppTests) tag the same error in turn: both reviews kept, each page shows both."""
    ana = open_page(monkeypatch, written["ckpt"], written["out"])
    ben = open_page(monkeypatch, written["ckpt"], written["out"])
    ana.text_input(key="reviewer_widget").input("Ana").run()
    ben.text_input(key="reviewer_widget").input("Ben").run()
    for checkbox in ana.checkbox:  # Ana ticks before Ben saves; she saves after him
        if checkbox.key == "rv_c_look_alike":
            checkbox.check()
    tag(ben, "wrong_region", note="background")
    ana.button(key="rv_save").click().run()
    assert {(r.reviewer, r.causes) for r in rs.load_reviews(written["out"])} == {
        ("Ana", ("look_alike",)), ("Ben", ("wrong_region",))}
    ben.run()
    for at in (ana, ben):
        text = " ".join(m.value for m in at.markdown)
        assert "Reviews of this error** (2)" in text


def test_malformed_reviews_are_one_message(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    import sqlite3

    rs.save_review(written["out"], rs.Review(rs.ReviewKey("0" * 64, "m", "c"), "Ana", ("other",), image_path="A/x.png"))
    with sqlite3.connect(written["out"]) as connection:
        connection.execute("UPDATE reviews SET causes_json = '[1, 2'")
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "3_Errors.py"), default_timeout=60)
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(written["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(written["out"]))
    at.run()
    assert not at.exception and not at.error  # issue 18: the damaged row is skipped, the page goes on
    warnings = [w.value for w in at.warning if "could not be read" in w.value]
    assert len(warnings) == 1 and "the causes are not a JSON list" in warnings[0]


def test_reviewer_name_is_remembered_for_the_next_session(monkeypatch: pytest.MonkeyPatch,
                                                          written: dict[str, Path]) -> None:
    """Issue 22: the name was asked again in every new browser session; now it comes from the settings folder."""
    from mushcam import settings

    monkeypatch.delenv("MUSHCAM_REVIEWER", raising=False)
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    assert at.text_input(key="reviewer_widget").value == ""
    at.text_input(key="reviewer_widget").input("  Ana   Lima ").run()
    assert settings.read_reviewer_name() == "Ana Lima"
    again = open_page(monkeypatch, written["ckpt"], written["out"])  # a new session
    assert again.text_input(key="reviewer_widget").value == "Ana Lima"
    assert not any("Set your reviewer name" in i.value for i in again.info)
    settings.reviewer_name_path().write_text("{not json", encoding="utf-8")  # damaged: no name, no error
    damaged = open_page(monkeypatch, written["ckpt"], written["out"])
    assert damaged.text_input(key="reviewer_widget").value == ""


def test_reviewer_settings_file(tmp_path: Path) -> None:
    from mushcam import settings

    path = tmp_path / "sub" / "reviewer.json"
    assert settings.read_reviewer_name(path) == ""
    settings.remember_reviewer_name(" Ben\n", path)
    assert settings.read_reviewer_name(path) == "Ben"
    for damaged in ("[1, 2]", '{"reviewer": 5}', "\xff", '{"reviewer": "' + "x" * 999 + '"}'):
        path.write_text(damaged, encoding="utf-8")
        assert settings.read_reviewer_name(path) in ("", "x" * settings.MAX_REVIEWER_CHARS)
    path.write_bytes(b"\xff\xfe")
    assert settings.read_reviewer_name(path) == ""


def test_add_a_cause_closes_its_popover(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    """Issue 22: the "Add a cause" popover stayed open after adding."""
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.text_input(key="reviewer_widget").input("Ana").run()
    at.text_input(key="rv_new_cause").input("Slug bites").run()
    at.button(key="rv_add_cause").click().run()
    assert not at.exception
    assert any("Added the cause" in s.value for s in at.success)
    assert at.session_state["rv_causes_added"] == 1  # the popover is drawn anew under a new key: closed
    assert at.text_input(key="rv_new_cause_1").value == ""  # a fresh, empty field
    assert at.checkbox(key="rv_c_slug_bites").value is False  # the new cause is in the form
