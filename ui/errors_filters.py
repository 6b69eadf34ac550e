"""Errors page: the filter widgets, their callbacks, and the list beside the confusion matrix.

Widget state lives in ``st.session_state`` under ``err_*`` keys (the tests drive them by
key). Callbacks run before the script: a confusion-matrix click or a chosen cell sets the
true/predicted class filters; any filter change goes back to page 1; a row chosen in the
table becomes the explained one (``err_pick``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

from mushcam import errors
from mushcam.errors import ErrorFilter, RunTable
from mushcam.store import RunRecord, StoreContents
from ui import errors_support as support

ANY = "(any)"
ALL_PAIRS = "(none: all pairs)"
PAGE_SIZES = (10, 25, 50, 100)


def reset_page() -> None:
    st.session_state["err_page"] = 1


def choose_cell(true_name: str, pred_name: str) -> None:
    """A confusion-matrix cell was chosen: list exactly that (true, predicted) pair."""
    st.session_state["err_true"] = true_name
    st.session_state["err_pred"] = pred_name
    st.session_state["err_kind"] = "all"
    reset_page()


def on_cell_select() -> None:
    value = st.session_state.get("err_cell")
    if value:
        t, p = value.split("\u2192")
        choose_cell(t.strip(), p.strip())
    else:
        st.session_state["err_true"] = ANY
        st.session_state["err_pred"] = ANY
        reset_page()


def on_matrix_click() -> None:
    selection = st.session_state.get("err_matrix")
    points = (selection or {}).get("selection", {}).get("points", []) if selection else []
    if points:
        point = points[0]
        if point.get("x") is not None and point.get("y") is not None:
            choose_cell(str(point["y"]), str(point["x"]))


def on_table_select() -> None:
    selection = st.session_state.get("err_table")
    rows = (selection or {}).get("selection", {}).get("rows", []) if selection else []
    shown = st.session_state.get("err_page_rows", [])
    if rows and rows[0] < len(shown):
        st.session_state["err_pick"] = shown[rows[0]]


def filter_widgets(contents: StoreContents) -> tuple[RunRecord, ErrorFilter]:
    """Model, true/predicted class, error kind, confidence range, order: the run and the filter asked for."""
    runs = {r.run_id: r for r in contents.runs}
    for key, value in (("err_kind", "errors"), ("err_order", "confident_first"), ("err_conf", (0.0, 1.0)),
                       ("err_page_size", 25), ("err_page", 1)):
        st.session_state.setdefault(key, value)
    if st.session_state.get("err_run") not in runs:
        st.session_state["err_run"] = contents.runs[0].run_id
    f1, f2, f3, f4 = st.columns([2, 2, 2, 3])
    run = runs[f1.selectbox("Model", list(runs), key="err_run", format_func=lambda r: support.label(runs[r], contents),
                            on_change=reset_page)]
    names = run.class_names
    for key in ("err_true", "err_pred"):
        if st.session_state.get(key) not in [ANY, *names]:
            st.session_state[key] = ANY
    true_name = f2.selectbox("True class", [ANY, *names], key="err_true", on_change=reset_page)
    pred_name = f3.selectbox("Predicted class", [ANY, *names], key="err_pred", on_change=reset_page)
    kind = f4.selectbox("Error kind", errors.KINDS, key="err_kind", format_func=errors.KIND_LABELS.get,
                        on_change=reset_page)
    g1, g2, g3 = st.columns([4, 2, 1])
    confidence = g1.slider("Confidence of the prediction", 0.0, 1.0, step=0.01, key="err_conf", on_change=reset_page,
                           help="Keep rows whose confidence (probability of the predicted class) lies in this range.")
    order = g2.selectbox("Sort", errors.ORDERS, key="err_order", format_func=errors.ORDER_LABELS.get,
                         on_change=reset_page)
    g3.selectbox("Per page", PAGE_SIZES, key="err_page_size", on_change=reset_page)
    return run, ErrorFilter(
        confidence=(float(confidence[0]), float(confidence[1])),
        true_idx=None if true_name == ANY else names.index(true_name),
        pred_idx=None if pred_name == ANY else names.index(pred_name),
        kind=kind, order=order,
    )


@dataclass(frozen=True)
class Listed:
    """What the list shows: the page's row indices (``shown``) out of ``matching``."""

    matching: np.ndarray
    shown: list[int]


def list_and_matrix(path: str, version: str, contents: StoreContents, run: RunRecord, table: RunTable,
                    flt: ErrorFilter, matching: np.ndarray,
                    extra_columns: Callable[[list[int]], dict[str, list[str]]]) -> Listed:
    """The page of matching rows (left) and the clickable confusion matrix (right).

    ``extra_columns``: more columns for the listed rows (the review status and near-duplicate
    marks), asked for the shown row indices only.
    """
    names = run.class_names
    metrics = support.metrics_for(path, version, run.run_id)
    left, right = st.columns([3, 2])
    with right:
        st.markdown(f"**Confusion matrix** · {support.label(run, contents)}")
        selected = (flt.true_idx, flt.pred_idx) if flt.true_idx is not None and flt.pred_idx is not None else None
        st.plotly_chart(support.cached_confusion_figure(path, version, run.run_id, selected), key="err_matrix",
                        on_select=on_matrix_click, selection_mode="points", config={"displayModeBar": False})
        cells = errors.confusion_cells(metrics.confusion, names)
        options = [None] + [f"{names[i]} \u2192 {names[j]}" for i, j, _ in cells]
        counts = {f"{names[i]} \u2192 {names[j]}": c for i, j, c in cells}
        current = f"{names[flt.true_idx]} \u2192 {names[flt.pred_idx]}" if selected else None
        st.session_state["err_cell"] = current if current in options else None
        # the None option is shown by the placeholder (a selectbox whose value is None shows it)
        st.selectbox("Or choose a cell", options, key="err_cell", on_change=on_cell_select, placeholder=ALL_PAIRS,
                     format_func=lambda v: ALL_PAIRS if v is None else f"{v} ({counts[v]})",
                     help="Rows: true class; columns: predicted class. Red outline: poisonous predicted as edible.")
    with left:
        page_size = int(st.session_state["err_page_size"])
        page_count = errors.page_count(len(matching), page_size)
        if int(st.session_state.get("err_page", 1)) > page_count:
            st.session_state["err_page"] = page_count
        st.markdown(f"**{len(matching)} matching rows** of {len(table)} predictions by {support.label(run, contents)}")
        p1, p2 = st.columns([1, 3])
        number = int(p1.number_input("Page", min_value=1, max_value=page_count, step=1, key="err_page"))
        page = errors.page_of(matching, number, page_size)
        first = (page.number - 1) * page_size + 1
        p2.caption(f"page {page.number} of {page.count}; rows {first if page.total else 0}"
                   f"–{first - 1 + len(page.rows)}")
        shown = [int(i) for i in page.rows]
        st.session_state["err_page_rows"] = shown
        data = errors.display_rows(table, shown, first)
        data.update(extra_columns(shown))
        st.dataframe(support.table_data(data), hide_index=True, key="err_table", on_select=on_table_select,
                     selection_mode="single-row", column_order=list(support.list_columns(data)),
                     column_config=support.list_columns(data))
    skipped = contents.skipped.get(run.run_id, ())
    if skipped:
        with st.expander(f"{len(skipped)} files were not evaluated"):
            st.dataframe(support.table_data({"file": [s.path for s in skipped], "reason": [s.reason for s in skipped]}),
                         hide_index=True)
    return Listed(matching, shown)
