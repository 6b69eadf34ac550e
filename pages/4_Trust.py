"""Trust page: is the map faithful to the model? Faithfulness per model x method, sanity checks."""

import streamlit as st

st.set_page_config(page_title="Trust · MushCAM", page_icon="🍄", layout="wide")

# The title first: the imports below take seconds on a cold start, and the page must not stay blank.
st.title("Can the map be trusted?")
st.caption(
    "A map is **faithful** when the region it marks is what drives the score: deleting it first should make "
    "the probability fall fast (low deletion AUC), restoring it first should make it rise fast (high insertion "
    "AUC). A random map is the floor, the map turned upside down the ceiling. The **sanity check** destroys the "
    "model's parameters from the logits down: a map that does not change is not explaining the model."
)

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
state.demo_banner(ctx)

from mushcam.cam import method_names  # noqa: E402
from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.trust.report import least_faithful  # noqa: E402
from mushcam.trust.sanity import FLAG_THRESHOLD  # noqa: E402
from ui import store_picker  # noqa: E402
from ui import trust_support as support  # noqa: E402

store_path = store_picker.store_path_input()
chosen_folder = support.folder_input()  # the only folder photos are read from (shared with the Errors page)
try:
    with st.spinner("Reading the results store…"):
        contents, version = support.load_contents(store_path)
except MushcamError as exc:  # a missing store: how to make one; a damaged one: which run, and what to do
    (st.info if "no results store" in str(exc) else st.error)(str(exc), icon="📂")
    st.stop()
path_key = str(store_path)

# --- the table ----------------------------------------------------------------------------
st.subheader("Faithfulness per model × method")
folder = None  # where photos are read from: the user's folder, once the page has checked it
if not contents.faithfulness:
    st.info(f"{store_path} holds no faithfulness results yet. Make them with: `python -m mushcam faithfulness "
            f"--data TEST --methods gradcam --out {store_path}`", icon="📂")
else:
    rows = support.rows_for(path_key, version)
    parts = support.table_tabs(support.table(rows))
    for i, (tab, (_, columns, config)) in enumerate(zip(st.tabs([p[0] for p in parts]), parts, strict=True)):
        tab.dataframe(columns, hide_index=True, column_config=config,
                      key="trust_table" if i == 0 else f"trust_table_{i}")
    st.caption(
        "Mean over images, with the bootstrap 95% interval in brackets. Scores are the softmax probability of "
        "the class each map explains (the predicted one). Average Drop: how much of that probability is lost "
        "when only what the map marks is kept; Increase: share of images where that raises it; ROAD: "
        "(least-relevant-first − most-relevant-first) / 2 after noisy linear imputation."
    )

    # --- curves -----------------------------------------------------------------------------
    runs = support.labelled_runs(contents.faithfulness)  # label -> run
    chosen = st.multiselect("Curves of", list(runs), default=list(runs)[:6], key="trust_curves")
    if chosen:
        try:
            labelled = [(label, support.curves_for(path_key, version, runs[label].frun_id)) for label in chosen]
        except MushcamError as exc:
            st.error(str(exc), icon="🚫")
            labelled = []
        if labelled:
            left, right = st.columns(2)
            left.plotly_chart(support.curves_figure("deletion", labelled), key="deletion_chart")
            right.plotly_chart(support.curves_figure("insertion", labelled), key="insertion_chart")
            st.caption("Solid: the map; dotted: a random map on the same grid (the floor). Deletion: lower is "
                       "better; insertion: higher is better. A weak model's curves sit close to its floor.")

    # --- least faithful images ------------------------------------------------------------------
    st.subheader("Where the map is least faithful")
    picked = st.selectbox("Model × method", list(runs), key="trust_worst_run")
    run = runs[picked]
    folder = support.photo_folder(chosen_folder, run.key.data_root)
    st.caption("The images with the smallest insertion AUC − deletion AUC: restoring what the map marks helps "
               "little, and deleting it hurts little. Open one on the Explain page to look at it.")
    support.photo_cards(ctx, run, least_faithful(run, 6), folder)

# --- sanity ---------------------------------------------------------------------------------
st.subheader("Sanity check: do the maps depend on the model?")
if contents.sanity:
    st.plotly_chart(support.sanity_figure([(support.run_label(r), r.result) for r in contents.sanity]),
                    key="sanity_chart")
    for r in contents.sanity:
        verdict = (f":red[**flagged**]: mean Spearman over the cascade {r.result.score:.2f} ≥ {FLAG_THRESHOLD}"
                   if r.result.flagged else f"passes: mean Spearman over the cascade {r.result.score:.2f}")
        st.markdown(f"- {support.run_label(r)} ({len(r.image_paths)} images): {verdict}")
else:
    st.caption("No stored sanity check yet (`python -m mushcam sanity --data TEST --images 16 --model NAME "
               f"--out {store_path}`). Run one for a single photo below.")

if ctx.manifest is None or not ctx.available:
    st.info("Load checkpoints (home page) to run the sanity check on a photo here.", icon="🧩")
    st.stop()
cols = st.columns(3)
model = cols[0].selectbox("Model", ctx.available, format_func=state.display_name, key="sanity_model")
method = cols[1].selectbox("Method", method_names(), key="sanity_method")
photos = support.offered_photos(folder, contents.faithfulness[0].image_paths) if contents.faithfulness else []
photo = cols[2].selectbox("Photo", photos, key="sanity_photo") if photos else None
if photo is None or folder is None:
    st.caption("The photos come from the faithfulness results' test folder: choose it in the sidebar's "
               "*Image folder* field to check one of them here.")
    st.stop()
try:
    st.caption(support.sanity_estimate(ctx, model, state.model_identity(ctx, model), method))
    start = st.button("Run the sanity check", icon="🎲", key="sanity_run")
    image = support.load_image(folder, photo)
    result = support.sanity_result(ctx, model, image, method, start)
except MushcamError as exc:
    st.error(str(exc), icon="🚫")
    st.stop()
if result is not None:
    left, right = st.columns([1, 2])
    left.image(image.display, width="stretch", output_format="JPEG")
    right.plotly_chart(support.sanity_figure([(f"{state.display_name(model)} · {method}", result)]),
                       key="sanity_one_chart")
    if result.flagged:
        st.error(f"Flagged: after randomising the network the map still ranks pixels like the trained one's "
                 f"(mean Spearman {result.score:.2f} ≥ {FLAG_THRESHOLD}). Do not read this map as the model's reason.",
                 icon="⚠️")
    else:
        st.success(f"Passes: the map changes as the model is destroyed (mean Spearman {result.score:.2f} over "
                   f"{len(result.blocks)} steps; {result.mean_spearman[0]:+.2f} once the head is random).", icon="✅")
