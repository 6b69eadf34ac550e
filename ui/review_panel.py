"""Errors page: reviewing mistakes (causes, note, reviewer), moving through them, and the downloads.

Reviews live in the results store (:mod:`mushcam.review.store`), read once per store
version. Widget keys: ``reviewer`` (sidebar), ``err_review`` / ``err_causes`` (filters),
``rv_prev`` / ``rv_next`` (navigation), ``rv_c_<cause>``, ``rv_note``, ``rv_suggest``,
``rv_save`` / ``rv_save_next``, ``rv_delete``, ``rv_new_cause`` / ``rv_add_cause`` (in the
``rv_cause_popover_<n>`` popover; popover and field are re-keyed after each added cause, so it
closes and its field is empty). The
reviewer name is remembered in the local settings folder (``rv_remembered``: the name last
read or written there).
Callbacks catch the library's errors and keep the message for the next run (``rv_message``).
Everything a user typed (notes, names, cause labels) and every stored path is shown through
:func:`mushcam.text.markdown_text`: Streamlit renders Markdown in text, captions and widget
labels (images included), so a note is shown as the characters typed, never as markup.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence

import numpy as np
import streamlit as st

from mushcam.cache import CamCache, default_cache_dir
from mushcam.errors import RunTable
from mushcam.exceptions import MushcamError
from mushcam.metrics import CORRECT
from mushcam.review import causes as cause_list
from mushcam.review import labels, report
from mushcam.review import store as review_store
from mushcam.review.causes import LABEL_DOUBTFUL, Cause
from mushcam.review.figures import FigureSource, model_name
from mushcam.review.store import MAX_REVIEWER, NearDuplicate, Review, ReviewData, ReviewIndex, ReviewKey
from mushcam.settings import read_reviewer_name, remember_reviewer_name
from mushcam.store import RunRecord, StoreContents
from mushcam.text import MAX_NOTE, clean_name, markdown_text
from ui import state

REVIEWER_KEY = "reviewer"
CAUSE_POPOVER_KEY = "rv_causes_added"  # how many causes this session added: the "Add a cause" popover's key
STATUS_LABELS = {
    "any": "Any",
    "mine": "Not reviewed by me",
    "unreviewed": "Not reviewed by anyone",
    "reviewed": "Reviewed",
    "two": "Reviewed by two or more",
}


def reviewer_input() -> str:
    """The reviewer's name, set once in the sidebar and remembered for the next browser session.

    Default: ``$MUSHCAM_REVIEWER``, else the name last typed here (:func:`mushcam.settings.read_reviewer_name`,
    a local settings file; a name, never a secret). A changed name is written back to that file.
    """
    if REVIEWER_KEY not in st.session_state:  # a new session: the environment, else the remembered name
        first = os.environ.get("MUSHCAM_REVIEWER", "").strip() or read_reviewer_name()
        st.session_state[REVIEWER_KEY] = st.session_state["rv_remembered"] = first
    with st.sidebar:
        state.persistent_widget(st.text_input, REVIEWER_KEY, "Reviewer name",
                                help="Your reviews on the Errors page are saved under this name. It is remembered "
                                "on this computer for your next visit.")
    try:
        name = clean_name(st.session_state[REVIEWER_KEY], "a reviewer name", MAX_REVIEWER)
    except MushcamError as exc:  # hidden characters (a right-to-left override...) or too long: not used
        st.sidebar.error(markdown_text(str(exc)))
        return ""
    if name != st.session_state.get("rv_remembered"):  # typed by the user: remember it
        _remember(name)
    return name


def _remember(name: str) -> None:
    """Keep ``name`` in the settings file (a failure to write is a one-line warning, never a stop)."""
    try:
        remember_reviewer_name(name)
    except (OSError, MushcamError) as exc:
        st.sidebar.warning(markdown_text(f"The reviewer name could not be remembered: {exc}"))
    st.session_state["rv_remembered"] = name


@st.cache_resource(max_entries=4)
def review_data(path: str, version: str) -> ReviewData:
    """Reviews, the cause list (built-in + added), near-duplicate marks and the warnings for damaged rows,
    read once per store version (:func:`mushcam.review.store.read_review_data`)."""
    return review_store.read_review_data(path)


def damaged_rows(data: ReviewData) -> None:
    """One warning box for the rows of the store that were skipped as damaged (none when all are whole)."""
    if data.warnings:
        st.warning(markdown_text("Some review data could not be read and is left out: " + " ".join(data.warnings)))


def key_of(run: RunRecord, table: RunTable, i: int) -> ReviewKey:
    return ReviewKey(table.rows.image_sha256[i], model_name(run), run.checkpoint_sha256)


def status_filters(causes: Sequence[Cause]) -> tuple[str, list[str]]:
    """The review-status and cause filters."""
    h1, h2 = st.columns([2, 5])
    status = h1.selectbox("Review", list(STATUS_LABELS), key="err_review", format_func=STATUS_LABELS.get,
                          on_change=_reset_page)
    chosen = h2.multiselect("Tagged with", [c.key for c in causes], key="err_causes", placeholder="(any cause)",
                            format_func=cause_list.labels_of(causes).get, on_change=_reset_page,
                            help="Keep errors that any reviewer tagged with one of these causes.")
    return status, list(chosen)


def _reset_page() -> None:
    st.session_state["err_page"] = 1


def filter_rows(matching: np.ndarray, run: RunRecord, table: RunTable, index: ReviewIndex, status: str,
                causes: Sequence[str], reviewer: str) -> np.ndarray:
    """``matching`` narrowed by review status and causes (order kept)."""
    if status == "any" and not causes:
        return matching
    keep = []
    for i in matching.tolist():
        found = index.of(key_of(run, table, i))
        if status == "mine" and any(r.reviewer == reviewer for r in found):
            continue
        if ((status == "unreviewed" and found) or (status == "reviewed" and not found)
                or (status == "two" and len(found) < 2)):
            continue
        if causes and not any(c in r.causes for r in found for c in causes):
            continue
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def progress(run: RunRecord, table: RunTable, index: ReviewIndex, reviewer: str) -> None:
    """'37 of 149 errors reviewed (you: 12)' for the chosen model, and what the last review action did."""
    message = st.session_state.pop("rv_message", None)
    if message:
        getattr(st, message[0])(markdown_text(message[1]))
    name, sha = model_name(run), run.checkpoint_sha256
    by_anyone = {k.image_sha256 for k in index.by_key if k.model == name and k.checkpoint_sha256 == sha}
    by_me = {r.key.image_sha256 for r in index.reviews
             if r.reviewer == reviewer and r.key.model == name and r.key.checkpoint_sha256 == sha}
    wrong = np.asarray(table.rows.image_sha256, dtype=object)[table.kinds != CORRECT]
    done = int(np.isin(wrong, list(by_anyone)).sum()) if by_anyone else 0
    mine = int(np.isin(wrong, list(by_me)).sum()) if by_me else 0
    text = f"**{done} of {len(wrong)} errors reviewed**"
    st.progress(done / len(wrong) if len(wrong) else 1.0, text=text + (f" (you: {mine})" if reviewer else ""))


def list_columns(run: RunRecord, table: RunTable, index: ReviewIndex, duplicates: dict[str, tuple[NearDuplicate, ...]],
                 labels_: dict[str, str]) -> Callable[[list[int]], dict[str, list[str]]]:
    """Extra list columns for the shown rows: who reviewed each and why; a near-duplicate in another split."""

    def columns(shown: list[int]) -> dict[str, list[str]]:
        reviewed, twins = [], []
        for i in shown:
            found = index.of(key_of(run, table, i))
            reviewed.append("; ".join(f"{r.reviewer}: {', '.join(labels_.get(c, c) for c in r.causes) or 'note'}"
                                      for r in found))
            marks = [m for m in duplicates.get(table.rows.image_sha256[i], ()) if m.other_split != m.split]
            twins.append(", ".join(sorted({m.other_split for m in marks})))
        return {"review": reviewed, **({"near-duplicate in": twins} if duplicates else {})}

    return columns


# ----------------------------------------------------------------------------- moving around


def follow_pick(matching: np.ndarray, page_size: int) -> None:
    """After previous/next, show the page that holds the chosen row."""
    if st.session_state.pop("rv_follow", False):
        rows = matching.tolist()
        if st.session_state.get("err_pick") in rows:
            st.session_state["err_page"] = rows.index(st.session_state["err_pick"]) // page_size + 1


def _step(delta: int) -> None:
    rows = st.session_state.get("err_matching", [])
    if not rows:
        return
    current = st.session_state.get("err_pick")
    position = rows.index(current) if current in rows else -1
    st.session_state["err_pick"] = rows[min(max(position + delta, 0), len(rows) - 1)]
    st.session_state["rv_follow"] = True


def navigation(matching: np.ndarray, shown: list[int], row_title) -> int:  # noqa: ANN001 - a format function
    """◀ previous · the chosen row · next ▶ (through every matching row, across pages); returns the row."""
    st.session_state["err_matching"] = matching.tolist()
    if st.session_state.get("err_pick") not in shown:
        st.session_state["err_pick"] = shown[0]
    rows = matching.tolist()
    position = rows.index(st.session_state["err_pick"])
    n1, n2, n3 = st.columns([1.6, 7, 1.6], vertical_alignment="bottom")
    n1.button("◀ Previous", key="rv_prev", on_click=_step, args=(-1,), disabled=position == 0, width="stretch")
    pick = n2.selectbox(f"Explain ({position + 1} of {len(rows)})", shown, key="err_pick", format_func=row_title)
    n3.button("Next ▶", key="rv_next", on_click=_step, args=(1,), disabled=position == len(rows) - 1, width="stretch")
    return int(pick)


# ------------------------------------------------------------------------------------ the form


def _load_form(review: Review | None, causes: Sequence[Cause]) -> None:
    for cause in causes:
        st.session_state[f"rv_c_{cause.key}"] = bool(review and cause.key in review.causes)
    st.session_state["rv_note"] = review.note if review else ""
    st.session_state["rv_suggest"] = review.suggested_label if review else ""


def _save(path: str, draft: Review, causes: Sequence[str], advance: bool) -> None:
    chosen = tuple(c for c in causes if st.session_state.get(f"rv_c_{c}"))
    suggested = st.session_state.get("rv_suggest", "") if LABEL_DOUBTFUL in chosen else ""
    review = Review(draft.key, draft.reviewer, chosen, st.session_state.get("rv_note", ""), suggested or "",
                    draft.image_path, draft.true_class, draft.pred_class)
    try:
        review_store.save_review(path, review)
    except MushcamError as exc:
        st.session_state["rv_message"] = ("error", str(exc))
        return
    st.session_state["rv_message"] = ("success", f"Saved {draft.reviewer}'s review of {draft.image_path}.")
    st.session_state["rv_for"] = None
    if advance:
        _step(1)


def _delete(path: str, key: ReviewKey, reviewer: str, image_path: str) -> None:
    try:
        gone = review_store.delete_review(path, key, reviewer)
    except MushcamError as exc:
        st.session_state["rv_message"] = ("error", str(exc))
        return
    st.session_state["rv_message"] = ("success" if gone else "info",
                                      f"Deleted {reviewer}'s review of {image_path}." if gone else "Nothing to delete.")
    st.session_state["rv_for"] = None


def _new_cause_key(generation: int) -> str:
    """The "New cause" field's key: ``rv_new_cause``, then a fresh key after each added cause.

    The browser keeps what was typed in a field across reruns even when its state is cleared, so
    a fresh key is what empties it.
    """
    return "rv_new_cause" if generation == 0 else f"rv_new_cause_{generation}"


def _add_cause(path: str) -> None:
    generation = st.session_state.get(CAUSE_POPOVER_KEY, 0)
    try:
        cause = review_store.add_cause(path, st.session_state.get(_new_cause_key(generation), ""))
    except MushcamError as exc:
        st.session_state["rv_message"] = ("error", str(exc))
        return
    st.session_state["rv_message"] = ("success", f"Added the cause “{cause.label}”.")
    # close the popover and empty its field: under new keys they are new elements, drawn closed and empty
    # (the browser keeps an open popover open, and typed text, across reruns even when their state is reset)
    st.session_state[CAUSE_POPOVER_KEY] = generation + 1
    st.session_state["rv_for"] = None


def panel(path: str, run: RunRecord, table: RunTable, pick: int, reviewer: str, causes: Sequence[Cause],
          index: ReviewIndex, duplicates: dict[str, tuple[NearDuplicate, ...]]) -> None:
    """The review form for the chosen error, then every review of this error and of this photo elsewhere."""
    rows, names = table.rows, run.class_names
    key = key_of(run, table, pick)
    image_path = rows.image_paths[pick]
    for mark in [m for m in duplicates.get(key.image_sha256, ()) if m.other_split != m.split][:3]:
        st.warning(markdown_text(f"Near-duplicate in {mark.other_split}: {mark.other_path} ({mark.distance} bits): "
                                 "a twin in training flatters the test score."))
    found = index.of(key)
    mine = next((r for r in found if r.reviewer == reviewer), None)
    if st.session_state.get("rv_for") != (key, reviewer, len(causes)):
        _load_form(mine, causes)
        st.session_state["rv_for"] = (key, reviewer, len(causes))
    st.markdown("**Your review**" + (" (saved)" if mine else ""))
    if not reviewer:
        st.info("Set your reviewer name in the sidebar to review errors.")
    draft = Review(key, reviewer, (), image_path=image_path, true_class=names[int(rows.true_idx[pick])],
                   pred_class=names[int(rows.pred_idx[pick])])
    keys = [c.key for c in causes]
    with st.form("rv_form", border=False):
        for cause in causes:
            st.checkbox(markdown_text(cause.label), key=f"rv_c_{cause.key}")
        st.selectbox("Suggested label (if the label is doubtful)", ["", *names], key="rv_suggest",
                     format_func=lambda v: v or "(none)")
        st.text_area("Note", key="rv_note", height=80, max_chars=MAX_NOTE,
                     placeholder=f"Plain text, at most {MAX_NOTE:,} characters; shown exactly as typed")
        s1, s2 = st.columns(2)
        s1.form_submit_button("Save", key="rv_save", on_click=_save, args=(path, draft, keys, False),
                              disabled=not reviewer, width="stretch")
        s2.form_submit_button("Save & next", key="rv_save_next", on_click=_save, args=(path, draft, keys, True),
                              disabled=not reviewer, type="primary", width="stretch")
    d1, d2 = st.columns(2)
    d1.button("Delete my review", key="rv_delete", on_click=_delete, args=(path, key, reviewer, image_path),
              disabled=mine is None, width="stretch")
    generation = st.session_state.get(CAUSE_POPOVER_KEY, 0)
    with d2.popover("Add a cause", width="stretch", key=f"rv_cause_popover_{generation}"):
        st.text_input("New cause", key=_new_cause_key(generation), max_chars=cause_list.MAX_LABEL)
        st.button("Add", key="rv_add_cause", on_click=_add_cause, args=(path,))
    show_reviews(found, index.of_image(key.image_sha256), key, causes)


def show_reviews(found: Sequence[Review], same_photo: Sequence[Review], key: ReviewKey,
                 causes: Sequence[Cause]) -> None:
    labels_ = cause_list.labels_of(causes)

    def line(r: Review) -> str:  # every stored text escaped: a note shows as typed, never as Markdown or HTML
        causes_ = ", ".join(labels_.get(c, c) for c in r.causes) or "(no cause)"
        text = f"**{markdown_text(r.reviewer)}**: {markdown_text(causes_)}"
        text += f" → suggests **{markdown_text(r.suggested_label)}**" if r.suggested_label else ""
        return text + (f" — {markdown_text(r.note)}" if r.note else "")

    if found:
        st.markdown(f"**Reviews of this error** ({len(found)})")
        st.markdown("\n".join(f"- {line(r)}" for r in found))
    elsewhere = [r for r in same_photo if r.key != key]
    if elsewhere:
        st.markdown("**This photo under other models**")
        st.markdown("\n".join(f"- {markdown_text(state.display_name(r.key.model))} ({r.key.checkpoint_sha256[:8]}): "
                              f"{line(r)}" for r in elsewhere))


# ---------------------------------------------------------------------------------- downloads


def downloads(ctx: state.AppContext, contents: StoreContents, index: ReviewIndex, causes: Sequence[Cause],
              duplicates: dict[str, tuple[NearDuplicate, ...]], data_root: str) -> None:
    """The review report (self-contained HTML, Grad-CAM figures included) and the label-fix CSV."""

    def html() -> bytes:
        source = None
        if ctx.manifest is not None and not ctx.demo:
            source = FigureSource(ctx.manifest, data_root or None, CamCache(default_cache_dir()),
                                  load=lambda _manifest, name: state.get_model(ctx, name))
        try:
            built = report.build_report(contents, index, causes, source.figure if source else None,
                                        duplicates=duplicates)
        except MushcamError as exc:
            return f"<!doctype html><p>The report could not be written: {exc}</p>".encode()
        return built.html().encode("utf-8")

    stamp = f"{dt.datetime.now():%Y%m%d_%H%M%S}"
    c1, c2 = st.columns(2)
    c1.download_button("Download review report (HTML)", data=html, file_name=f"review_report_{stamp}.html",
                       mime="text/html", on_click="ignore", key="rv_report", width="stretch")
    fixes = labels.label_fixes(index.reviews)
    c2.download_button(f"Download labels to fix (CSV, {len(fixes)})", data=labels.to_csv(fixes),
                       file_name=f"labels_to_fix_{stamp}.csv", mime="text/csv", on_click="ignore", key="rv_labels",
                       width="stretch")
