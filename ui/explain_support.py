"""Explain-page helpers: where the photo comes from, labels for the widgets (Streamlit glue)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from mushcam.catalog import LoadedModel
from mushcam.data import scan_images
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation
from mushcam.manifest import Manifest, file_safe_name
from mushcam.toxicity import Toxicity
from ui import state

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
        data = path.read_bytes()
    except OSError as exc:
        st.error(f"Cannot read {relpath}: {exc}")
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


def download_name(image_name: str, model_name: str, class_name: str) -> str:
    """A file name that says what the figure is (image, model, class), safe on every file system."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image_name).stem)[:60] or "image"
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", class_name)[:40]
    return f"gradcam_{stem}_{file_safe_name(model_name)}_{label}.png"
