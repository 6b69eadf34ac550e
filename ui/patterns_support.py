"""Streamlit glue for the Patterns page: the job with its progress, the scatter, drawing boxes, pictures.

The job (:func:`mushcam.patterns.run.run_patterns`) runs in a worker thread
(:mod:`ui.cam_jobs`) once per (test folder, model identity, settings), with a progress bar
(maps, clusters, concepts) and Stop; its result stays in the session. A point of the scatter
carries its photo's path; clicking it opens the photo on the Explain page, as the Trust
page's "Open on Explain" does. A box is drawn by dragging on the photo's plotly figure (box
selection), read back in the photo's pixels and stored as ``"drawn"``. Every map is drawn
with its colour bar (:mod:`mushcam.patterns.figures`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mushcam.cache import CamCache, default_cache_dir
from mushcam.data import decode_image, read_bytes, resolve_inside
from mushcam.exceptions import MushcamError
from mushcam.manifest import InputSpec
from mushcam.patterns import store as patterns_store
from mushcam.patterns.concepts import Concept
from mushcam.patterns.figures import flat_note, map_picture, mean_map_picture
from mushcam.patterns.regions import Region
from mushcam.patterns.run import PatternsResult, PatternsSettings, run_patterns
from mushcam.patterns.strategies import ClassStrategies, StrategyCluster
from mushcam.render import fit_within, to_png
from ui import cam_jobs, state
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
JOB_PREFIX = "patterns:"  # keys of this page's jobs among the session's (ui.cam_jobs)
STAGES_KEY = "patterns_stages"  # job key -> its StageProgress (the stage shown on the bar)
SAVED_KEY = "patterns_saved"  # the confirmation of the last saved box, shown once
QUICK_SECONDS = 1.5
DRAW_SIDE = 480
DRAW_HEIGHT = 480  # the figure's height: a small photo is enlarged to it, a large one shown at most this tall
PICTURE_WIDTH = 240
GRID = 24  # invisible points per side of the drawing figure


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


class StageProgress:
    """The job's ``progress(label, done, total)``: remembers the stage for the page's bar and forwards
    the counts to the worker job (whose report raises :class:`ui.cam_jobs.JobStopped` after Stop)."""

    def __init__(self) -> None:
        self.label = "starting"
        self._report: Callable[[int, int], None] | None = None

    def bind(self, report: Callable[[int, int], None]) -> StageProgress:
        self._report = report
        return self

    def __call__(self, label: str, done: int, total: int) -> None:
        self.label = label
        if self._report is not None:
            self._report(done, total)


def job_key(folder: str, identity: object, settings: PatternsSettings, store: str) -> str:
    """One key per (test folder, model identity, settings, store): a new one starts a new job."""
    text = repr((folder, identity, sorted(settings.to_dict().items()), store))
    return JOB_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _usable_store(store: Path) -> str:
    """The store's path when it can be written (its folder exists), else "" (nothing is saved)."""
    return str(store) if store.parent.is_dir() and not store.is_dir() else ""


def _start(ctx: state.AppContext, key: str, folder: str, model: str, settings: PatternsSettings,
           store: str) -> cam_jobs.CamJob:
    manifest, stage = ctx.manifest, StageProgress()
    assert manifest is not None
    for other in [k for k, job in cam_jobs.session_jobs().items() if k.startswith(JOB_PREFIX) and not job.running]:
        cam_jobs.forget_job(other)  # one finished result per session: old settings' results are let go
    stages = st.session_state.setdefault(STAGES_KEY, {})
    for gone in [k for k in stages if k not in cam_jobs.session_jobs()]:
        del stages[gone]
    stages[key] = stage

    def work(report: Callable[[int, int], None]) -> PatternsResult:
        return run_patterns(folder, manifest, [model], CamCache(default_cache_dir()), store or None, settings,
                            log=lambda _line: None, progress=stage.bind(report))

    return cam_jobs.start_job(key, "Patterns", work)


def _wait(job: cam_jobs.CamJob, seconds: float = QUICK_SECONDS) -> None:
    """Give a quick job (maps all in the cache) the time to finish before any progress is drawn."""
    deadline = time.monotonic() + seconds
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)


def patterns_job(ctx: state.AppContext, folder: str, model: str, settings: PatternsSettings,
                 store: Path) -> PatternsResult | None:
    """The job's result, or None while it runs (its progress bar and Stop are drawn) or after Stop.

    Started in a worker thread (:mod:`ui.cam_jobs`) for each new (folder, model identity,
    settings); a job that finishes within :data:`QUICK_SECONDS` never shows a bar. A
    :class:`MushcamError` of the job is raised here, for the page's error box.
    """
    writable = _usable_store(store)
    key = job_key(folder, state.model_identity(ctx, model), settings, writable)
    job = cam_jobs.job_for(key)
    if job is None:
        job = _start(ctx, key, folder, model, settings, writable)
        _wait(job)
    if job.running and not job.stopped:
        _progress(key)
        return None
    if job.stopped:
        st.info("Stopped: nothing of this run was kept (maps computed so far stay in the cache).", icon="⏹️")
        if st.button("Start again", icon="▶️", key="patterns_restart"):
            cam_jobs.forget_job(key)
            st.rerun()
        return None
    if job.error is not None:
        cam_jobs.forget_job(key)  # a fixed input is retried on the next run
        raise job.error
    return job.result


@st.fragment(run_every=cam_jobs.POLL_SECONDS)
def _progress(key: str) -> None:
    """The running job's stage and bar, redrawn twice a second, and Stop; a full rerun once it is over."""
    cam_jobs.show_progress(key, lambda job: _patterns_text(key, job), "patterns_stop")


def _patterns_text(key: str, job: cam_jobs.CamJob) -> str:
    stage = st.session_state.get(STAGES_KEY, {}).get(key)
    label = stage.label if stage is not None else "starting"
    counts = f"{job.done:,} of {job.total:,}" if job.total else "starting…"
    elapsed = cam_jobs.format_seconds(time.monotonic() - job.started)
    return f"Finding the patterns: {label} · {counts} · {elapsed} so far"


def forget_results() -> None:
    """Let every finished patterns job go (a saved box changes the focus numbers: they are recomputed)."""
    for key in [k for k in cam_jobs.session_jobs() if k.startswith(JOB_PREFIX)]:
        cam_jobs.forget_job(key)


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


def save_region(store: Path, image_sha: str, region: Region, source: str = "accepted") -> None:
    """Store a reviewer's box (accepted or corrected: ``"accepted"``; dragged on the photo: ``"drawn"``)
    and forget the finished jobs, so that the focus numbers are recomputed with it."""
    patterns_store.save_regions(store, [(image_sha, replace(region, source=source))])
    forget_results()


def photo_with_box(data_root: str, relpath: str, region: Region) -> np.ndarray:
    """The photo (at most 480 px) with the region drawn as a green rectangle."""
    image = decode_image(read_bytes(resolve_inside(data_root, relpath))).convert("RGB")
    shown = fit_within(image, DRAW_SIDE)
    factor = shown.size[0] / image.size[0]
    pixels = np.array(shown, dtype=np.uint8)  # a writable copy
    corner = (int(region.x0 * factor), int(region.y0 * factor))
    far = (int(region.x1 * factor) - 1, int(region.y1 * factor) - 1)
    return cv2.rectangle(pixels, corner, far, (0, 220, 0), 2)


# ------------------------------------------------------------------------------ drawing a box


def box_from_selection(selection: Mapping[str, Any] | None, image_size: tuple[int, int],
                       min_side: float = 2.0) -> tuple[float, float, float, float] | None:
    """The last box dragged on the photo's figure, as ``(x0, y0, x1, y1)`` in the photo's pixels.

    ``selection`` is what ``st.plotly_chart(..., on_select="rerun", selection_mode="box")`` returns
    (``{"selection": {"box": [{"x": [a, b], "y": [c, d]}, ...]}}``); the figure's axes are the
    photo's pixels (:func:`draw_figure`), so the range is the box: sorted, clamped to
    ``0..width`` and ``0..height`` and rounded to whole pixels. None when nothing (or a box under
    ``min_side`` pixels, a stray click) was dragged.
    """
    boxes = ((selection or {}).get("selection") or {}).get("box") or []
    if not boxes:
        return None
    xs, ys = boxes[-1].get("x") or [], boxes[-1].get("y") or []
    if len(xs) < 2 or len(ys) < 2:
        return None
    width, height = image_size
    x0, x1 = (round(min(max(float(v), 0.0), width)) for v in sorted(xs[:2]))
    y0, y1 = (round(min(max(float(v), 0.0), height)) for v in sorted(ys[:2]))
    if x1 - x0 < min_side or y1 - y0 < min_side:
        return None
    return (float(x0), float(y0), float(x1), float(y1))


@st.cache_data(show_spinner=False, max_entries=64)
def _draw_source(data_root: str, relpath: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """The photo shown for drawing (at most DRAW_SIDE px) as a PNG data URL, its size and the shown size."""
    image = decode_image(read_bytes(resolve_inside(data_root, relpath))).convert("RGB")
    shown = fit_within(image, DRAW_SIDE)
    return "data:image/png;base64," + base64.b64encode(to_png(shown)).decode("ascii"), image.size, shown.size


def draw_figure(data_root: str, relpath: str, region: Region | None) -> tuple[go.Figure, tuple[int, int]]:
    """The photo as a plotly figure whose axes are the photo's own pixels (y downwards), in box-select
    mode (drag = a box), with the stored region as a green rectangle; and the photo's size."""
    source, (width, height), (shown_w, shown_h) = _draw_source(data_root, relpath)
    dx, dy = width / shown_w, height / shown_h
    figure = go.Figure(go.Image(source=source, x0=dx / 2, dx=dx, y0=dy / 2, dy=dy, hoverinfo="x+y"))
    grid_x, grid_y = np.meshgrid(np.linspace(0, width, GRID), np.linspace(0, height, GRID))
    figure.add_trace(go.Scatter(  # invisible points: box selection needs a selectable trace to report
        x=grid_x.ravel(), y=grid_y.ravel(), mode="markers", hoverinfo="skip", showlegend=False,
        marker={"opacity": 0, "size": 4}, selected={"marker": {"opacity": 0}}, unselected={"marker": {"opacity": 0}}))
    if region is not None:
        figure.add_shape(type="rect", x0=region.x0, y0=region.y0, x1=region.x1, y1=region.y1,
                         line={"color": "#00dc00", "width": 3})
    figure.update_layout(dragmode="select", newselection={"line": {"color": "#ffd400", "width": 3, "dash": "solid"}},
                         height=DRAW_HEIGHT, margin={"l": 40, "r": 10, "t": 30, "b": 30},
                         title=f"Drag a box around the mushroom ({width} x {height} px)",
                         xaxis={"range": [0, width], "constrain": "domain", "showgrid": False},
                         yaxis={"range": [height, 0], "scaleanchor": "x", "constrain": "domain", "showgrid": False})
    return figure, (width, height)


def box_editor(data_root: str, relpath: str, image_sha: str, store: Path, region: Region | None,
               key: str = "patterns_draw") -> None:
    """Drag a box on the photo, read it back in pixels, and "Save this box" (``source="drawn"``).

    Usable on any page that knows the photo (its folder and path), its SHA-256 and the results
    store; ``key`` keeps several editors apart.
    """
    figure, size = draw_figure(data_root, relpath, region)
    generation = st.session_state.get(f"{key}_saved", 0)  # a new chart (empty selection) after each save
    event = st.plotly_chart(figure, key=f"{key}_{relpath}_{generation}", on_select="rerun", selection_mode="box",
                            config={"displaylogo": False})
    box = box_from_selection(event, size)
    if box is None:
        st.caption("Drag on the photo to draw a box; the stored box (if any) is green.")
        return
    x0, y0, x1, y1 = box
    st.markdown(f"**Drawn box: x0 = {x0:.0f}, y0 = {y0:.0f}, x1 = {x1:.0f}, y1 = {y1:.0f}** "
                f"(pixels of the {size[0]} x {size[1]} photo)")
    if st.button("Save this box", icon="💾", key=f"{key}_save"):
        try:
            save_region(store, image_sha, Region(relpath, *box), source="drawn")
        except MushcamError as exc:
            st.error(str(exc), icon="🚫")
            return
        st.session_state[f"{key}_saved"] = generation + 1
        st.session_state[SAVED_KEY] = f"Saved the drawn box of {relpath}: ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})."
        st.rerun()


def region_editor(data_root: str, relpath: str, image_sha: str, store: Path, key: str) -> None:
    """:func:`box_editor` for a photo of the results store, with the box already stored for it (if any)
    and the last save's confirmation: how the Errors page lets a reviewer mark the mushroom."""
    saved = st.session_state.pop(SAVED_KEY, None)
    if saved:
        st.success(saved, icon="✅")
    try:
        region = patterns_store.load_regions(store).get(image_sha)
        box_editor(data_root, relpath, image_sha, store, region, key=key)
    except MushcamError as exc:
        st.error(str(exc), icon="🚫")


# ------------------------------------------------------------------------------ maps with their colour bar


def mean_map_image(cluster: StrategyCluster, side: int = THUMB) -> tuple[np.ndarray, str]:
    """The cluster's mean map with its colour bar, and its caption (flat maps marked)."""
    picture, scale = mean_map_picture(cluster, side)
    return picture, "mean map" + flat_note(scale)


@st.cache_data(show_spinner=False, max_entries=512)
def photo_with_map(data_root: str, relpath: str, cam: np.ndarray, _spec: InputSpec, spec_key: str,
                   label: str = "Grad-CAM") -> tuple[np.ndarray, str]:
    """A thumbnail of a test photo with its map over it and the map's colour bar, and its caption."""
    picture, scale = map_picture(resolve_inside(data_root, relpath), cam, _spec, label, THUMB)
    return picture, relpath + flat_note(scale)


def concept_images(data_root: str, concept: Concept, spec: InputSpec) -> tuple[list[np.ndarray], list[str]]:
    """Concept k in the photos where it is strongest (its weight ``W_k`` over each photo, with its colour
    bar), as :func:`mushcam.patterns.figures.concept_pictures` draws them, cached per photo."""
    drawn = [photo_with_map(data_root, path, cam, spec, repr(spec), f"concept {concept.index}")
             for path, cam in zip(concept.top_paths, concept.top_maps, strict=True)]
    return [picture for picture, _ in drawn], [caption for _, caption in drawn]
