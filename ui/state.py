"""Streamlit glue shared by the pages: sidebar settings, cached models and explanations.

The Streamlit glue lives in ``ui/`` (this module, plus one helper per page); ``mushcam``
stays free of it. Caches: ``st.cache_resource`` for models (one copy per checkpoint file version),
``st.cache_data`` for explanations keyed by (model identity, image hash, layer, class), on
top of the on-disk CAM cache that the batch pipeline fills too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import streamlit as st
import torch
from PIL import Image
from streamlit.errors import StreamlitAPIException

from mushcam import catalog
from mushcam.cache import CamCache, default_cache_dir
from mushcam.cam import DEFAULT_METHOD
from mushcam.data import DISPLAY_MAX_SIDE, ImageLoadError, decode_image, image_sha256, read_bytes
from mushcam.exceptions import MushcamError
from mushcam.explain import Explanation
from mushcam.explain import cached_explanation as disk_cached_explanation  # the model run through CamCache
from mushcam.finite import naming_model
from mushcam.manifest import Manifest, ManifestError, default_checkpoint_dir, load_manifest
from mushcam.models import DISPLAY_NAMES
from mushcam.render import fit_within

DEMO_KEY = "demo_mode"
DEMO_UNAVAILABLE_KEY = "demo_unavailable"  # demo models whose ImageNet weights could not be had this session
DEMO_UNAVAILABLE_NOTE = "ImageNet weights not in the torch cache"
FOLDER_KEY = "checkpoint_folder"
SAMPLES_ENV = "MUSHCAM_SAMPLES"
MAX_DISPLAY_SIDE = DISPLAY_MAX_SIDE  # images are shown and rendered at most this large: fast sliders
NAVIGATION = (
    ("app.py", "Home", "🍄"),
    ("pages/1_Explain.py", "Explain", "🔎"),
    ("pages/2_Compare.py", "Compare", "⚖️"),
    ("pages/3_Errors.py", "Errors", "☠️"),
    ("pages/4_Trust.py", "Trust", "🧪"),
    ("pages/5_Patterns.py", "Patterns", "🧩"),
)


@dataclass(frozen=True)
class AppContext:
    """What every page needs: the manifest (or why there is none) and the usable models."""

    folder: Path
    manifest: Manifest | None
    manifest_error: str
    demo: bool
    statuses: list[catalog.ModelStatus] = field(default_factory=list)

    @property
    def available(self) -> list[str]:
        """Names of the models that can be used now (checkpoint file present, or demo mode)."""
        if self.demo:
            return [s.name for s in self.statuses if s.status in ("found", "download")]
        return [s.name for s in self.statuses if s.status == "found"]

    def label(self, name: str) -> str:
        """What the pages call the model ``name``: its manifest label, a preset's name, or the name."""
        if self.manifest is not None:
            return self.manifest.display_name(name)
        return DISPLAY_NAMES.get(name, name)


def display_name(name: str) -> str:
    """A preset's display name (pages use :meth:`AppContext.label`, which knows the manifest's labels)."""
    return DISPLAY_NAMES.get(name, name)


def sidebar() -> AppContext:
    """Sidebar controls shared by all pages; returns the current context."""
    default_folder = str(default_checkpoint_dir())
    st.session_state.setdefault(FOLDER_KEY, default_folder)
    st.session_state.setdefault(DEMO_KEY, False)
    with st.sidebar:
        navigation()
        persistent_widget(st.text_input, FOLDER_KEY,
            "Checkpoint folder",
            help="Folder with manifest.json and the weights (default: $MUSHCAM_CHECKPOINTS or checkpoints/)",
        )
        persistent_widget(st.toggle, DEMO_KEY,
            "Demo mode (ImageNet weights)",
            help="torchvision's ImageNet-pretrained backbones instead of your checkpoints; "
            "ImageNet has 1000 classes, eight of them fungi. No toxicity information.",
        )
    cache_notice()
    ctx = context(st.session_state[FOLDER_KEY], st.session_state[DEMO_KEY])
    failed = st.session_state.get(DEMO_UNAVAILABLE_KEY, set())
    if ctx.demo and failed:  # tried once this session and not to be had: not offered again
        ctx = replace(ctx, statuses=[replace(s, status="unavailable", reason=DEMO_UNAVAILABLE_NOTE)
                                     if s.name in failed else s for s in ctx.statuses])
    return ctx


def cache_notice() -> None:
    """Say so when the on-disk map cache cannot be written: maps are then kept in memory only."""
    problem = CamCache(default_cache_dir()).writable()
    if problem:
        st.warning(f"{problem}. Maps are kept in memory for this session only; set $MUSHCAM_CACHE to a "
                   "writable folder to share them with `python -m mushcam gradcam`.", icon="💾")


@contextlib.contextmanager
def shown_errors(model: str | None = None) -> Iterator[None]:
    """Inside this block, a library error (:class:`MushcamError`) is shown as one message and
    the page stops there: the user sees what to do, never a traceback. ``model`` names the
    model in messages about its outputs."""
    try:
        with naming_model(display_name(model)) if model else contextlib.nullcontext():
            yield
    except MushcamError as exc:
        st.error(str(exc), icon="🚫")
        st.stop()


def persistent_widget(widget, key: str, label: str, **kwargs) -> None:  # noqa: ANN001 - a Streamlit widget function
    """A sidebar widget whose value survives page changes.

    Streamlit forgets a widget's state when the user opens another page, so the value lives
    under ``key`` and the widget under ``key + '_widget'``, seeded from it on every run and
    copied back on change. The seeding is unconditional: a widget key left over from the
    previous page still holds the value but is dropped once this page's run ends, which
    showed the field empty on every other page visit.
    """
    widget_key = f"{key}_widget"
    st.session_state[widget_key] = st.session_state[key]

    def remember() -> None:
        st.session_state[key] = st.session_state[widget_key]

    widget(label, key=widget_key, on_change=remember, **kwargs)


def navigation() -> None:
    """Links to the four pages (Streamlit's own list would call the home page 'app')."""
    for target, label, icon in NAVIGATION:
        try:
            st.page_link(target, label=label, icon=icon)
        except StreamlitAPIException:
            pass  # a page run on its own (as AppTest does) has no sibling pages to link to
    st.divider()


def context(folder: str, demo: bool) -> AppContext:
    path = Path(folder).expanduser()
    if demo:
        manifest = catalog.imagenet_manifest()
        statuses = [
            replace(s, status="found", reason="") if catalog.demo_weights_available(s.name)
            else replace(s, status="download", reason="fetched on first use")
            for s in catalog.checkpoint_statuses(manifest)
        ]
        return AppContext(path, manifest, "", True, statuses)
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        return AppContext(path, None, str(exc), False, [])
    return AppContext(path, manifest, "", False, catalog.checkpoint_statuses(manifest))


def demo_banner(ctx: AppContext) -> None:
    """Every page says so when it shows demo-mode (ImageNet) models."""
    if ctx.demo:
        st.warning(
            "**Demo mode**: ImageNet-pretrained backbones (1000 everyday classes, eight fungi), "
            "not mushroom-genus checkpoints. No toxicity information.",
            icon="🧪",
        )


def file_version(path: Path) -> str:
    """Changes whenever the file is replaced: (mtime_ns, size); keys the model cache."""
    stat = path.stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"


@dataclass(frozen=True)
class ModelIdentity:
    """What makes a loaded model what it is; any change to it is a new model for every cache.

    ``entry_digest`` digests the manifest entry as it affects the model (architecture, layer,
    head activation, code and its file's version, keyword arguments; not the label), so two
    names sharing a checkpoint file, or an edited entry, never share a cached model;
    ``fingerprint`` (:func:`mushcam.catalog.entry_fingerprint`) is what the checkpoint's hash
    is combined with in the on-disk CAM cache. Streamlit hashes it field by field.
    """

    checkpoint: str  # the checkpoint file's path
    version: str  # :func:`file_version` of it, or "absent"
    num_classes: int
    entry_digest: str
    fingerprint: str

    @property
    def key(self) -> str:
        """``'<checkpoint>::<version>::<class count>::<entry digest>::<fingerprint>'``, as text."""
        return f"{self.checkpoint}::{self.version}::{self.num_classes}::{self.entry_digest}::{self.fingerprint}"


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def cached_entry(_manifest: Manifest, name: str, identity: ModelIdentity, demo: bool) -> catalog.LoadedModel:
    """The model ``name``, loaded, with how it was understood; one copy per :func:`model_identity`."""
    return catalog.load_catalog_entry(_manifest, name, demo=demo)


def model_identity(ctx: AppContext, name: str) -> ModelIdentity:
    """The :class:`ModelIdentity` of the model ``name`` now: it keys the model cache and the
    explanation caches, and names the file hashed for the shared on-disk CAM cache."""
    assert ctx.manifest is not None
    path = ctx.manifest.checkpoint_path(name)
    version = file_version(path) if path.is_file() else "absent"
    return ModelIdentity(str(path), version, ctx.manifest.num_classes, _entry_digest(ctx.manifest, name),
                         catalog.entry_fingerprint(ctx.manifest, name))


def _entry_digest(manifest: Manifest, name: str) -> str:
    entry = manifest.models[name]
    fields: dict[str, object] = {
        "arch": entry.arch, "layer": entry.layer, "head_activation": entry.head_activation,
        "code": entry.code, "kwargs": entry.kwargs,
    }
    if entry.code:  # the user's file: a new version of it is a new model
        code_file = manifest.root / entry.code.split(":", 1)[0]
        fields["code_version"] = file_version(code_file) if code_file.is_file() else "absent"
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def get_loaded(ctx: AppContext, name: str) -> catalog.LoadedModel:
    """Load (once) and return the model ``name`` with how it was understood; raises
    :class:`mushcam.exceptions.MushcamError` (or, for a broken file, OSError) with a plain reason."""
    assert ctx.manifest is not None
    return cached_entry(ctx.manifest, name, model_identity(ctx, name), ctx.demo)


def get_model(ctx: AppContext, name: str) -> torch.nn.Module:
    """Load (once) and return the model ``name``'s module; raises with a plain reason on failure."""
    return get_loaded(ctx, name).model


def cam_layer(ctx: AppContext, name: str, loaded: catalog.LoadedModel) -> str:
    """The layer ``name``'s maps are computed (and cached) at: the manifest's spelling when it
    names one (shared with the command line's cache), else the one chosen at load."""
    assert ctx.manifest is not None
    return catalog.cam_layer(ctx.manifest, name, loaded) or loaded.layer


@st.cache_data(show_spinner=False, max_entries=32)
def checkpoint_sha256(identity: ModelIdentity) -> str:
    """SHA-256 of the checkpoint file of a :func:`model_identity`.

    Memoised in the on-disk CAM cache too (``CamCache.checkpoint_sha256``), shared with the
    command line, so a restarted app does not hash a 100 MB file again.
    """
    return CamCache(default_cache_dir()).checkpoint_sha256(identity.checkpoint)


def map_digest(identity: ModelIdentity) -> str:
    """The model's part of every on-disk map key: its checkpoint's hash with its entry's fingerprint."""
    return catalog.cache_digest(checkpoint_sha256(identity), identity.fingerprint)


@dataclass(frozen=True)
class LoadedImage:
    """An uploaded or sample photo: full resolution for the model, a smaller copy for display."""

    name: str
    image: Image.Image  # RGB at full resolution: what the model and the caches see
    display: Image.Image  # at most MAX_DISPLAY_SIDE on its longer side: what pages draw
    sha256: str  # of the file's bytes


@st.cache_data(show_spinner=False, max_entries=32)
def _decode(data: bytes) -> tuple[Image.Image, Image.Image, str]:
    image = decode_image(data)
    return image, fit_within(image, MAX_DISPLAY_SIDE), image_sha256(data)


def load_uploaded(name: str, data: bytes) -> LoadedImage:
    """Decode an upload or a sample file; raises :class:`ImageLoadError` with a clear reason."""
    read_bytes(data)  # size and emptiness checks with the same messages as files
    image, display, digest = _decode(data)
    return LoadedImage(name, image, display, digest)


@st.cache_data(show_spinner=False, max_entries=512)
def cached_explanation(
    _model: torch.nn.Module,
    _image: Image.Image,
    _manifest: Manifest,
    identity: ModelIdentity,
    image_sha: str,
    layer: str,
    class_idx: int | None,
    method: str = DEFAULT_METHOD,
    versus: int | None = None,
) -> Explanation:
    """Prediction + raw map, computed once per (model, image, layer, class, CAM method, versus class).

    Two levels: this in-memory cache, then the on-disk CAM cache shared with
    ``python -m mushcam gradcam`` ($MUSHCAM_CACHE), so a map the pipeline made needs no
    model call here. ``identity`` is :func:`model_identity`.
    """
    cache = CamCache(default_cache_dir())
    digest = map_digest(identity)
    return disk_cached_explanation(
        cache, _model, _image, _manifest.input, layer, class_idx, digest, image_sha, method, versus=versus
    )


def sample_folder() -> Path | None:
    """A folder of sample photos (``$MUSHCAM_SAMPLES``, e.g. a test split), if configured."""
    configured = os.environ.get(SAMPLES_ENV, "").strip()
    if configured and Path(configured).expanduser().is_dir():
        return Path(configured).expanduser()
    return None


__all__ = [
    "AppContext",
    "ImageLoadError",
    "LoadedImage",
    "ModelIdentity",
    "cached_explanation",
    "cached_entry",
    "cam_layer",
    "checkpoint_sha256",
    "context",
    "demo_banner",
    "display_name",
    "get_loaded",
    "get_model",
    "model_identity",
    "load_uploaded",
    "sample_folder",
    "sidebar",
]
