"""Streamlit glue for the Patterns page: the cached job, the scatter, thumbnails, opening on Explain.

The job (:func:`mushcam.patterns.run.run_patterns`) runs once per (test folder, model
identity, settings) and is kept with ``st.cache_resource`` (treated as read-only). A point
of the scatter carries its photo's path; clicking it opens the photo on the Explain page,
as the Trust page's "Open on Explain" does.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mushcam.cache import CamCache, default_cache_dir
from mushcam.data import crop_box, decode_image, read_bytes, resolve_inside
from mushcam.manifest import InputSpec
from mushcam.patterns import store as patterns_store
from mushcam.patterns.regions import Region
from mushcam.patterns.run import PatternsResult, PatternsSettings, run_patterns
from mushcam.patterns.strategies import ClassStrategies, StrategyCluster
from mushcam.render import colorize, fit_within, overlay, upsample_cam
from ui import state
from ui.trust_support import open_on_explain

FOLDER_KEY = "patterns_folder"
STORE_KEY = "patterns_store"
OPEN_KEY = "patterns_open"  # the photo a scatter click asked for (opened on the next run)
SCATTER_KEY = "patterns_scatter"
RESULTS_ENV = "MUSHCAM_RESULTS"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
THUMB = 160
ERRORS_PAGE = "pages/3_Errors.py"


def folder_and_store_inputs() -> tuple[str, Path]:
    """The test folder (default ``$MUSHCAM_SAMPLES``) and the results store fields."""
    sample = state.sample_folder()
    st.session_state.setdefault(FOLDER_KEY, str(sample) if sample else "")
    default_store = os.environ.get(RESULTS_ENV, "").strip() or str(PROJECT_ROOT / "runs" / "results.sqlite")
    st.session_state.setdefault(STORE_KEY, default_store)
    left, right = st.columns(2)
    left.text_input("Test folder (ROOT/<Class>/<image>)", key=FOLDER_KEY)
    right.text_input("Results store (regions and numbers are saved there)", key=STORE_KEY)
    return st.session_state[FOLDER_KEY].strip(), Path(st.session_state[STORE_KEY].strip()).expanduser()


@st.cache_resource(show_spinner="Finding the patterns (maps from the cache; missing ones are computed)…",
                   max_entries=8)
def _patterns(_ctx: state.AppContext, folder: str, model: str, identity: str, settings: tuple[tuple[str, object], ...],
              store: str) -> PatternsResult:
    assert _ctx.manifest is not None
    return run_patterns(folder, _ctx.manifest, [model], CamCache(default_cache_dir()), store or None,
                        PatternsSettings(**dict(settings)), log=lambda _line: None)


def cached_patterns(ctx: state.AppContext, folder: str, model: str, settings: PatternsSettings,
                    store: Path) -> PatternsResult:
    """The job's result, computed once per folder, model identity and settings (the store is
    written only when its folder exists)."""
    use_store = str(store) if store.parent.is_dir() and not store.is_dir() else ""
    items = tuple(sorted(settings.to_dict().items()))
    return _patterns(ctx, folder, model, state.model_identity(ctx, model), items, use_store)


def scatter(found: ClassStrategies) -> go.Figure:
    """The 2-D spectral embedding; colour = cluster, hollow = wrong prediction; customdata = path."""
    figure = go.Figure()
    for cluster in range(max(found.k, 1)):
        points = [p for p in found.points if p.cluster == cluster]
        figure.add_trace(go.Scatter(
            x=[p.x for p in points], y=[p.y for p in points], mode="markers", name=f"cluster {cluster}",
            customdata=[p.path for p in points],
            text=[f"{p.path}<br>confidence {p.confidence:.0%}{'' if p.correct else ' · wrong'}" for p in points],
            hoverinfo="text",
            marker={"size": 10, "color": COLOURS[cluster % len(COLOURS)],
                    "symbol": ["circle" if p.correct else "circle-open" for p in points]},
        ))
    figure.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title="Spectral embedding of the maps (click a photo to open it on Explain)",
                         xaxis={"showticklabels": False}, yaxis={"showticklabels": False})
    return figure


def on_scatter_click() -> None:
    """Remember the clicked photo; the page opens it (a callback cannot switch pages)."""
    selection = st.session_state.get(SCATTER_KEY)
    points = (selection or {}).get("selection", {}).get("points", []) if selection else []
    if points and points[0].get("customdata"):
        custom = points[0]["customdata"]
        st.session_state[OPEN_KEY] = custom[0] if isinstance(custom, list) else custom


def open_requested(data_root: str, model: str) -> None:
    """Open the photo a click asked for, if any."""
    path = st.session_state.pop(OPEN_KEY, None)
    if path:
        open_on_explain(data_root, path, model)


def open_on_errors(class_name: str, group_by: str) -> None:
    """Go to the Errors page filtered to this class (by prediction or by truth), to review the
    flagged photos with the cause "shortcut"."""
    st.session_state["err_pred" if group_by == "predicted" else "err_true"] = class_name
    st.switch_page(ERRORS_PAGE)


def save_region(store: Path, image_sha: str, region: Region) -> None:
    """Store a reviewer's box (accepted or corrected: ``source="accepted"``) and forget the cached
    job, so that the focus numbers are recomputed with it."""
    patterns_store.save_regions(store, [(image_sha, replace(region, source="accepted"))])
    _patterns.clear()


def photo_with_box(data_root: str, relpath: str, region: Region) -> np.ndarray:
    """The photo (at most 480 px) with the region drawn as a green rectangle."""
    image = decode_image(read_bytes(resolve_inside(data_root, relpath))).convert("RGB")
    shown = fit_within(image, 480)
    factor = shown.size[0] / image.size[0]
    pixels = np.array(shown, dtype=np.uint8)  # a writable copy
    corner = (int(region.x0 * factor), int(region.y0 * factor))
    far = (int(region.x1 * factor) - 1, int(region.y1 * factor) - 1)
    return cv2.rectangle(pixels, corner, far, (0, 220, 0), 2)


def mean_map_image(cluster: StrategyCluster, side: int = THUMB) -> np.ndarray:
    """The cluster's mean map, coloured."""
    mean = cluster.mean_map / max(float(cluster.mean_map.max()), 1e-12)
    return colorize(upsample_cam(mean, (side, side)))


@st.cache_data(show_spinner=False, max_entries=512)
def photo_with_map(data_root: str, relpath: str, cam: np.ndarray, _spec: InputSpec, spec_key: str) -> np.ndarray:
    """A thumbnail of a test photo with its map over it."""
    image = fit_within(decode_image(read_bytes(resolve_inside(data_root, relpath))), THUMB).convert("RGB")
    return overlay(image, upsample_cam(cam, image.size, crop_box(image.size, _spec)))
