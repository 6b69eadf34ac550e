"""The look-alike strip: beside a photo, its nearest training photos of the predicted and of the true class.

"It was called Lactarius because it resembles these Lactarius." One call,
:func:`lookalike_strip`, draws two rows of ``k`` training photos (class, cosine distance,
path, and their Grad-CAM overlay for the row's class when ``with_maps``). The training
photos' embeddings are built once per checkpoint and kept on disk
(:mod:`mushcam.lookalike`); in this process they are kept with ``st.cache_resource``, keyed by
the model identity and the training folder's version, so a rerun costs one forward pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from mushcam.data import ImageLoadError, LabelledImage, load_image
from mushcam.exceptions import MushcamError
from mushcam.lookalike import BuiltIndex, LookAlikes, Neighbour, build_index, look_alikes, training_photos
from mushcam.lookalike.store import default_embedding_dir
from mushcam.map_scale import map_range
from mushcam.render import DEFAULT_ALPHA, DEFAULT_COLORMAP, fit_within, overlay, upsample_cam
from ui import state

THUMB_SIDE = 256


def _folder_version(photos: list[LabelledImage]) -> str:
    """Changes when a training photo is added, removed or rewritten: a digest of (path, size, mtime)."""
    digest = hashlib.sha256()
    for photo in photos:
        stat = photo.path.stat()
        digest.update(f"{photo.relpath}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@st.cache_resource(show_spinner="Embedding the training photos (once per checkpoint; kept on disk)…", max_entries=4)
def _training_index(_ctx: state.AppContext, name: str, identity: state.ModelIdentity, data_root: str,
                    version: str) -> BuiltIndex:
    """The embeddings of ``data_root/train`` for the model ``name`` (``identity`` and ``version`` key it).

    On disk they are keyed like the maps (:func:`ui.state.map_digest`: checkpoint SHA-256 + entry fingerprint).
    """
    assert _ctx.manifest is not None
    loaded = state.get_loaded(_ctx, name)
    digest = state.map_digest(identity)
    return build_index(loaded.model, training_photos(data_root), _ctx.manifest.input, default_embedding_dir(), digest)


def training_index(ctx: state.AppContext, name: str, data_root: str | Path) -> BuiltIndex:
    """The model's embeddings of the training photos under ``data_root`` (built on first use)."""
    photos = training_photos(data_root)
    if not photos:
        raise MushcamError(f"no training photos under {data_root} (expected {data_root}/train/<Class>/<image>)")
    return _training_index(ctx, name, state.model_identity(ctx, name), str(data_root), _folder_version(photos))


def _overlay(ctx: state.AppContext, name: str, neighbour: Neighbour, picture: Image.Image, alpha: float,
             colormap: str) -> tuple[np.ndarray | Image.Image, str]:
    """The photo with its map for its own class drawn over it (from the CAM caches), and a note when the map is flat."""
    assert ctx.manifest is not None
    loaded = state.get_loaded(ctx, name)
    layer = state.cam_layer(ctx, name, loaded)
    class_idx = ctx.manifest.class_names.index(neighbour.label)
    explanation = state.cached_explanation(loaded.model, picture, ctx.manifest, state.model_identity(ctx, name),
                                           neighbour.sha256, layer, class_idx)
    shown = fit_within(picture, THUMB_SIDE)
    heat = upsample_cam(explanation.cam, shown.size)
    warning = map_range(explanation.cam).warning
    return overlay(shown, heat, alpha, colormap), f" · map {warning}" if warning else ""


def _row(ctx: state.AppContext, name: str, title: str, found: tuple[Neighbour, ...], data_root: Path,
         with_maps: bool, alpha: float, colormap: str) -> None:
    st.markdown(f"**{title}**")
    if not found:
        st.caption("No training photo of this class.")
        return
    for column, neighbour in zip(st.columns(len(found)), found, strict=True):
        try:
            picture = load_image(data_root / neighbour.path)
        except (OSError, ImageLoadError) as exc:
            column.caption(f"{neighbour.path}: cannot be read ({exc})")
            continue
        image, note = (_overlay(ctx, name, neighbour, picture, alpha, colormap) if with_maps
                       else (fit_within(picture, THUMB_SIDE), ""))
        column.image(image, caption=f"{neighbour.label} · distance {neighbour.distance:.3f}{note}", width="stretch")
        column.caption(neighbour.path)


def lookalike_strip(ctx: state.AppContext, name: str, image: Image.Image, image_sha256: str, data_root: str | Path,
                    true: str | None = None, k: int = 4, with_maps: bool = True, alpha: float = DEFAULT_ALPHA,
                    colormap: str = DEFAULT_COLORMAP) -> LookAlikes | None:
    """Draw the look-alike strip for model ``name`` and a photo; returns what it drew (None: shown as a message).

    ``data_root`` holds ``train/<Class>/``; ``true``: the photo's true class when known. The photo
    itself is never its own look-alike (excluded by SHA-256).
    """
    if ctx.manifest is None:
        st.info("No manifest: look-alike photos need a model.")
        return None
    root = Path(data_root).expanduser()
    try:
        built = training_index(ctx, name, root)
        loaded = state.get_loaded(ctx, name)
        found = look_alikes(loaded.model, image, ctx.manifest.input, built.index, ctx.manifest.class_names, true, k,
                            exclude_sha256=(image_sha256,))
    except MushcamError as exc:
        st.warning(f"Look-alike photos are not available: {exc}")
        return None
    st.subheader("Look-alike training photos")
    st.caption(f"Called {found.predicted} ({found.confidence:.1%}). Nearest training photos by cosine distance "
               f"(1 − cos) of {ctx.label(name)}'s pooled features, among {len(built.index):,} training photos.")
    _row(ctx, name, f"It resembles these {found.predicted}", found.of_predicted, root, with_maps, alpha, colormap)
    if found.true is not None and found.true != found.predicted:
        _row(ctx, name, f"Nearest {found.true} (the true class)", found.of_true, root, with_maps, alpha, colormap)
    if built.unreadable:
        st.caption(f"{len(built.unreadable)} training photo(s) could not be read and were left out.")
    return found


__all__ = ["lookalike_strip", "training_index"]
