"""Errors page: browse a model's test-set mistakes (dangerous ones first) and see each one explained."""

import streamlit as st

st.set_page_config(page_title="Errors · MushCAM", page_icon="🍄", layout="wide")

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
state.demo_banner(ctx)

import datetime as dt  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mushcam import errors  # noqa: E402
from mushcam.explain import heat_for_image, top_k  # noqa: E402
from mushcam.metrics import format_rate  # noqa: E402
from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, cam_scale, combine_panels, overlay, to_png  # noqa: E402
from mushcam.store import StoreError  # noqa: E402
from ui import errors_support as support  # noqa: E402
from ui.charts import top_k_bar  # noqa: E402

ANY = "(any)"
PAGE_SIZES = (10, 25, 50, 100)

st.title("Errors")
st.caption(
    "Every test-set prediction, stored by `python -m mushcam evaluate`. Filter the mistakes, pick one, and see "
    "where the model looked for the class it chose and where it would have seen the true one."
)

store_path = support.store_path_input()
try:
    contents, version = support.load_contents(store_path)
except StoreError as exc:
    if "no results store" in str(exc):
        st.info(str(exc))
    else:
        st.error(str(exc))
    st.stop()
if not contents.runs:
    st.info(f"{store_path} holds no runs yet.")
    st.stop()
path_key = str(store_path)
runs = {r.run_id: r for r in contents.runs}

# --- dangerous errors, on top -------------------------------------------------------------
st.subheader("Poisonous predicted as edible")
per_row = min(len(contents.runs), 3)
for start in range(0, len(contents.runs), per_row):
    columns = st.columns(per_row)
    for column, shown_run in zip(columns, contents.runs[start:start + per_row]):
        m = support.metrics_for(path_key, version, shown_run.run_id)
        with column.container(border=True):
            st.metric(
                f"{support.label(shown_run, contents)}: poisonous → edible",
                f"{m.dangerous_count} / {m.poisonous_images}",
                help="Images of a poisonous genus that the model called an edible genus (the dangerous error). "
                "Mixed, inedible and unknown genera count as neither.",
            )
            st.caption(
                f"{'n/a' if np.isnan(m.dangerous_rate) else f'{m.dangerous_rate:.1%}'} of poisonous images · "
                f"edible → poisonous {format_rate(m.benign_count, m.benign_rate, m.edible_images)} · "
                f"accuracy {m.accuracy:.1%} on {m.n_images} images"
            )


# --- filters --------------------------------------------------------------------------
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


st.session_state.setdefault("err_kind", "errors")
st.session_state.setdefault("err_order", "confident_first")
st.session_state.setdefault("err_conf", (0.0, 1.0))
st.session_state.setdefault("err_page_size", 25)
st.session_state.setdefault("err_page", 1)
if st.session_state.get("err_run") not in runs:
    st.session_state["err_run"] = contents.runs[0].run_id

f1, f2, f3, f4 = st.columns([2, 2, 2, 3])
run_id = f1.selectbox("Model", list(runs), key="err_run", format_func=lambda r: support.label(runs[r], contents),
                      on_change=reset_page)
run = runs[run_id]
table = support.table_for(path_key, version, run_id)
metrics = support.metrics_for(path_key, version, run_id)
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
page_size = int(g3.selectbox("Per page", PAGE_SIZES, key="err_page_size", on_change=reset_page))

flt = errors.ErrorFilter(
    confidence=(float(confidence[0]), float(confidence[1])),
    true_idx=None if true_name == ANY else names.index(true_name),
    pred_idx=None if pred_name == ANY else names.index(pred_name),
    kind=kind,
    order=order,
)
matching = errors.matching_rows(table, flt)

# --- list and confusion matrix -----------------------------------------------------------
left, right = st.columns([3, 2])
with right:
    st.markdown(f"**Confusion matrix** · {support.label(run, contents)}")
    selected_cell = (flt.true_idx, flt.pred_idx) if flt.true_idx is not None and flt.pred_idx is not None else None
    st.plotly_chart(support.cached_confusion_figure(path_key, version, run_id, selected_cell), key="err_matrix", on_select=on_matrix_click,
                    selection_mode="points", config={"displayModeBar": False})
    cells = errors.confusion_cells(metrics.confusion, names)
    cell_options = [None] + [f"{names[i]} \u2192 {names[j]}" for i, j, _ in cells]
    counts = {f"{names[i]} \u2192 {names[j]}": c for i, j, c in cells}
    current = f"{true_name} \u2192 {pred_name}" if selected_cell else None
    st.session_state["err_cell"] = current if current in cell_options else None
    st.selectbox("Or choose a cell", cell_options, key="err_cell", on_change=on_cell_select,
                 format_func=lambda v: "(none: all pairs)" if v is None else f"{v} ({counts[v]})",
                 help="Rows: true class; columns: predicted class. Red outline: poisonous predicted as edible.")

with left:
    page_count = errors.page_count(len(matching), page_size)
    if int(st.session_state.get("err_page", 1)) > page_count:
        st.session_state["err_page"] = page_count
    st.markdown(f"**{len(matching)} matching rows** of {len(table)} predictions by {support.label(run, contents)}")
    p1, p2 = st.columns([1, 3])
    number = int(p1.number_input("Page", min_value=1, max_value=page_count, step=1, key="err_page"))
    page = errors.page_of(matching, number, page_size)
    p2.caption(f"page {page.number} of {page.count}; rows {(page.number - 1) * page_size + 1 if page.total else 0}"
               f"–{(page.number - 1) * page_size + len(page.rows)}")
    shown = [int(i) for i in page.rows]
    st.session_state["err_page_rows"] = shown
    st.dataframe(support.table_data(errors.display_rows(table, shown, (page.number - 1) * page_size + 1)),
                 hide_index=True,
                 key="err_table", on_select=on_table_select, selection_mode="single-row",
                 column_config={"image": st.column_config.TextColumn("image", width="medium"),
                                "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0,
                                                                              max_value=1.0, format="%.3f")})

skipped = contents.skipped.get(run_id, ())
if skipped:
    with st.expander(f"{len(skipped)} files were not evaluated"):
        st.dataframe(support.table_data({"file": [s.path for s in skipped], "reason": [s.reason for s in skipped]}),
                     hide_index=True)

if not shown:
    st.info("No prediction matches these filters.")
    st.stop()

# --- the chosen error, explained ---------------------------------------------------------
st.divider()
if st.session_state.get("err_pick") not in shown:
    st.session_state["err_pick"] = shown[0]
rows = table.rows


def row_title(i: int) -> str:
    return (f"{rows.image_paths[i]} — true {names[int(rows.true_idx[i])]}, predicted "
            f"{names[int(rows.pred_idx[i])]} ({rows.confidence[i]:.1%})")


pick = st.selectbox("Explain", shown, key="err_pick", format_func=row_title)
image_path = rows.image_paths[pick]
true_idx = int(rows.true_idx[pick])

# How every model on the same data saw this image; one click shows another model's maps.
views = [(run, pick)] + [(o.run, o.index) for o in errors.same_image_elsewhere(contents, run, image_path)]
view_ids = [v.run_id for v, _ in views]
if st.session_state.get("err_view_for") != (run_id, image_path) or st.session_state.get("err_view") not in view_ids:
    st.session_state["err_view"] = run_id
    st.session_state["err_view_for"] = (run_id, image_path)
st.markdown(f"#### `{image_path}` · true class **{names[true_idx]}** ({run.toxicities[true_idx]})")
seen = []
for other, index in views:
    other_rows = contents.predictions[other.run_id]
    other_table = support.table_for(path_key, version, other.run_id)
    other_names = other.class_names
    seen.append({
        "model": support.label(other, contents),
        "predicted": other_names[int(other_rows.pred_idx[index])],
        "confidence": round(float(other_rows.confidence[index]), 4),
        "p(true class)": round(float(other_rows.probabilities[index, int(other_rows.true_idx[index])]), 4),
        "verdict": errors.row_kind_name(other_table, index),
    })
st.dataframe(support.table_data(seen), hide_index=True)
view_id = st.radio("Grad-CAM from", view_ids, key="err_view", horizontal=True,
                   format_func=lambda r: support.label(runs[r], contents),
                   help="The same image as each evaluated model saw it.")
view_run, view_index = next((v, i) for v, i in views if v.run_id == view_id)
view_rows = contents.predictions[view_id]
view_names = view_run.class_names
view_pred = int(view_rows.pred_idx[view_index])
view_true = int(view_rows.true_idx[view_index])
probabilities = view_rows.probabilities[view_index]

c1, c2, c3 = st.columns([2, 2, 3])
alpha = c1.slider("Overlay opacity", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key="err_alpha")
colormap = c2.selectbox("Colormap", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="err_colormap")
shared = c3.toggle("Same intensity scale for both maps", value=True, key="err_shared",
                   help="On: both maps are divided by the larger map's maximum, so weak evidence for the true "
                   "class stays faint next to strong evidence for the predicted one. Off: each map is "
                   "stretched to its own maximum.")


def explain_view() -> None:
    """Predicted-class and true-class maps of the chosen image, by the chosen model (its manifest name)."""
    backbone = view_run.backbone
    if ctx.manifest is None:
        st.error(f"Grad-CAM needs the checkpoints: {ctx.manifest_error}")
        return
    if backbone not in ctx.available:
        st.error(f"No checkpoint for {view_run.label} in the checkpoint folder {ctx.folder}; it was "
                 f"evaluated from {view_run.checkpoint_path}. Choose that folder in the sidebar.")
        return
    if ctx.manifest.class_names != view_names:
        st.error("The checkpoint folder's classes differ from the classes of this run "
                 f"({', '.join(view_names)}), so its class indices mean something else. Choose the checkpoint "
                 "folder that was evaluated.")
        return
    if not ctx.demo:
        current = ctx.manifest.checkpoint_path(backbone)
        now_sha = state.checkpoint_sha256(state.model_identity(ctx, backbone))
        if now_sha != view_run.checkpoint_sha256:
            st.warning(f"The checkpoint {current.name} has changed since this run was evaluated (stored "
                       f"{view_run.checkpoint_sha256[:12]}, now {now_sha[:12]}): the maps come from the current file "
                       "and may not explain the stored prediction. Re-run `python -m mushcam evaluate`.")
    if ctx.manifest.to_dict()["input"] != view_run.manifest.get("input"):
        st.warning("The manifest's input settings (size, resize, normalisation) differ from those used in the "
                   "evaluation; the maps use the current ones.")
    try:
        picture = support.load_error_image(view_run.data_root, image_path)
    except (ValueError, OSError) as exc:
        st.error(f"Cannot show this image: {exc}")
        return
    if picture.sha256 != view_rows.image_sha256[view_index]:
        st.warning("This image file has changed since it was evaluated (its SHA-256 differs).")
    try:
        loaded = state.get_loaded(ctx, backbone)
    except (ValueError, OSError, RuntimeError) as exc:  # the library's errors (MushcamError is a ValueError)
        st.error(f"{ctx.label(backbone)} cannot be loaded: {exc}")
        return
    model = loaded.model
    layer = state.cam_layer(ctx, backbone, loaded)
    identity = state.model_identity(ctx, backbone)
    with st.spinner("Grad-CAM…"):
        predicted = state.cached_explanation(model, picture.image, ctx.manifest, identity, picture.sha256, layer, view_pred)
        truth = state.cached_explanation(model, picture.image, ctx.manifest, identity, picture.sha256, layer, view_true)
    live = float(predicted.probabilities[view_pred])
    if abs(live - float(probabilities[view_pred])) > 1e-3:
        st.warning(f"The current model gives {view_names[view_pred]} {live:.1%}; the store says "
                   f"{float(probabilities[view_pred]):.1%}.")
    scale = max(cam_scale(predicted.cam), cam_scale(truth.cam)) if shared else None
    display = picture.display
    spec = ctx.manifest.input
    name = ctx.label(backbone)
    panels = [np.asarray(display)]
    labels = ["Original"]
    captions = [f"true: {view_names[view_true]} ({view_run.toxicities[view_true]})"]
    pred_overlay = overlay(display, heat_for_image(predicted, display, spec, scale), alpha, colormap)
    panels.append(pred_overlay)
    labels.append(f"Why {view_names[view_pred]}? ({float(probabilities[view_pred]):.1%})")
    captions.append(f"Grad-CAM for the predicted class {view_names[view_pred]} ({view_run.toxicities[view_pred]})")
    if view_true != view_pred:
        panels.append(overlay(display, heat_for_image(truth, display, spec, scale), alpha, colormap))
        labels.append(f"Where is {view_names[view_true]}? ({float(probabilities[view_true]):.1%})")
        captions.append(f"Grad-CAM for the true class {view_names[view_true]}")
    else:
        st.caption("This prediction is right: one map.")
    columns = st.columns(3)
    for column, panel, title, caption in zip(columns, panels, labels, captions):
        column.image(panel, caption=f"{title} · {caption}", width="stretch")
    scale_note = "one scale for both maps" if shared else "each map scaled to its own maximum"
    st.caption(f"{name}, layer `{layer}`, {scale_note}; stored probabilities.")
    now = dt.datetime.now()
    st.download_button(
        "Download figure (PNG)",
        data=lambda: to_png(combine_panels(panels, labels, f"{name}: {image_path}")),
        file_name=f"gradcam_error_{now:%Y%m%d_%H%M%S}.png", mime="image/png", on_click="ignore", key="err_png",
    )


explain_view()
st.markdown("**Top-5 probabilities** (as stored)")
top_rows = top_k(torch.from_numpy(np.asarray(probabilities, dtype=np.float32)), view_names, 5)
st.plotly_chart(
    top_k_bar(top_rows, [view_run.toxicities[view_names.index(n)] for n, _ in top_rows], true_name=view_names[view_true]),
    key="err_topk", config={"displayModeBar": False},
)
