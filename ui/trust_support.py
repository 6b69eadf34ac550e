"""Streamlit glue for the Trust page: where the store is, cached reads, figures, opening on Explain.

The trust tables are read once per store-file version (``st.cache_resource``: shared and
treated as read-only), through the one reader that checks every row. Photos are read only
under the folder the user gives (:mod:`mushcam.trust.paths`). The sanity check of one
photo says its cost before it starts, shows a progress bar while it runs, and is kept
for the session per (model identity, image, method). Figures are plain Plotly.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from mushcam.cam.cost import estimate_cost, probe_layer
from mushcam.data import preprocess, read_bytes
from mushcam.exceptions import MushcamError
from mushcam.store import StoreError
from mushcam.trust import paths as trust_paths
from mushcam.trust import report as trust_report
from mushcam.trust import store as trust_store
from mushcam.trust.sanity import SanityResult, method_explainer, randomisation_blocks, sanity_check
from ui import errors_support, state
from ui.table_fit import fitted

# Session keys the Explain page reads (ui/explain_support.py): a photo opened from another page.
EXPLAIN_FOLDER_KEY = "explain_folder"
EXPLAIN_PAGE = "pages/1_Explain.py"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@st.cache_resource(show_spinner="Reading the trust results…", max_entries=4)
def _contents(path: str, version: str) -> trust_store.TrustContents:
    return trust_store.load_trust(path)


def load_contents(path: Path) -> tuple[trust_store.TrustContents, str]:
    """The store's trust runs (cached per file version) and that version; StoreError if absent."""
    if not path.is_file():
        raise StoreError(
            f"no results store at {path}; create one with: python -m mushcam faithfulness --data TEST "
            f"--methods gradcam --out {path}"
        )
    version = state.file_version(path)
    return _contents(str(path), version), version


@st.cache_resource(max_entries=16)
def rows_for(path: str, version: str) -> list[trust_report.FaithfulnessRow]:
    """Table rows with bootstrap intervals (computed once per store version)."""
    return trust_report.faithfulness_rows(_contents(path, version).faithfulness)


@st.cache_resource(max_entries=64)
def curves_for(path: str, version: str, frun_id: int) -> trust_store.MeanCurves:
    return trust_store.mean_curves(path, frun_id)


def run_label(run: trust_store.FaithfulnessRun | trust_store.SanityRun) -> str:
    return f"{trust_report.model_label(run.key.model)} · {run.key.method}"


def labelled_runs(runs: tuple[trust_store.FaithfulnessRun, ...]) -> dict[str, trust_store.FaithfulnessRun]:
    """Each run under a unique label: 'ResNet-50 · gradcam', with the baseline (and id) where needed."""
    plain = [run_label(r) for r in runs]
    out: dict[str, trust_store.FaithfulnessRun] = {}
    for label, run in zip(plain, runs, strict=True):
        if plain.count(label) > 1:
            label = f"{label} · {run.settings.get('baseline')}"
        if label in out:
            label = f"{label} · #{run.frun_id}"
        out[label] = run
    return out


def table(rows: list[trust_report.FaithfulnessRow]) -> dict[str, list[object]]:
    """The per model x method table as columns (the interval as text beside each mean)."""
    return {
        "model": [trust_report.model_label(r.run.key.model) for r in rows],
        "method": [r.run.key.method for r in rows],
        "baseline": [str(r.run.settings.get("baseline")) for r in rows],
        "images": [r.run.n_images for r in rows],
        "deletion AUC ↓": [r.deletion.format() for r in rows],
        "… random map": [round(r.deletion_random.mean, 3) for r in rows],
        "… inverted map": [round(r.deletion_inverted.mean, 3) for r in rows],
        "… gain over random ↑": [r.deletion_gain.format() for r in rows],
        "insertion AUC ↑": [r.insertion.format() for r in rows],
        "… random map ": [round(r.insertion_random.mean, 3) for r in rows],
        "… inverted map ": [round(r.insertion_inverted.mean, 3) for r in rows],
        "… gain over random ↑ ": [r.insertion_gain.format() for r in rows],
        "Average Drop % ↓": [r.average_drop.format(100, 1) for r in rows],
        "Increase % ↑": [r.increase.format(100, 1) for r in rows],
        "ROAD ↑": [r.road.format() for r in rows],
    }


# The table in three tabs: its 15 columns ran to 1,650 px, past the page's 980 (the last five
# hidden, "… ra" cut). Each tab fits at 1440 px with every header whole (ui.table_fit).
TABLE_TABS: dict[str, tuple[str, ...]] = {
    "Deletion": ("model", "method", "baseline", "images", "deletion AUC ↓", "… random map", "… inverted map",
                 "… gain over random ↑"),
    "Insertion": ("model", "method", "images", "insertion AUC ↑", "… random map ", "… inverted map ",
                  "… gain over random ↑ "),
    "Average Drop · Increase · ROAD": ("model", "method", "images", "Average Drop % ↓", "Increase % ↑", "ROAD ↑"),
}
TABLE_HELP = {
    "deletion AUC ↓": "area under the probability as the most relevant pixels are removed first; mean [95% interval]",
    "insertion AUC ↑": "area under the probability as the most relevant pixels are restored first; mean [95% "
                       "interval]",
    "… random map": "the same curve for a random map on the same grid: the floor",
    "… inverted map": "the same curve for the map turned upside down: the ceiling",
    "… gain over random ↑": "random map's deletion AUC minus the map's: above 0 beats chance",
    "… random map ": "the same curve for a random map on the same grid: the floor",
    "… inverted map ": "the same curve for the map turned upside down",
    "… gain over random ↑ ": "the map's insertion AUC minus the random map's: above 0 beats chance",
    "Average Drop % ↓": "how much of the class's probability is lost when only what the map marks is kept",
    "Increase % ↑": "share of images where keeping only what the map marks raises the probability",
    "ROAD ↑": "(least-relevant-first − most-relevant-first) / 2 after noisy linear imputation",
}


def table_tabs(columns: dict[str, list[object]]) -> list[tuple[str, dict[str, list[object]], dict[str, object]]]:
    """:func:`table`'s columns split into the tabs of :data:`TABLE_TABS`: (title, columns, column_config).

    The "… random map" columns are headed "random map" (their tab says of what); widths keep every header whole.
    """
    tabs = []
    for title, keys in TABLE_TABS.items():
        part = {key: columns[key] for key in keys}
        labels = {key: {"label": key.strip().lstrip("… ")} for key in keys if key.startswith("…")}
        tabs.append((title, part, fitted(part, config=labels, helps=TABLE_HELP)))
    return tabs


BELOW_PLOT = {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0, "font": {"size": 11}}


def curves_figure(kind: str, labelled: list[tuple[str, trust_store.MeanCurves]]) -> go.Figure:
    """Mean deletion or insertion curves, one line per run; each run's random-map floor dotted."""
    figure = go.Figure()
    for i, (label, curves) in enumerate(labelled):
        colour = COLOURS[i % len(COLOURS)]
        real = curves.deletion if kind == "deletion" else curves.insertion
        floor = curves.deletion_random if kind == "deletion" else curves.insertion_random
        x = (curves.fractions * 100).round(1).tolist()
        figure.add_trace(go.Scatter(x=x, y=real.tolist(), name=label, mode="lines", line={"color": colour, "width": 3}))
        figure.add_trace(go.Scatter(x=x, y=floor.tolist(), name=f"{label} · random map", mode="lines",
                                    line={"color": colour, "width": 1.5, "dash": "dot"}))
    figure.update_layout(
        title={"text": f"{kind.capitalize()}: probability of the explained class"},
        xaxis_title=f"% of pixels {'removed' if kind == 'deletion' else 'restored'}, most relevant first",
        yaxis_title="probability", yaxis={"rangemode": "tozero"}, height=460,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend=BELOW_PLOT,  # beside the plot it took half the width of a half-width column
    )
    return figure


def sanity_figure(labelled: list[tuple[str, SanityResult]]) -> go.Figure:
    """Mean Spearman (solid) and SSIM (dashed) after each cascade step, one colour per model x method."""
    figure = go.Figure()
    for i, (label, result) in enumerate(labelled):
        colour = COLOURS[i % len(COLOURS)]
        steps = list(range(1, len(result.blocks) + 1))
        names = [f"{s}: {b}" for s, b in zip(steps, result.blocks, strict=True)]
        figure.add_trace(go.Scatter(x=steps, y=np.round(result.mean_spearman, 4).tolist(), name=f"{label} · Spearman",
                                    mode="lines+markers", line={"color": colour}, text=names,
                                    hovertemplate="%{text}<br>Spearman %{y:.3f}<extra></extra>"))
        figure.add_trace(go.Scatter(x=steps, y=np.round(result.mean_ssim, 4).tolist(), name=f"{label} · SSIM",
                                    mode="lines", line={"color": colour, "dash": "dash"}, text=names,
                                    hovertemplate="%{text}<br>SSIM %{y:.3f}<extra></extra>"))
    figure.add_hline(y=0.5, line={"color": "grey", "dash": "dot"}, annotation_text="flag line (0.5)")
    figure.update_layout(
        xaxis_title="blocks randomised, from the logits down", yaxis_title="similarity to the trained model's map",
        yaxis={"range": [-1, 1.05]}, height=440, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend=BELOW_PLOT,
    )
    return figure


def folder_input() -> str:
    """The sidebar's image-folder field, shared with the Errors page: the only folder photos are read from."""
    return errors_support.data_folder_input()


def photo_folder(chosen: str, recorded: str) -> Path | None:
    """The folder the page reads a run's photos from, or None after one box saying why none is read.

    The user's folder (``chosen``) when it is acceptable; when none is chosen yet, an offer to use
    the folder the store records (unless that is refused: ``/``, a missing folder). Never the
    recorded folder without the user's click: a store is a file anyone can hand over.
    """
    if not chosen:
        try:
            trust_paths.data_folder(recorded, "the folder this store records")
        except MushcamError as exc:
            st.error(f"{exc}. Type the test folder in the sidebar's *Image folder* field to see the photos.",
                     icon="🚫")
            return None
        errors_support.use_recorded_folder(recorded)
        return None
    try:
        return trust_paths.data_folder(chosen)
    except MushcamError as exc:
        st.error(str(exc), icon="🚫")
        return None


def load_image(folder: Path, relpath: str) -> state.LoadedImage:
    """A stored photo, read only under the user's folder (:func:`mushcam.trust.paths.run_photo`)."""
    path = trust_paths.run_photo(folder, relpath)
    return state.load_uploaded(path.name, read_bytes(path))


def offered_photos(folder: Path | None, relpaths: tuple[str, ...]) -> list[str]:
    """The stored photos that lie under the user's folder (those outside are not offered at all)."""
    if folder is None:
        return []
    offered = []
    for relpath in relpaths:
        try:
            trust_paths.run_photo(folder, relpath)
        except MushcamError:
            continue
        offered.append(relpath)
    return offered


def photo_cards(ctx: state.AppContext, run: trust_store.FaithfulnessRun, worst: list[tuple[str, float, float]],
                folder: Path | None) -> None:
    """The least faithful photos in cards; the ones that cannot be shown are named in one warning box."""
    failed: list[str] = []
    columns = st.columns(3)
    for i, (relpath, deletion, insertion) in enumerate(worst):
        with columns[i % 3].container(border=True):
            shown = False
            if folder is not None:
                try:
                    st.image(load_image(folder, relpath).display, width="stretch", output_format="JPEG")
                    shown = True
                except MushcamError as exc:
                    failed.append(f"`{relpath}`: {exc}")
            st.markdown(f"`{relpath}`  \ndeletion AUC **{deletion:.3f}** · insertion AUC **{insertion:.3f}**")
            if st.button("Open on Explain", key=f"open_{run.frun_id}_{i}", icon="🔎",
                         disabled=not shown or run.key.model not in ctx.available):
                open_on_explain(str(folder), relpath, run.key.model)
    if failed:
        st.warning(f"{len(failed)} of these photos cannot be shown: " + "; ".join(failed[:3])
                   + (f"; ... {len(failed) - 3} more" if len(failed) > 3 else ""), icon="📁")


SANITY_RESULTS_KEY = "trust_sanity_results"  # this session's checks: (identity, image, method) -> result
MAX_KEPT_RESULTS = 8


@st.cache_data(show_spinner=False, max_entries=32)
def sanity_estimate(_ctx: state.AppContext, model: str, identity: state.ModelIdentity, method: str) -> str:
    """What the check of one photo will cost, said before it starts: (blocks + 1) maps x the method's estimate.

    seconds ~ (B + 1) x passes(K) x forward seconds (:func:`mushcam.cam.cost.estimate_cost`,
    probed on a blank input of the manifest's size).
    """
    assert _ctx.manifest is not None
    loaded = state.get_loaded(_ctx, model)
    layer = state.cam_layer(_ctx, model, loaded)
    size = _ctx.manifest.input.size
    cost = estimate_cost(method, probe_layer(loaded.model, torch.zeros(1, 3, size, size), layer))
    maps = len(randomisation_blocks(loaded.model)) + 1
    return (f"Before you start: {maps} maps ({maps - 1} randomisation steps and the trained model's), each about "
            f"{_seconds(cost.seconds)} with {cost.label} ({cost.passes:.0f} forward passes): about "
            f"{_seconds(maps * cost.seconds)} in all on this machine.")


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{value / 60:.1f} min"


def sanity_result(ctx: state.AppContext, model: str, image: state.LoadedImage, method: str,
                  start: bool) -> SanityResult | None:
    """This session's check of one photo: kept from an earlier click, or computed now (``start``) with a
    progress bar (maps done / total, time left); None when it has not been asked for."""
    assert ctx.manifest is not None
    key = (repr(state.model_identity(ctx, model)), image.sha256, method)
    results = st.session_state.setdefault(SANITY_RESULTS_KEY, {})
    if key in results or not start:
        return results.get(key)
    loaded = state.get_loaded(ctx, model)
    layer = state.cam_layer(ctx, model, loaded)  # the manifest's layer, or the one found at load
    inputs = preprocess(image.image, ctx.manifest.input).unsqueeze(0)
    bar = st.progress(0.0, text="Randomising the network block by block…")
    began = time.perf_counter()

    def progress(done: int, total: int) -> None:
        left = (time.perf_counter() - began) / done * (total - done)
        bar.progress(done / total, text=f"Map {done} of {total}: about {_seconds(left)} left")

    result = sanity_check(loaded.model, inputs, method_explainer(layer, method), progress=progress)
    bar.progress(1.0, text=f"Done: {len(result.blocks) + 1} maps in {_seconds(time.perf_counter() - began)}")
    while len(results) >= MAX_KEPT_RESULTS:
        results.pop(next(iter(results)))
    results[key] = result
    return result


def open_on_explain(data_root: str, relpath: str, model: str) -> None:
    """Hand a stored photo (under the user's folder) and model to the Explain page and go there."""
    st.session_state[EXPLAIN_FOLDER_KEY] = data_root
    st.session_state["source"] = "Sample folder"
    st.session_state["sample"] = relpath
    st.session_state["backbone"] = model
    st.switch_page(EXPLAIN_PAGE)
