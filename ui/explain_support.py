"""Explain-page helpers: where the photo comes from, labels for the widgets (Streamlit glue)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch
from PIL import Image

from mushcam.cache import CamCache, default_cache_dir
from mushcam.cam import (
    DEFAULT_METHOD,
    CostEstimate,
    LayerProbe,
    contrast_labels,
    estimate_cost,
    get_method,
    method_label,
    probe_layer,
)
from mushcam.catalog import LoadedModel
from mushcam.data import read_bytes, scan_images
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation, cached_explanation, cached_only, explanation_title, render_explanation
from mushcam.manifest import Manifest, file_safe_name
from mushcam.map_scale import colormap_caption, map_range, with_colorbar
from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, colormap_lut, to_png
from mushcam.toxicity import Toxicity
from ui import cam_jobs, state

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"]
UPLOAD, SAMPLE = "Upload a photo", "Sample folder"


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    true_label: str | None = None  # known for sample-folder photos (their class folder)


@st.cache_data(show_spinner=False, ttl=60)
def sample_files(folder: str) -> list[tuple[str, str]]:
    """(relative path, class folder) of every image in a sample folder (``root/<Class>/*``)."""
    return [(item.relpath, item.label) for item in scan_images(folder).images]


@st.cache_data(show_spinner=False, ttl=60)
def sample_skips(folder: str) -> list[tuple[str, str]]:
    """(printable path, reason) of the sample folder's files that cannot be offered."""
    return scan_images(folder).skipped


OPENED_FOLDER_KEY = "explain_folder"  # set by another page (Trust) that opens one of its photos here


def choose_photo() -> Photo | None:
    """Upload widget, or a pick from the sample folder (or the folder another page opened a photo from)."""
    opened = st.session_state.get(OPENED_FOLDER_KEY)
    folder = Path(opened) if opened and Path(opened).is_dir() else state.sample_folder()
    source = UPLOAD
    if folder is not None:
        source = st.radio("Photo source", [UPLOAD, SAMPLE], horizontal=True, key="source")
    if source == UPLOAD:
        uploaded = st.file_uploader(
            "Photo of a mushroom (jpg, png, webp, bmp, tiff)", type=UPLOAD_TYPES, key="upload"
        )
        if uploaded is None:
            st.info("Upload a photo to see what the model predicts and where it looks.", icon="📷")
            return None
        return Photo(uploaded.name, uploaded.getvalue())
    try:
        files, skips = sample_files(str(folder)), sample_skips(str(folder))
    except MushcamError as exc:
        st.error(f"The sample folder cannot be read: {exc}", icon="🚫")
        return None
    if skips:
        st.warning(f"{len(skips)} file(s) in the sample folder are left out: "
                   + "; ".join(f"`{path}`: {reason}" for path, reason in skips[:3]), icon="📁")
    if not files:
        st.warning(f"The sample folder {folder} holds no images in `<Class>/` sub-folders.")
        return None
    relpath = st.selectbox(
        f"Sample photo ({len(files)} in {folder})", [f for f, _ in files], key="sample",
    )
    label = dict(files)[relpath]
    path = Path(folder) / relpath
    try:
        data = read_bytes(path)  # stat first: a 3 GB file is refused by its size, never read
    except MushcamError as exc:
        st.error(f"Cannot read {relpath}: {exc}", icon="🚫")
        return None
    return Photo(path.name, data, label)


def model_summary(loaded: LoadedModel) -> str:
    """One line on how the chosen model was understood: architecture, head, layer, user code."""
    parts = [f"`{loaded.arch}`"]
    if loaded.head:
        parts.append(f"head {loaded.head}")
    parts.append(f"layer `{loaded.layer}` ({loaded.layer_note})")
    if loaded.runs_code:
        parts.append(f"⚠️ runs code from `{Path(loaded.runs_code).name}`")
    return " · ".join(parts)


def target_label(class_idx: int | None, prediction: Explanation, manifest: Manifest) -> str:
    """Option text: 'Predicted: Amanita (91.2%)' or 'Boletus (3.1%) ☠'."""
    names = manifest.class_names
    if class_idx is None:
        index = prediction.predicted_idx
        return f"Predicted: {names[index]} ({prediction.confidence:.1%})"
    mark = " ☠" if manifest.toxicity(class_idx) == Toxicity.POISONOUS else ""
    return f"{names[class_idx]} ({float(prediction.probabilities[class_idx]):.1%}){mark}"


def versus_selector(place: object, prediction: Explanation, manifest: Manifest, explained: int,
                    method: str) -> int | None:
    """The "versus" class of a contrastive map, or None: a toggle, then the classes by probability
    (default: the runner-up). Only gradient methods of the class's logit can contrast."""
    if not place.toggle("Versus another class", key="contrast",  # type: ignore[attr-defined]
                        help="What pushed the explained class above a second one: the map of y_A − y_B."):
        return None
    order = torch.argsort(prediction.probabilities, descending=True, stable=True).tolist()
    others = [int(i) for i in order if int(i) != explained]
    versus = place.selectbox(  # type: ignore[attr-defined]
        "Versus", others, key="versus", format_func=lambda i: target_label(i, prediction, manifest),
        help="Default: the most probable other class (the runner-up).")
    entry = get_method(method)
    if not entry.can_contrast:
        able = ", ".join(contrast_labels())
        place.caption(f"{entry.label} cannot contrast two classes: choose one that can "  # type: ignore[attr-defined]
                      f"({able}). Showing its plain map.")
        return None
    return versus


def truth_line(true_label: str, predicted: str, manifest: Manifest) -> str:
    """'True class: X · correct' or '... wrong' (with the dangerous case named)."""
    if true_label == predicted:
        return f"True class: **{true_label}** · :green[correct]"
    dangerous = (
        true_label in manifest.class_names
        and manifest.toxicity(true_label) == Toxicity.POISONOUS
        and manifest.toxicity(predicted) == Toxicity.EDIBLE
    )
    kind = ":red[**poisonous called edible**]" if dangerous else ":orange[wrong]"
    return f"True class: **{true_label}** · {kind}"


def download_name(image_name: str, model_name: str, class_name: str, method: str = DEFAULT_METHOD) -> str:
    """A file name that says what the figure is (method, image, model, class), safe on every file system."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image_name).stem)[:60] or "image"
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", class_name)[:40]
    return f"{file_safe_name(method)}_{stem}_{file_safe_name(model_name)}_{label}.png"


# --- maps that take long: an estimate first, then a worker with progress and Stop ------------------

@st.cache_data(show_spinner=False, max_entries=64)
def layer_probe(_model: torch.nn.Module, identity: state.ModelIdentity, layer: str, size: int) -> LayerProbe:
    """K at ``layer`` and the model's forward time at the manifest's input size (one probe per model x layer)."""
    inputs = torch.zeros(1, 3, size, size)
    return probe_layer(_model, inputs, layer)


def cost_of(model: torch.nn.Module, identity: state.ModelIdentity, layer: str, size: int, method: str) -> CostEstimate:
    """What ``method`` would cost on one photo with this model (passes and seconds, measured here)."""
    return estimate_cost(method, layer_probe(model, identity, layer, size))


@dataclass(frozen=True)
class MapAsk:
    """One map the page wants: which model, photo, layer, class and method."""

    model: torch.nn.Module
    image: Image.Image
    manifest: Manifest
    identity: state.ModelIdentity
    image_sha: str
    layer: str
    class_idx: int | None
    method: str
    versus: int | None = None

    @property
    def key(self) -> str:
        return f"{self.identity.key}|{self.image_sha}|{self.layer}|{self.class_idx}|{self.method}|{self.versus}"


def long_map(ask: MapAsk, cost: CostEstimate, model_label: str, class_name: str) -> Explanation | None:
    """The map of a long method: from the caches, from a finished job, or None (the panel is drawn).

    Never starts anything by itself: a model or photo change shows the estimate and a button,
    so a Score-CAM left selected does not silently start minutes of work.
    """
    cache = CamCache(default_cache_dir())
    digest = state.map_digest(ask.identity)
    hit = cached_only(cache, ask.manifest.input, ask.layer, ask.class_idx, digest, ask.image_sha, ask.method,
                      ask.versus)
    if hit is not None:
        return hit
    job = cam_jobs.job_for(ask.key)
    if job is not None and not job.running and job.error is None:
        return job.result
    _long_map_panel(ask, cost, model_label, class_name, job, cache, digest)
    return None


def _long_map_panel(ask: MapAsk, cost: CostEstimate, model_label: str, class_name: str,
                    job: cam_jobs.CamJob | None, cache: CamCache, digest: str) -> None:
    if job is not None and job.active:
        _progress(ask.key)
        return
    if job is not None and job.error is not None and not job.stopped:
        if not isinstance(job.error, MushcamError):
            raise job.error
        st.error(f"{cost.label} failed: {job.error}", icon="🚫")
    elif job is not None:
        st.info(f"{cost.label} was stopped; nothing was kept. Start it again when you want it.", icon="⏹️")
    st.info(
        f"**{cost.label}** of {model_label} for {class_name} runs about **{cost.passes:,.0f} forward passes**: "
        f"roughly **{cam_jobs.format_seconds(cost.seconds)}** on this machine. The prediction is final already; "
        "the map is computed only when you ask, and you can stop it.", icon="⏱️")
    if st.button(f"Compute {cost.label}", key="start_long_map", type="primary", icon="▶️"):
        def work(progress: Callable[[int, int], None]) -> Explanation:
            return cached_explanation(cache, ask.model, ask.image, ask.manifest.input, ask.layer, ask.class_idx,
                                      digest, ask.image_sha, ask.method, progress, ask.versus)

        cam_jobs.start_job(ask.key, cost.label, work)
        st.rerun()


@st.fragment(run_every=cam_jobs.POLL_SECONDS)
def _progress(key: str) -> None:
    """Progress of the running job, redrawn twice a second; Stop; a full rerun once it is over."""
    cam_jobs.show_progress(key, _long_map_text, "stop_long_map")


def _long_map_text(job: cam_jobs.CamJob) -> str:
    eta = job.eta_seconds()
    if eta is None:
        return f"{job.label}: starting…"
    return f"{job.label}: {job.done:,} of {job.total:,} channels · about {cam_jobs.format_seconds(eta)} left"


@st.fragment
def views_panel(loaded: state.LoadedImage, explanation: Explanation, manifest: Manifest, label: str,
                name: str) -> None:
    """The four views with their colour bar, alpha and colormap: a fragment, so moving a slider
    redraws only this part of the page (no model call, no rerun of the page above)."""
    names = manifest.class_names
    c1, c2 = st.columns(2)
    alpha = c1.slider("Heat-map opacity (alpha)", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key="alpha")
    colormap = c2.selectbox("Colormap", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="colormap")
    views = render_explanation(loaded.display, explanation, manifest, label, alpha, colormap)
    scale = map_range(explanation.cam)
    lut = colormap_lut(colormap)
    map_name = method_label(explanation.method)
    st.markdown(f"**{explanation_title(explanation, manifest, label)}**")
    if scale.warning is not None:
        st.warning(scale.warning[0].upper() + scale.warning[1:], icon="🟰")
    tabs = st.tabs(["Overlay", "Heatmap", "Original", "Combined"])
    tabs[0].image(with_colorbar(views.overlay, lut, scale.high, map_name, scale.flat), width="stretch",
                  output_format="JPEG")
    tabs[1].image(with_colorbar(views.heatmap, lut, scale.high, map_name, scale.flat), width="stretch",
                  output_format="JPEG")
    tabs[2].image(views.original, width="stretch", output_format="JPEG")
    tabs[3].image(views.combined, width="stretch", output_format="JPEG")
    st.download_button(
        "Download the combined figure (PNG)",
        data=lambda: to_png(views.combined),
        file_name=download_name(loaded.name, name, names[explanation.class_idx], explanation.method),
        mime="image/png",
        key="download_combined",
        icon="⬇️",
    )
    crop = " Grey: outside the centre crop the network saw." if manifest.input.resize == "center_crop" else ""
    st.caption(colormap_caption(colormap) + crop)
