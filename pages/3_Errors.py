"""Errors page: browse a model's test-set mistakes (dangerous ones first), see each one explained, review it."""

import streamlit as st

st.set_page_config(page_title="Errors · MushCAM", page_icon="🍄", layout="wide")

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
state.demo_banner(ctx)

from mushcam import errors  # noqa: E402
from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.review.causes import labels_of  # noqa: E402
from mushcam.text import markdown_text  # noqa: E402
from ui import errors_explain as explain  # noqa: E402
from ui import errors_filters as filters  # noqa: E402
from ui import errors_support as support  # noqa: E402
from ui import review_panel as review  # noqa: E402
from ui import store_picker  # noqa: E402

st.title("Errors")
st.caption(
    "Every test-set prediction, stored by `python -m mushcam evaluate`. Filter the mistakes, pick one, see where "
    "the model looked for the class it chose and where it would have seen the true one, and record why it failed."
)

# --- inputs: where the store and the images are, and who is reviewing ------------------
store_path = store_picker.store_path_input()
data_root = support.data_folder_input()
reviewer = review.reviewer_input()
try:
    contents, version = support.load_contents(store_path)
    review_data = review.review_data(str(store_path), version)
except MushcamError as exc:
    (st.info if "no results store" in str(exc) else st.error)(str(exc))
    st.stop()
if not contents.runs:
    st.info(f"{store_path} holds no runs yet.")
    st.stop()
path_key = str(store_path)
reviews, causes, duplicates = review_data.reviews, review_data.causes, review_data.duplicates
review.damaged_rows(review_data)

# --- dangerous errors of every model, on top ----------------------------------------------
support.dangerous_summary(path_key, version, contents)

# --- filters -> the matching rows ---------------------------------------------------------
run, flt = filters.filter_widgets(contents)
status, tagged = review.status_filters(causes)
table = support.table_for(path_key, version, run.run_id)
matching = errors.matching_rows(table, flt)
matching = review.filter_rows(matching, run, table, reviews, status, tagged, reviewer)
review.progress(run, table, reviews, reviewer)
review.follow_pick(matching, int(st.session_state["err_page_size"]))

# --- list and confusion matrix ------------------------------------------------------------
extra = review.list_columns(run, table, reviews, duplicates, labels_of(causes))
listed = filters.list_and_matrix(path_key, version, contents, run, table, flt, matching, extra)
review.downloads(ctx, contents, reviews, causes, duplicates, data_root)
if not listed.shown:
    st.info("No prediction matches these filters.")
    st.stop()

# --- the chosen error: explained (left) and reviewed (right) ------------------------------
st.divider()
rows, names = table.rows, run.class_names


def row_title(i: int) -> str:
    return (f"{rows.image_paths[i]} — true {names[int(rows.true_idx[i])]}, predicted "
            f"{names[int(rows.pred_idx[i])]} ({rows.confidence[i]:.1%})")


pick = review.navigation(matching, listed.shown, row_title)
true_idx = int(rows.true_idx[pick])
st.markdown(f"#### {markdown_text(rows.image_paths[pick])} · true class **{markdown_text(names[true_idx])}** "
            f"({run.toxicities[true_idx]})")
left, right = st.columns([5, 3])
with left:
    explain.show(ctx, path_key, version, contents, run, pick, data_root)
with right:
    review.panel(path_key, run, table, pick, reviewer, causes, reviews, duplicates)
if data_root and st.toggle("Mark the mushroom: draw its box", key="err_draw_box",
                           help="The box is stored in the results store as this photo's object region (source "
                           "'drawn'); the Patterns page's focus numbers (pointing game) use it."):
    from ui.patterns_support import region_editor

    region_editor(data_root, rows.image_paths[pick], rows.image_sha256[pick], store_path, key="errors_draw")
