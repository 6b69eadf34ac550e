"""Streamlit glue for the Trust page: where the store is, cached reads, figures, opening on Explain.

The trust tables are read once per store-file version (``st.cache_resource``: shared and
treated as read-only). The sanity check of one image is cached per (model identity,
image, method). Figures are plain Plotly built from the library's numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mushcam.data import preprocess, read_bytes, resolve_inside
from mushcam.exceptions import MushcamError
from mushcam.store import StoreError
from mushcam.trust import report as trust_report
from mushcam.trust import store as trust_store
from mushcam.trust.sanity import SanityResult, method_explainer, sanity_check
from ui import state
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


def load_image(data_root: str, relpath: str) -> state.LoadedImage:
    """A stored image (refusing paths outside its data folder)."""
    path = resolve_inside(data_root, relpath)
    if not path.is_file():
        raise MushcamError(f"image not found: {path} (has the data folder {data_root} moved?)")
    return state.load_uploaded(path.name, read_bytes(path))


@st.cache_data(show_spinner="Randomising the network block by block…", max_entries=32)
def cached_sanity(_ctx: state.AppContext, model: str, identity: state.ModelIdentity, image_sha: str, _image: object,
                  method: str) -> SanityResult:
    """The sanity check of one image, computed once per (model identity, image, method)."""
    assert _ctx.manifest is not None
    loaded = state.get_loaded(_ctx, model)
    network = loaded.model
    layer = state.cam_layer(_ctx, model, loaded)  # the manifest's layer, or the one found at load
    inputs = preprocess(_image, _ctx.manifest.input).unsqueeze(0)
    return sanity_check(network, inputs, method_explainer(layer, method))


def open_on_explain(data_root: str, relpath: str, model: str) -> None:
    """Hand a stored photo and model to the Explain page and go there."""
    st.session_state[EXPLAIN_FOLDER_KEY] = data_root
    st.session_state["source"] = "Sample folder"
    st.session_state["sample"] = relpath
    st.session_state["backbone"] = model
    st.switch_page(EXPLAIN_PAGE)
