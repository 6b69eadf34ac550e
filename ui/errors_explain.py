"""Errors page: the chosen prediction explained, as every evaluated model saw it.

Consistency checks first (is the checkpoint folder the evaluated one? has the checkpoint,
the manifest's input or the image changed since?), then the predicted-class and
true-class Grad-CAM (:func:`mushcam.review.figures.error_panels`) from the shared caches,
then, on request, the look-alike training photos (:mod:`ui.lookalike_support`).
Images are read only under the image folder the user chose.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from mushcam import errors
from mushcam.cam import DEFAULT_METHOD, METHOD_LABELS, METHODS, get_method
from mushcam.exceptions import MushcamError
from mushcam.explain import top_k
from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, to_png
from mushcam.review.figures import Panels, error_panels, model_name
from mushcam.store import RunRecord, StoreContents
from ui import errors_support as support
from ui import state
from ui.charts import top_k_bar
from ui.lookalike_support import lookalike_strip


def why_no_maps(ctx: state.AppContext, run: RunRecord) -> str:
    """Why this run's maps cannot be drawn with the current checkpoint folder ('' when they can)."""
    name = model_name(run)
    if ctx.manifest is None:
        return f"Grad-CAM needs the checkpoints: {ctx.manifest_error}"
    waiting = next((s for s in ctx.statuses if s.name == name and s.status == "needs consent"), None)
    if waiting is not None:  # its code is not trusted yet: Home asks
        return f"{ctx.label(name)} {waiting.reason}"
    if name not in ctx.available:
        return (f"No checkpoint for {ctx.label(name)} in the checkpoint folder {ctx.folder}; it was "
                f"evaluated from {run.checkpoint_path}. Choose that folder in the sidebar.")
    if ctx.manifest.class_names != run.class_names:
        return ("The checkpoint folder's classes differ from the classes of this run "
                f"({', '.join(run.class_names)}), so its class indices mean something else. Choose the checkpoint "
                "folder that was evaluated.")
    return ""


def drift_warnings(ctx: state.AppContext, run: RunRecord) -> list[str]:
    """What changed since the run was evaluated: the checkpoint file, the manifest's input settings."""
    assert ctx.manifest is not None
    name = model_name(run)
    found = []
    if not ctx.demo:
        now_sha = state.checkpoint_sha256(state.model_identity(ctx, name))
        if now_sha != run.checkpoint_sha256:
            found.append(f"The checkpoint {ctx.manifest.checkpoint_path(name).name} has changed since this run was "
                         f"evaluated (stored {run.checkpoint_sha256[:12]}, now {now_sha[:12]}): the maps come from "
                         "the current file and may not explain the stored prediction. Re-run `python -m mushcam "
                         "evaluate`.")
    if ctx.manifest.to_dict()["input"] != run.manifest.get("input"):
        found.append("The manifest's input settings (size, resize, normalisation) differ from those used in the "
                     "evaluation; the maps use the current ones.")
    return found


def how_each_model_saw_it(path: str, version: str, contents: StoreContents, run: RunRecord,
                          pick: int) -> list[tuple[RunRecord, int]]:
    """A table row per model that saw this image; returns (run, row index) for each."""
    image_path = contents.predictions[run.run_id].image_paths[pick]
    views = [(run, pick)] + [(o.run, o.index) for o in errors.same_image_elsewhere(contents, run, image_path)]
    seen = []
    for other, index in views:
        rows = contents.predictions[other.run_id]
        names = other.class_names
        seen.append({
            "model": support.label(other, contents),
            "predicted": names[int(rows.pred_idx[index])],
            "confidence": round(float(rows.confidence[index]), 4),
            "p(true class)": round(float(rows.probabilities[index, int(rows.true_idx[index])]), 4),
            "verdict": errors.row_kind_name(support.table_for(path, version, other.run_id), index),
        })
    st.dataframe(support.table_data(seen), hide_index=True)
    return views


def show(ctx: state.AppContext, path: str, version: str, contents: StoreContents, run: RunRecord, pick: int,
         data_root: str) -> None:
    """Model choice, display controls, the maps and the stored top-5 of the chosen prediction."""
    image_path = contents.predictions[run.run_id].image_paths[pick]
    views = how_each_model_saw_it(path, version, contents, run, pick)
    view_ids = [v.run_id for v, _ in views]
    chosen_elsewhere = st.session_state.get("err_view_for") != (run.run_id, image_path)
    if chosen_elsewhere or st.session_state.get("err_view") not in view_ids:
        st.session_state["err_view"] = run.run_id
        st.session_state["err_view_for"] = (run.run_id, image_path)
    runs = {r.run_id: r for r in contents.runs}
    view_id = st.radio("Grad-CAM from", view_ids, key="err_view", horizontal=True,
                       format_func=lambda r: support.label(runs[r], contents),
                       help="The same image as each evaluated model saw it.")
    view_run, index = next((v, i) for v, i in views if v.run_id == view_id)
    c1, c2, c3 = st.columns([2, 2, 3])
    method = c1.selectbox("CAM method", METHODS, format_func=METHOD_LABELS.get, key="err_method")
    alpha = c1.slider("Overlay opacity", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key="err_alpha")
    colormap = c2.selectbox("Colormap", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="err_colormap")
    shared = c3.toggle("Same intensity scale for both maps", value=True, key="err_shared",
                       help="On: both maps are divided by the larger map's maximum, so weak evidence for the true "
                       "class stays faint next to strong evidence for the predicted one. Off: each map is "
                       "stretched to its own maximum.")
    try:
        maps(ctx, view_run, contents, index, data_root, alpha, colormap, shared, method)
    except MushcamError as exc:
        st.error(str(exc))
    rows = contents.predictions[view_run.run_id]
    names = view_run.class_names
    st.markdown("**Top-5 probabilities** (as stored)")
    top = top_k(torch.from_numpy(np.asarray(rows.probabilities[index], dtype=np.float32)), names, 5)
    st.plotly_chart(top_k_bar(top, [view_run.toxicities[names.index(n)] for n, _ in top],
                              true_name=names[int(rows.true_idx[index])]),
                    key="err_topk", config={"displayModeBar": False})


def maps(ctx: state.AppContext, run: RunRecord, contents: StoreContents, index: int, data_root: str, alpha: float,
         colormap: str, shared: bool, method: str = DEFAULT_METHOD) -> None:
    """Original, predicted-class and true-class maps of one stored prediction; raises MushcamError on input trouble."""
    problem = why_no_maps(ctx, run)
    if problem:
        raise MushcamError(problem)
    assert ctx.manifest is not None
    for warning in drift_warnings(ctx, run):
        st.warning(warning)
    rows = contents.predictions[run.run_id]
    image_path = rows.image_paths[index]
    if not data_root:
        support.use_recorded_folder(run.data_root)
        return
    picture = support.load_error_image(data_root, image_path)
    if picture.sha256 != rows.image_sha256[index]:
        st.warning("This image file has changed since it was evaluated (its SHA-256 differs).")
    name = model_name(run)
    loaded = state.get_loaded(ctx, name)
    model = loaded.model
    layer = state.cam_layer(ctx, name, loaded)
    identity = state.model_identity(ctx, name)
    pred, true = int(rows.pred_idx[index]), int(rows.true_idx[index])
    with st.spinner(f"{METHOD_LABELS[method]}…"):
        predicted = state.cached_explanation(model, picture.image, ctx.manifest, identity, picture.sha256, layer, pred,
                                             method)
        truth = state.cached_explanation(model, picture.image, ctx.manifest, identity, picture.sha256, layer, true,
                                         method)
        contrast = None
        if pred != true and get_method(method).can_contrast:  # what pushed the prediction above the true class
            contrast = state.cached_explanation(model, picture.image, ctx.manifest, identity, picture.sha256, layer,
                                                pred, method, true)
    stored = rows.probabilities[index]
    live = float(predicted.probabilities[pred])
    if abs(live - float(stored[pred])) > 1e-3:
        st.warning(f"The current model gives {run.class_names[pred]} {live:.1%}; "
                   f"the store says {float(stored[pred]):.1%}.")
    panels = error_panels(picture.display, predicted, truth, ctx.manifest.input, run.class_names, run.toxicities,
                          true, stored, alpha, colormap, shared, contrast)
    if pred == true:
        st.caption("This prediction is right: one map.")
    scale_note = "one scale for both maps" if shared else "each map scaled to its own maximum"
    draw_panels(panels, f"{ctx.label(name)}, layer `{layer}`, {scale_note}; stored probabilities.")
    st.download_button(
        "Download figure (PNG)",
        data=lambda: to_png(panels.combined(f"{ctx.label(name)}: {image_path}")),
        file_name=f"gradcam_error_{dt.datetime.now():%Y%m%d_%H%M%S}.png", mime="image/png", on_click="ignore",
        key="err_png",
    )
    lookalikes(ctx, name, picture, data_root, run.class_names[true], alpha, colormap)


def draw_panels(panels: Panels, note: str) -> None:
    """Original, then the predicted- and true-class maps side by side at half width; "Larger" shows each at full width.

    Three panels in a row of the explanation column were ~190 px wide on a 1440 px screen. The
    order (original, predicted, true) is kept in both layouts.
    """
    items = [(image, f"{title} · {caption}")
             for image, title, caption in zip(panels.images, panels.titles, panels.captions, strict=True)]
    large = st.toggle("Larger maps", key="err_large", help="One map per row at the full width of this column.")
    if large:
        for image, caption in items:
            st.image(image, caption=caption, width="stretch")
        st.caption(note)
        return
    first, beside = st.columns(2)
    first.image(items[0][0], caption=items[0][1], width="stretch")
    beside.caption(note)
    # the maps of the chosen class and of the true one side by side (a right prediction has one map),
    # then the contrast of the two ("what pushed the prediction above the true class")
    for start in range(1, len(items), 2):
        for column, (image, caption) in zip(st.columns(2), items[start:start + 2], strict=False):
            column.image(image, caption=caption, width="stretch")


def default_training_folder(data_root: str) -> str:
    """The ``train`` folder beside the test folder (``.../test`` -> ``.../train``), '' when there is none."""
    if not data_root:
        return ""
    sibling = Path(data_root).expanduser().parent / "train"
    return str(sibling) if sibling.is_dir() else ""


def lookalikes(ctx: state.AppContext, name: str, picture: state.LoadedImage, data_root: str, true_name: str,
               alpha: float, colormap: str) -> None:
    """The look-alike strip, behind a toggle: its first build embeds every training photo (about a minute)."""
    if not st.toggle("Show look-alike training photos", key="err_lookalike",
                     help="The nearest training photos of the predicted and of the true class, by the model's "
                     "pooled features. The first time, every training photo is embedded (about a minute); "
                     "the embeddings are then kept on disk."):
        return
    if st.session_state.get("err_train_for") != data_root:  # a new test folder: propose its sibling again
        st.session_state["err_train"] = default_training_folder(data_root)
        st.session_state["err_train_for"] = data_root
    folder = st.text_input("Training photos (for look-alikes)", key="err_train",
                           help="The training folder (<Class>/<image>, or a folder holding train/<Class>/).").strip()
    if not folder:
        st.info("Enter the training folder to see look-alike photos.")
        return
    lookalike_strip(ctx, name, picture.image, picture.sha256, folder, true=true_name, alpha=alpha, colormap=colormap)
