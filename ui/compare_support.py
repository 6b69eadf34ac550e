"""Streamlit glue for the Compare page: models loaded once, maps cached, images, progress, the grid.

Everything here is thin: the sampling, the measures and the export live in
:mod:`mushcam.compare`; this module only connects them to Streamlit's caches
(``ui.state.get_model``: one model per checkpoint version; ``ui.state.cached_explanation``:
one map per (model, image, layer, class)), to the page's progress bar, and draws the grid:
one tab per CAM method when models x methods would not fit one row, each photo's pairwise
agreement as a small heatmap matrix.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator

from mushcam import compare
from mushcam.cam import DEFAULT_METHOD, METHOD_LABELS, Column
from mushcam.catalog import LoadedModel
from mushcam.compare.comparison import Cell, Row
from mushcam.compare.figure import short_name
from mushcam.compare.matrix import SCALE as MATRIX_SCALE
from mushcam.compare.matrix import render_agreement_matrix
from mushcam.compare.tables import AGREEMENT_MEASURES, agreement_matrix
from mushcam.data import LabelledImage, read_bytes, scan_images
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation
from mushcam.finite import naming_model
from mushcam.manifest import Manifest
from mushcam.map_scale import map_range
from mushcam.render import to_jpeg, to_png
from ui import state

DISPLAY_SIDE = 320  # grid pictures on the page
MAX_ROW_COLUMNS = 4  # more map columns than this (with several methods): one tab per method
METHOD_TAB_KEY = "compare_method_tab"  # session state: the open method tab (its label)
CELL_MEMO_SIZE = 512  # measured cells kept (about 250 kB each, 128 MB at most: 4 x 9 columns of 12 photos)
SAMPLE_KEY = "compare_sample_memo"  # session state: (sampling parameters, chosen relpaths)


def load_models(ctx: state.AppContext, names: Sequence[str]) -> tuple[dict[str, LoadedModel], dict[str, str]]:
    """Each named model (loaded once per checkpoint version), and why any failed (one line each)."""
    models: dict[str, LoadedModel] = {}
    failures: dict[str, str] = {}
    for name in names:
        try:
            models[name] = state.get_loaded(ctx, name)
        except (MushcamError, OSError, RuntimeError) as exc:
            failures[name] = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return models, failures


def explainer(ctx: state.AppContext, models: dict[str, LoadedModel]) -> compare.ExplainFn:
    """explain(name, image, method): the predicted class's map, once per (model, image, CAM method)."""
    assert ctx.manifest is not None
    manifest = ctx.manifest
    keys = {name: state.model_identity(ctx, name) for name in models}
    layers = {name: state.cam_layer(ctx, name, loaded) for name, loaded in models.items()}

    def explain(name: str, image: compare.CompareImage, method: str = DEFAULT_METHOD) -> Explanation:
        with naming_model(ctx.label(name)):
            return state.cached_explanation(
                models[name].model, image.image, manifest, keys[name], image.sha256, layers[name], None, method,
            )

    return explain


@st.cache_resource(show_spinner=False, max_entries=CELL_MEMO_SIZE)
def _memo_box(key: Hashable) -> dict[str, object]:
    """One measured cell's place in Streamlit's resource cache (least recently used dropped)."""
    return {}


class SharedCellMemo:
    """Measured cells (:class:`mushcam.compare.comparison.MeasuredCell`) shared by every browser
    session, at most :data:`CELL_MEMO_SIZE` of them: a rerun, a new session or an added method
    measures only the maps nobody has measured yet. A cell is not changed once measured (frozen;
    its prepared arrays are read-only)."""

    def get(self, key: Hashable) -> compare.MeasuredCell | None:
        cell = _memo_box(key).get("cell")
        return cell if isinstance(cell, compare.MeasuredCell) else None

    def __setitem__(self, key: Hashable, cell: compare.MeasuredCell) -> None:
        _memo_box(key)["cell"] = cell


def cell_key(ctx: state.AppContext, models: dict[str, LoadedModel]) -> compare.CellKeyFn:
    """What one cell's map and verdict depend on, as one digest: the model's identity and layer,
    the method, the photo's content, the manifest's input and classes."""
    assert ctx.manifest is not None
    setting = repr((ctx.manifest.input, ctx.manifest.classes))
    models_key = {name: repr((state.model_identity(ctx, name), state.cam_layer(ctx, name, loaded)))
                  for name, loaded in models.items()}

    def key(column: Column, image: compare.CompareImage) -> str:
        text = "\0".join((models_key[column.model], column.method, image.sha256, setting))
        return hashlib.sha256(text.encode()).hexdigest()

    return key


def to_compare_image(name: str, data: bytes, label: str | None) -> compare.CompareImage:
    """Decode (cached by content) the way the Explain page does: full resolution for the
    model and the caches, a copy of at most 1024 px to draw from."""
    loaded = state.load_uploaded(name, data)
    return compare.CompareImage(loaded.name, loaded.image, loaded.sha256, label, loaded.display)


def images_from_uploads(files: Sequence[object]) -> tuple[list[compare.CompareImage], list[str]]:
    """The uploads that decode, and a message for each that does not."""
    images, problems = [], []
    seen: set[str] = set()
    for upload in files:
        name = getattr(upload, "name", "upload")
        try:
            image = to_compare_image(name, upload.getvalue(), None)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if image.sha256 not in seen:  # the same photo twice would be the same row twice
            seen.add(image.sha256)
            images.append(image)
    return images, problems


class Progress:
    """A progress bar the library reports to: ``progress(done, total, what)``."""

    def __init__(self) -> None:
        self.bar = st.progress(0.0, text="Preparing…")

    def maps(self, done: int, total: int, what: str) -> None:
        fraction = done / total if total else 1.0
        self.bar.progress(min(1.0, fraction), text=f"Computing Grad-CAM maps {done}/{total}: {what}")

    def checking(self, done: int, budget: int) -> None:
        self.bar.progress(min(1.0, done / max(budget, 1)),
                          text=f"Choosing the sample: checking predictions ({done} images so far)")

    def clear(self) -> None:
        self.bar.empty()


def _scan(root: Path) -> tuple[list[LabelledImage], list[str]]:
    """The folder's labelled images and what to say about it (files left out, or nothing found)."""
    try:
        scan = scan_images(root)
    except (MushcamError, OSError) as exc:
        return [], [str(exc)]
    problems: list[str] = [f"Left out {path}: {reason}" for path, reason in scan.skipped[:5]]
    if len(scan.skipped) > 5:
        problems.append(f"... and {len(scan.skipped) - 5} more files left out")
    if not scan.images:
        problems.append(f"No images found in {root}: expected {root}/<Class>/<image>.")
    return scan.images, problems


def _checked_outcome(check: compare.OutcomeFn, budget: int, progress: Progress) -> compare.OutcomeFn:
    """``check`` with progress, and None (unknown) for a photo that cannot be read."""
    counter = [0]

    def outcome(item: LabelledImage) -> bool | None:
        counter[0] += 1
        progress.checking(counter[0], budget)
        try:
            return check(item)
        except ValueError:
            return None  # unreadable: reported when chosen

    return outcome


def _sample(
    ctx: state.AppContext,
    root: Path,
    items: Sequence[LabelledImage],
    n: int,
    seed: int,
    explain: compare.ExplainFn | None,
    names: Sequence[str],
    progress: Progress,
    load: Callable[[LabelledImage], compare.CompareImage],
) -> list[LabelledImage]:
    """The seeded sample, remembered for this browser session: a rerun (a slider moved)
    neither re-checks candidates nor re-reads the files it did not choose."""
    assert ctx.manifest is not None
    identities = tuple(state.model_identity(ctx, name) for name in names) if explain is not None else ()
    signature = (str(root.resolve()), tuple(i.relpath for i in items), n, seed, identities)
    remembered = st.session_state.get(SAMPLE_KEY)
    if remembered is not None and remembered[0] == signature:
        by_path = {i.relpath: i for i in items}
        return [by_path[relpath] for relpath in remembered[1]]
    outcome = None
    if explain is not None:
        check = compare.outcome_with(explain, names, ctx.manifest, load)
        outcome = _checked_outcome(check, 3 * min(n, len(items)), progress)
    chosen = compare.select_sample(items, ctx.manifest, n, seed, outcome)
    st.session_state[SAMPLE_KEY] = (signature, [i.relpath for i in chosen])
    return chosen


def images_from_folder(
    ctx: state.AppContext,
    folder: str,
    n: int,
    seed: int,
    explain: compare.ExplainFn | None,
    names: Sequence[str],
    progress: Progress,
) -> tuple[list[compare.CompareImage], list[str]]:
    """A seeded, balanced sample of ``folder/<Class>/*``; with ``explain``, mixing right and wrong."""
    assert ctx.manifest is not None
    root = Path(folder.strip()).expanduser()
    if not folder.strip():
        return [], ["Enter a test folder (root/<Class>/images), or set $MUSHCAM_SAMPLES."]
    items, problems = _scan(root)
    if not items:
        return [], problems
    loaded: dict[str, compare.CompareImage] = {}

    def load(item: LabelledImage) -> compare.CompareImage:
        if item.relpath not in loaded:
            loaded[item.relpath] = to_compare_image(item.relpath, read_bytes(item.path), item.label)  # bounded
        return loaded[item.relpath]

    images = []
    for item in _sample(ctx, root, items, n, seed, explain, names, progress, load):
        try:
            images.append(load(item))
        except (ValueError, OSError) as exc:
            problems.append(f"{item.relpath}: {exc}")
    unlisted = sorted({i.label for i in items if compare.manifest_class(ctx.manifest, i.label) is None})
    if unlisted:
        problems.append(
            "Folder classes not in the manifest (their correctness is unknown): " + ", ".join(unlisted)
        )
    return images, problems


__all__ = [
    "DISPLAY_SIDE",
    "MAX_ROW_COLUMNS",
    "Progress",
    "SharedCellMemo",
    "Style",
    "cell_key",
    "column_groups",
    "show_grid_agreement",
    "explainer",
    "images_from_folder",
    "images_from_uploads",
    "load_models",
    "show_grid",
    "to_compare_image",
]


@st.cache_data(show_spinner=False, max_entries=1024)
def _map_aucs(_model: object, _image: object, _manifest: object, identity: state.ModelIdentity, image_sha: str,
              class_idx: int, _cam: object, method: str = DEFAULT_METHOD) -> tuple[float, float]:
    """Deletion and insertion AUC of one cached map (computed once per model, image, class and CAM method)."""
    from mushcam.data import preprocess
    from mushcam.trust.faithfulness import map_aucs

    return map_aucs(_model, preprocess(_image, _manifest.input), _cam, class_idx)


def map_faithfulness(ctx: state.AppContext, models: dict[str, LoadedModel],
                     comparison: compare.Comparison) -> list[dict[str, object]]:
    """One row per (image, model): each map's deletion AUC (lower = faithful) and insertion AUC (higher)."""
    assert ctx.manifest is not None
    rows = []
    total = sum(len(row.cells) for row in comparison.rows)
    bar = st.progress(0.0, text=f"Faithfulness of {total} maps (22 forward passes each); switch the toggle off "
                                "to stop")
    started = time.monotonic()
    for row in comparison.rows:
        for key, cell in row.cells.items():
            done = len(rows)
            if done:
                left = (time.monotonic() - started) / done * (total - done)
                bar.progress(done / total, text=f"Faithfulness: {done} of {total} maps · about {left:.0f} s left; "
                                                "switch the toggle off to stop")
            column = Column.parse(key)  # a model and a CAM method
            deletion, insertion = _map_aucs(models[column.model].model, row.image.image, ctx.manifest,
                                            state.model_identity(ctx, column.model), row.image.sha256,
                                            int(cell.explanation.class_idx), cell.explanation.cam, column.method)
            rows.append({"image": row.image.name, "model": comparison.label(key),
                         "explained": ctx.manifest.class_names[cell.explanation.class_idx],
                         "deletion_auc": deletion, "insertion_auc": insertion})
    bar.empty()
    return rows


# --- the grid -------------------------------------------------------------------------

MARKS = {
    "dangerous": ":red-background[**⚠ Poisonous called edible**]",
    True: ":green[✓ correct]",
    False: ":red[**✗ wrong**]",
    None: ":gray[true class unknown]",
}


@dataclass(frozen=True)
class Style:
    """How the page draws the maps (the controls' values)."""

    normalisation: str
    view: str
    alpha: float
    colormap: str
    measure: str  # "iou" or "spearman": the agreement matrices' values


def column_groups(comparison: compare.Comparison, methods: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    """The grid's columns split for display: one tab per method, models inside; one group with
    no tab when several methods fit one row (at most :data:`MAX_ROW_COLUMNS` columns).

    One method is one tab, named after it: the page says which method it shows, and adding a
    second method adds a tab beside the first instead of redrawing the grid (the browser keeps
    the open tab's pictures)."""
    grid = list(comparison.backbones)
    if len(methods) == 1:
        return [(methods[0], grid)]
    if len(grid) <= MAX_ROW_COLUMNS:
        return [(None, grid)]
    return [(method, [key for key in grid if Column.parse(key).method == method]) for method in methods]


def _header(labels: Sequence[str]) -> None:
    """The header row: 'Image', each column's label (one line each: wraps on spaces only)."""
    places = st.columns([1] * (1 + len(labels)) + ([1] if len(labels) > 2 else []))
    places[0].markdown("**Image**")
    for place, label in zip(places[1:], labels, strict=False):
        place.markdown(f"**{label}**")


def _image_place(place: DeltaGenerator, row: Row, thumb: object) -> None:
    place.image(thumb, width="stretch")
    truth = (f"true: **{row.image.label}** ({row.true_toxicity or 'not in manifest'})"
             if row.image.label is not None else "true class unknown")
    place.markdown(f"`{row.image.name}`  \n{truth}")


def _cell_place(place: DeltaGenerator, cell: Cell, picture: object) -> None:
    place.image(picture, width="stretch")
    mark = MARKS["dangerous"] if cell.dangerous else MARKS[cell.correct]
    flat = "  \n:red[flat map]" if map_range(cell.explanation.cam).flat else ""
    place.markdown(
        f"**{cell.predicted}** {cell.confidence:.1%}  \n{mark}{flat}  \n"
        f":gray[half-mass area {compare.fmt(cell.focus.half_mass_area, 3, True)} · "
        f"entropy {compare.fmt(cell.focus.entropy, 3)}]"
    )


@st.cache_data(show_spinner=False, max_entries=1024)
def _thumb_jpeg(image_sha: str, _preview: Image.Image) -> tuple[Image.Image, bytes]:
    """One photo fitted within :data:`DISPLAY_SIDE`, and as JPEG (once per photo)."""
    thumb = compare.fit_to(_preview, DISPLAY_SIDE)
    return thumb, to_jpeg(thumb)


@st.cache_data(show_spinner=False, max_entries=2048)
def _cell_jpeg(cell: str, scale: float | None, view: str, alpha: float, colormap: str, _thumb: Image.Image,
               _explanation: Explanation, _spec: object) -> bytes:
    """One cell's picture as JPEG, drawn once per (map, scale, view, opacity, colormap): a rerun
    or a method added draws only the pictures it has not drawn before."""
    return to_jpeg(compare.cell_picture(_thumb, _explanation, _spec, scale, view, alpha, colormap))


@st.cache_data(show_spinner=False, max_entries=512)
def _matrix_png(labels: tuple[str, ...], matrix: tuple[tuple[float, ...], ...], measure: str) -> bytes:
    return to_png(render_agreement_matrix(labels, matrix, measure))


def _row(comparison: compare.Comparison, index: int, columns: Sequence[str], tabbed: bool,
         manifest: Manifest, style: Style, key: str, cell_key: compare.CellKeyFn) -> None:
    """One photo: the original, each column's map with its marks, then the agreement (a
    one-line caption for one pair, a heatmap matrix with short axis names for more)."""
    row = comparison.rows[index]
    with st.container(border=True, key=key):
        places = st.columns([1] * (1 + len(columns)) + ([1] if len(columns) > 2 else []))
        thumb, thumb_jpeg = _thumb_jpeg(row.image.sha256, row.image.preview)
        scale = row.scale(style.normalisation)
        _image_place(places[0], row, thumb_jpeg)
        for place, column in zip(places[1:], columns, strict=False):
            cell = row.cells[column]
            picture = _cell_jpeg(f"{cell_key(Column.parse(column), row.image)}:{DISPLAY_SIDE}", scale, style.view,
                                 style.alpha, style.colormap, thumb, cell.explanation, manifest.input)
            _cell_place(place, cell, picture)
        pairs = [p for p in row.agreement if p.first in columns and p.second in columns]
        if len(pairs) == 1:
            pair = pairs[0]
            st.caption(f"Agreement: {comparison.label(pair.first)} vs {comparison.label(pair.second)}: "
                       f"IoU {compare.fmt(pair.iou)}, Spearman {compare.fmt(pair.spearman)}")
        elif pairs:
            matrix = agreement_matrix(comparison, columns, style.measure, row=index)
            short = tuple(short_name(Column.parse(c).model if tabbed else c) for c in columns)
            places[-1].image(_matrix_png(short, tuple(map(tuple, matrix)), style.measure), width="stretch",
                             caption=f"{AGREEMENT_MEASURES[style.measure]} of every two maps")


def show_grid(comparison: compare.Comparison, manifest: Manifest, methods: Sequence[str], style: Style,
              cell_key: compare.CellKeyFn) -> None:
    """The grid: rows = photos; columns = models x methods in one row, or one tab per method
    (only the open tab is drawn)."""
    groups = column_groups(comparison, methods)
    if groups[0][0] is None:
        labels = [comparison.label(key) for key in groups[0][1]]
        _header(labels)
        for index in range(len(comparison.rows)):
            _row(comparison, index, groups[0][1], False, manifest, style, f"compare_row_{index}", cell_key)
        return
    # Lazy tabs: only the open tab's rows run and reach the browser (adding a method adds a tab,
    # not 12 more rows of pictures and matrices on the page).
    tabs = st.tabs([METHOD_LABELS.get(method, method) for method, _ in groups], key=METHOD_TAB_KEY,
                   on_change="rerun")
    for tab, (method, columns) in zip(tabs, groups, strict=True):
        if tab.open is False:
            continue
        with tab:
            labels = [manifest.display_name(Column.parse(key).model) for key in columns]
            _header(labels)
            for index in range(len(comparison.rows)):
                _row(comparison, index, columns, True, manifest, style, f"compare_row_{method}_{index}",
                     cell_key)


def show_grid_agreement(comparison: compare.Comparison, measure: str) -> None:
    """The whole grid's agreement matrix (every column against every other, mean over the photos),
    as a picture at its own size (drawn at twice the display size, so its text stays sharp)."""
    columns = list(comparison.backbones)
    matrix = agreement_matrix(comparison, columns, measure)
    png = _matrix_png(tuple(comparison.label(key) for key in columns), tuple(map(tuple, matrix)), measure)
    width = Image.open(io.BytesIO(png)).width // MATRIX_SCALE
    st.image(png, width=width, caption=f"Mean {AGREEMENT_MEASURES[measure]} over {len(comparison.rows)} photos")
