"""Patterns page: what a model relies on across a whole test folder (clusters, shortcuts, focus, concepts)."""

import streamlit as st

st.set_page_config(page_title="Patterns · MushCAM", page_icon="🍄", layout="wide")

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
state.demo_banner(ctx)

from mushcam.cam import method_label  # noqa: E402
from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.map_scale import colormap_caption  # noqa: E402
from mushcam.patterns.run import PatternsSettings  # noqa: E402
from mushcam.patterns.strategies import GROUPINGS  # noqa: E402
from mushcam.render import DEFAULT_COLORMAP  # noqa: E402
from ui import patterns_support as support  # noqa: E402

st.title("Patterns: what does the model rely on?")
st.caption(
    "The maps of every test photo of one class are clustered (SpRAy): each cluster is one **strategy** the model "
    "uses. A cluster is flagged as a possible **shortcut** when its maps sit in a border band or a corner "
    "(watermarks, text, rulers), outside the mushroom, or on the same spot in every photo. Formulas: docs/patterns.md."
)
if ctx.manifest is None or not ctx.available:
    st.info("Load checkpoints (home page) to find patterns.", icon="🧩")
    st.stop()

folder, store = support.folder_and_store_inputs()
cols = st.columns(3)
model = cols[0].selectbox("Model", ctx.available, format_func=ctx.label, key="patterns_model")
group_by = cols[1].radio("Photos of a class", GROUPINGS, horizontal=True, key="patterns_group",
                         format_func=lambda g: "called it (predicted)" if g == "predicted" else "truly it (true)")
concepts = cols[2].number_input("Concepts per class (0: none)", 0, 8, 0, key="patterns_concepts")
propose = st.toggle("Propose object boxes by GrabCut for photos without one", key="patterns_propose")
if not folder:
    st.info("Give the test folder (ROOT/<Class>/<image>).", icon="📂")
    st.stop()
settings = PatternsSettings(group_by=group_by, concepts=int(concepts), propose_regions=propose)
try:
    result = support.patterns_job(ctx, folder, model, settings, store)
except (MushcamError, FileNotFoundError) as exc:
    st.error(str(exc), icon="🚫")
    st.stop()
if result is None:  # running (its progress bar and Stop are drawn) or stopped
    st.stop()
support.open_requested(str(result.data_root), model)
found = result.models[0]
data_root = str(result.data_root)
spec = ctx.manifest.input
map_label = method_label(found.maps.method)

st.subheader("Strategy clusters")
classes = {s.class_name: s for s in found.strategies}
chosen = st.selectbox("Class", list(classes), key="patterns_class")
strategies = classes[chosen]
flagged = sum(bool(c.flags) for c in strategies.clusters)
st.markdown(f"**{sum(c.size for c in strategies.clusters)} photos, {strategies.k} cluster(s)**"
            + (f" · :red[{flagged} flagged as a possible shortcut]" if flagged else " · none flagged"))
st.plotly_chart(support.scatter(strategies), key=support.SCATTER_KEY, on_select=support.on_scatter_click,
                selection_mode="points")
pick = st.selectbox("Or open a photo", [p.path for p in strategies.points], key="patterns_pick")
if st.button("Open on Explain", icon="🔎", key="patterns_open_button"):
    support.open_on_explain(data_root, pick, model)

st.caption(colormap_caption(DEFAULT_COLORMAP, "scaled to its own maximum (the mean map: each member's map divided by "
                                              "its sum, then averaged)") + " The first picture of each cluster is "
           "its mean map, then its typical photos.")
cams = {m.relpath: m.cam for m in found.maps.maps}
for cluster in strategies.clusters:
    with st.container(border=True):
        st.markdown(f"**Cluster {cluster.index}**: {cluster.size} photos · accuracy {cluster.accuracy:.0%} · "
                    f"mean confidence {cluster.mean_confidence:.0%}")
        for flag in cluster.flags:
            st.error(f"Shortcut? {flag.reason}.", icon="⚠️")
        if cluster.flags and st.button("Review on Errors (cause: shortcut)", icon="☠️",
                                       key=f"patterns_errors_{cluster.index}"):
            support.open_on_errors(chosen, group_by)
        mean_picture, mean_caption = support.mean_map_image(cluster)
        pictures, captions = [mean_picture], [mean_caption]
        for path in cluster.typical:
            picture, caption = support.photo_with_map(data_root, path, cams[path], spec, repr(spec), map_label)
            pictures.append(picture)
            captions.append(caption)
        st.image(pictures, caption=captions, width=support.PICTURE_WIDTH)

st.subheader("Focus on the mushroom")
saved = st.session_state.pop(support.SAVED_KEY, None)
if saved:
    st.success(saved + " The focus numbers below include it.", icon="✅")
if found.focus is None:
    st.caption("No object regions yet: draw a box on a photo below, turn on the GrabCut proposals above, or import "
               "boxes with `python -m mushcam patterns ... --regions boxes.csv` (or a COCO .json).")
else:
    f = found.focus
    st.markdown(f"On {f.n_photos} photos with a region: energy inside the object **{f.energy.mean:.0%}** "
                f"({f.energy.low:.0%}–{f.energy.high:.0%}), pointing game **{f.pointing.mean:.0%}** "
                f"({f.pointing.low:.0%}–{f.pointing.high:.0%}); a uniform map would get {f.uniform:.0%}.")
shas = {m.relpath: m.image_sha256 for m in found.maps.maps}
photos = [p.path for p in strategies.points]
photo = st.selectbox("Photo to box", photos, key="patterns_box_photo",
                     format_func=lambda p: f"{p} · {result.regions[p].source} box" if p in result.regions
                     else f"{p} · no box")
region = result.regions.get(photo)
left, right = st.columns([2, 1])
with left:
    support.box_editor(data_root, photo, shas[photo], store, region)
if region is not None:
    with right.form("patterns_box_form"):
        st.caption(f"The stored box ({region.source}), in the photo's pixels: correct it, or accept it as it is.")
        edges = [st.number_input(name, min_value=0.0, value=float(v), key=f"patterns_box_{photo}_{name}")
                 for name, v in zip(("x0", "y0", "x1", "y1"), region.box, strict=True)]
        accept = st.form_submit_button("Accept this box", icon="✅", key="patterns_box_accept")
    if accept:
        try:
            support.save_region(store, shas[photo], support.Region(photo, *edges))
            st.session_state[support.SAVED_KEY] = f"Saved the box of {photo} as accepted."
            st.rerun()
        except MushcamError as exc:
            st.error(str(exc), icon="🚫")

if found.concepts:
    st.subheader("Concepts (Deep Feature Factorization)")
    st.caption("Each concept is a direction in the layer's channels shared by this class's photos; its pictures are "
               "the photos where it is strongest, with the concept's weight at each place over them (colour bar: "
               "the raw weight).")
    for cc in found.concepts:
        if cc.class_name == chosen:
            for c in cc.concepts:
                st.markdown(f"**Concept {c.index}**: {c.share:.0%} of the activation, contributes "
                            f"**{c.contribution:+.3g}** to the {cc.class_name} logit (mean {cc.mean_logit:+.3g})")
                pictures, captions = support.concept_images(data_root, c, spec)
                st.image(pictures, caption=captions, width=support.PICTURE_WIDTH)
