"""Patterns page: what a model relies on across a whole test folder (clusters, shortcuts, focus, concepts)."""

import streamlit as st

st.set_page_config(page_title="Patterns · MushCAM", page_icon="🍄", layout="wide")

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
state.demo_banner(ctx)

from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.patterns.run import PatternsSettings  # noqa: E402
from mushcam.patterns.strategies import GROUPINGS  # noqa: E402
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
    result = support.cached_patterns(ctx, folder, model, settings, store)
except (MushcamError, FileNotFoundError) as exc:
    st.error(str(exc), icon="🚫")
    st.stop()
support.open_requested(str(result.data_root), model)
found = result.models[0]

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
    support.open_on_explain(str(result.data_root), pick, model)

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
        pictures = [support.mean_map_image(cluster)]
        captions = ["mean map"]
        for path in cluster.typical:
            pictures.append(support.photo_with_map(str(result.data_root), path, cams[path], ctx.manifest.input,
                                                   repr(ctx.manifest.input)))
            captions.append(path)
        st.image(pictures, caption=captions, width=150)

st.subheader("Focus on the mushroom")
if found.focus is None:
    st.caption("No object regions yet: turn on the GrabCut proposals above, or import boxes with `python -m mushcam "
               "patterns ... --regions boxes.csv` (or a COCO .json). Drawing a new box here is not built yet.")
else:
    f = found.focus
    st.markdown(f"On {f.n_photos} photos with a region: energy inside the object **{f.energy.mean:.0%}** "
                f"({f.energy.low:.0%}–{f.energy.high:.0%}), pointing game **{f.pointing.mean:.0%}** "
                f"({f.pointing.low:.0%}–{f.pointing.high:.0%}); a uniform map would get {f.uniform:.0%}.")
    shas = {m.relpath: m.image_sha256 for m in found.maps.maps}
    boxed = [p.path for p in strategies.points if p.path in result.regions]
    if boxed:
        photo = st.selectbox("Check a box", boxed, key="patterns_box_photo")
        region = result.regions[photo]
        left, right = st.columns([2, 1])
        left.image(support.photo_with_box(str(result.data_root), photo, region), caption=f"{photo} · {region.source}")
        with right.form("patterns_box_form"):
            edges = [st.number_input(name, min_value=0.0, value=float(v), key=f"patterns_box_{photo}_{name}")
                     for name, v in zip(("x0", "y0", "x1", "y1"), region.box, strict=True)]
            accept = st.form_submit_button("Accept this box", icon="✅")
        if accept:
            try:
                support.save_region(store, shas[photo], support.Region(photo, *edges))
                st.success("Saved as accepted; the focus numbers are recomputed with it.", icon="✅")
            except MushcamError as exc:
                st.error(str(exc), icon="🚫")

if found.concepts:
    st.subheader("Concepts (Deep Feature Factorization)")
    for cc in found.concepts:
        if cc.class_name == chosen:
            for c in cc.concepts:
                st.markdown(f"Concept {c.index}: {c.share:.0%} of the activation, contributes "
                            f"{c.contribution:+.2f} to the {cc.class_name} logit (mean {cc.mean_logit:+.2f})")
