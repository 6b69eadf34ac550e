"""Streamlit glue for the Errors page: where the results store is, cached reads, figures.

The store's contents, each run's table and metrics are cached with ``st.cache_resource``
(shared, never copied: they are treated as read-only) under the store file's version
(mtime + size), so re-running ``evaluate`` is picked up on the next interaction. Images
are decoded at full resolution for Grad-CAM, exactly as ``evaluate`` decoded them, and
shown from a copy at most 1024 px wide.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import streamlit as st

from mushcam.data import read_bytes
from mushcam.errors import RunTable, run_table
from mushcam.evaluate import run_label, run_metrics
from mushcam.metrics import ModelMetrics, format_rate
from mushcam.review.paths import dataset_file
from mushcam.store import RunRecord, StoreContents, StoreError, load_store
from mushcam.toxicity import Toxicity
from ui import state

# moved to ui.store_picker (one field shared with the Trust page); re-exported for ui/home.py
from ui.store_picker import STORE_KEY, default_store_path, store_path_input  # noqa: F401
from ui.table_fit import column_width, fitted, total_width

DATA_ENV = "MUSHCAM_DATA"
DATA_KEY = "err_data"


def data_folder_input() -> str:
    """The sidebar's image-folder field: the only folder the Errors page reads images from.

    Default ``$MUSHCAM_DATA``; never the folder recorded inside the store (a store is a file
    anyone can hand over). Empty means: not chosen yet.
    """
    st.session_state.setdefault(DATA_KEY, os.environ.get(DATA_ENV, "").strip())
    with st.sidebar:
        state.persistent_widget(
            st.text_input, DATA_KEY, "Image folder",
            help="The test-set folder the store was evaluated on (ROOT/<Class>/<image>). The Errors page reads "
            f"images only under this folder (default: ${DATA_ENV}).",
        )
    return str(st.session_state[DATA_KEY]).strip()


def use_recorded_folder(recorded: str) -> None:
    """Offer the folder the store recorded; it is used only when the user clicks (their choice)."""
    st.info(f"Choose the image folder in the sidebar to see the photos and their Grad-CAM. This store was "
            f"evaluated on `{recorded}`; images are read only from a folder you choose.")
    st.button(f"Use {recorded}", key="err_use_recorded", on_click=_set_data_folder, args=(recorded,))


def _set_data_folder(folder: str) -> None:
    st.session_state[DATA_KEY] = folder


def table_data(columns: dict[str, list[object]] | list[dict[str, object]]) -> pa.Table:
    """Rows for ``st.dataframe`` as an Arrow table: ten times cheaper per rerun than a dict or pandas."""
    if isinstance(columns, list):
        columns = {key: [row[key] for row in columns] for key in (columns[0] if columns else {})}
    return pa.table(columns)


# The list sits in three fifths of the page (about 580 px at 1440 px): the columns it shows by
# default keep their headers whole and fit (the image path is cut at 120 px: the chosen row's full
# path heads the view below, and a double-click shows a cell whole). "kind" and "p(true class)" are
# one click away ("Show/hide columns"); "review" and "twin in" are shown once some row has one.
LIST_SHOWN = ("#", "image", "true class", "predicted", "confidence", "review", "near-duplicate in")
LIST_WHEN_FILLED = ("review", "near-duplicate in")
LIST_LABELS = {"true class": "true", "near-duplicate in": "twin in"}
LIST_HELP = {
    "image": "the photo's path in the image folder (double-click a cell to read it whole)",
    "true class": "the class folder the photo is in",
    "predicted": "the class the model chose",
    "confidence": "the model's probability for the class it chose",
    "review": "who reviewed the error, and the causes they gave",
    "near-duplicate in": "another split (train, val) holds a near-duplicate of this photo",
}
LIST_CAPS = {"image": 120, "true class": 80, "predicted": 80, "confidence": 50, "review": 90}
LIST_FIT_PX = 575  # the list's frame at 1440 px


def list_columns(data: dict[str, list[object]]) -> dict[str, object]:
    """``column_config`` of the Errors list, in display order (the keys): fitted widths and header tooltips."""
    config: dict[str, object] = {key: {"label": label} for key, label in LIST_LABELS.items()}
    config["confidence"] = st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.3f")
    shown = [key for key in LIST_SHOWN if key in data and (key not in LIST_WHEN_FILLED or any(data[key]))]
    columns = fitted(data, config=config, helps=LIST_HELP, caps=LIST_CAPS, shown=shown)
    excess = total_width(columns, row_marker=True) - LIST_FIT_PX  # with "review" or "twin in": narrow the path
    if excess > 0 and "image" in columns:
        columns["image"]["width"] = max(column_width("image"), columns["image"]["width"] - excess)
    return columns


def store_version(path: Path) -> str:
    """Changes whenever the store file is rewritten; raises StoreError when it is missing."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; the results store is a file such as results.sqlite")
    if not path.is_file():
        raise StoreError(
            f"no results store at {path}; create one with: python -m mushcam evaluate --data ROOT --out {path}"
        )
    return f"{state.file_version(path)}-{_change_counter(path)}"


def _change_counter(path: Path) -> int:
    """SQLite's file change counter (header bytes 24-27): bumped by every committed write.

    Reviews are written into the store many times a minute; the counter tells two writes
    apart even where the file system's clock is coarse and the size stays the same.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(28)
    except OSError:
        return -1
    return int.from_bytes(header[24:28], "big") if len(header) == 28 else -1


@st.cache_resource(show_spinner="Reading the results store…", max_entries=4)
def _contents(path: str, version: str) -> StoreContents:
    return load_store(path)


def load_contents(path: Path) -> tuple[StoreContents, str]:
    """The whole store (cached per file version) and that version."""
    version = store_version(path)
    return _contents(str(path), version), version


@st.cache_resource(max_entries=32)
def table_for(path: str, version: str, run_id: int) -> RunTable:
    """One run's rows with their error kinds (computed once per store version)."""
    contents = _contents(path, version)
    return run_table(contents.run(run_id), contents.predictions[run_id])


@st.cache_resource(max_entries=32)
def metrics_for(path: str, version: str, run_id: int) -> ModelMetrics:
    return run_metrics(_contents(path, version), run_id)


def label(run: RunRecord, contents: StoreContents) -> str:
    return run_label(run, contents.runs)


def load_error_image(data_root: str, relpath: str) -> state.LoadedImage:
    """The stored image (full resolution + display copy), read only under the user's folder."""
    path = dataset_file(data_root, relpath)
    return state.load_uploaded(path.name, read_bytes(path))


def dangerous_summary(path: str, version: str, contents: StoreContents) -> None:
    """One card per model: poisonous predicted as edible, then the other rates."""
    st.subheader("Poisonous predicted as edible")
    per_row = min(len(contents.runs), 3)
    for start in range(0, len(contents.runs), per_row):
        for column, run in zip(st.columns(per_row), contents.runs[start:start + per_row], strict=False):
            m = metrics_for(path, version, run.run_id)
            with column.container(border=True):
                st.metric(
                    f"{label(run, contents)}: poisonous → edible", f"{m.dangerous_count} / {m.poisonous_images}",
                    help="Images of a poisonous genus that the model called an edible genus (the dangerous error). "
                    "Mixed, inedible and unknown genera count as neither.",
                )
                st.caption(
                    f"{'n/a' if np.isnan(m.dangerous_rate) else f'{m.dangerous_rate:.1%}'} of poisonous images · "
                    f"edible → poisonous {format_rate(m.benign_count, m.benign_rate, m.edible_images)} · "
                    f"accuracy {m.accuracy:.1%} on {m.n_images} images"
                )


def confusion_figure(metrics: ModelMetrics, selected: tuple[int, int] | None) -> go.Figure:
    """Confusion matrix heat map (rows: true, columns: predicted); dangerous cells outlined red.

    An invisible marker sits on every cell so that a click selects it (Plotly heat maps
    themselves do not report point selections). The figure is built in one go from plain
    dicts: adding shapes one by one costs Plotly a re-validation each (quadratic).
    """
    names = list(metrics.class_names)
    n = len(names)
    z = metrics.confusion
    counts = z.tolist()  # plain lists: readable in the figure JSON
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    heatmap = {
        "type": "heatmap", "z": counts, "x": names, "y": names, "colorscale": "Blues", "showscale": False,
        "text": counts, "texttemplate": "%{text}",
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>",
    }
    markers = {
        "type": "scatter", "mode": "markers", "showlegend": False,
        "x": [names[j] for j in jj.ravel()], "y": [names[i] for i in ii.ravel()],
        "marker": {"size": max(12, 360 // max(n, 1)), "symbol": "square", "opacity": 0.01, "color": "black"},
        "customdata": np.stack([ii.ravel(), jj.ravel(), z.ravel()], axis=1).tolist(),
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{customdata[2]} images — click to list them<extra></extra>",
    }

    def box(i: int, j: int, line: dict[str, object]) -> dict[str, object]:
        return {"type": "rect", "x0": j - 0.5, "x1": j + 0.5, "y0": i - 0.5, "y1": i + 0.5, "line": line}

    poisonous = [t == Toxicity.POISONOUS for t in metrics.toxicities]
    edible = [t == Toxicity.EDIBLE for t in metrics.toxicities]
    shapes = [box(i, j, {"color": "#d62728", "width": 3}) for i in range(n) for j in range(n)
              if poisonous[i] and edible[j] and z[i, j] > 0]
    if selected is not None:
        shapes.append(box(*selected, {"color": "black", "width": 4, "dash": "dot"}))
    return go.Figure(data=[heatmap, markers], layout=confusion_layout(names, shapes))


def confusion_layout(names: list[str], shapes: list[dict[str, object]]) -> dict[str, object]:
    """Axes whose labels never overlap: predicted-class labels slanted at -45 degrees above the matrix,
    margins grown to fit the labels (``automargin``), and a height of ``44 px x classes`` plus the
    room the slanted labels take (about 6 px per character of the longest name)."""
    n = len(names)
    longest = max((len(name) for name in names), default=1)
    label_room = int(6 * longest * 0.71) + 30  # sin 45 degrees of the longest label, plus the axis title
    axis = {"type": "category", "showgrid": False, "zeroline": False, "fixedrange": True, "automargin": True}
    return {
        "xaxis": {**axis, "title": {"text": "predicted class"}, "side": "top", "range": [-0.5, n - 0.5],
                  "tickangle": -45},
        "yaxis": {**axis, "title": {"text": "true class"}, "range": [n - 0.5, -0.5]},
        "shapes": shapes, "height": 80 + 44 * n + label_room, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "clickmode": "event+select", "dragmode": False,
    }


@st.cache_resource(max_entries=64)
def cached_confusion_figure(path: str, version: str, run_id: int, selected: tuple[int, int] | None) -> go.Figure:
    """:func:`confusion_figure` of a stored run, built once per (store version, run, selected cell)."""
    return confusion_figure(metrics_for(path, version, run_id), selected)
