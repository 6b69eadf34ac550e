"""Compare page: any chosen models side by side on several images, with agreement and focus numbers."""

import streamlit as st

st.set_page_config(page_title="Compare · MushCAM", page_icon="🍄", layout="wide")

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
state.demo_banner(ctx)

import datetime as dt  # noqa: E402

from mushcam import compare  # noqa: E402
from mushcam.cam import DEFAULT_METHOD, METHOD_LABELS, METHODS  # noqa: E402
from mushcam.compare.tables import AGREEMENT_MEASURES  # noqa: E402
from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, to_png  # noqa: E402
from ui import compare_support as support  # noqa: E402
from ui.model_health import show_health_warnings  # noqa: E402

NORMALISATION_LABELS = {
    "per_image": "Per image (each map to its own maximum)",
    "shared": "Shared across the row (the row's largest map)",
}
NORMALISATION_HELP = (
    "Per image: every map is stretched to its own maximum, so every map uses the full colour "
    "range, even a weak, diffuse one. Shared: every map of a row is divided by the row's largest "
    "raw maximum, so a weak map stays faint next to a strong one. Caution: raw Grad-CAM values of "
    "different networks are not on a common scale a priori (they depend on each network's "
    "activations and head), so a shared scale compares magnitudes that may not be comparable. "
    "The agreement and focus numbers do not depend on this choice: they are scale-free."
)

st.title("Compare models")
st.caption(
    "Where does each model look, image by image, and how much do they agree? One row per image, "
    "one column per model, one tab per CAM method (methods side by side where they fit a row); numbers instead of "
    "impressions."
)

if ctx.manifest is None:
    st.error(f"No usable manifest: {ctx.manifest_error}")
    st.info("Put manifest.json and the weights in the checkpoint folder (sidebar); see checkpoints/README.md.")
    st.stop()
if not ctx.available:
    st.warning("No checkpoint file found for any model in this manifest: " + ("; ".join(
        f"{ctx.label(s.name)}: {s.reason}" for s in ctx.statuses) or "it lists no models"))
    st.stop()
manifest = ctx.manifest

# --- controls -------------------------------------------------------------------------
sample_default = state.sample_folder()
st.session_state.setdefault("compare_source", "folder" if sample_default else "upload")
st.session_state.setdefault("compare_folder", str(sample_default or ""))
source = st.radio(
    "Images", ["folder", "upload"], key="compare_source", horizontal=True,
    format_func={"folder": "Sample from a test folder", "upload": "Upload images"}.get,
)
if source == "folder":
    c1, c2, c3, c4 = st.columns([4, 1, 1, 2])
    folder = c1.text_input("Test folder (root/<Class>/images)", key="compare_folder",
                           help="Defaults to $MUSHCAM_SAMPLES. Each sub-folder is a class.")
    n = int(c2.number_input("Images", min_value=1, max_value=40, value=compare.DEFAULT_SAMPLE_SIZE, key="compare_n"))
    seed = int(c3.number_input("Seed", min_value=0, value=0, step=1, key="compare_seed"))
    mix = c4.toggle("Mix right and wrong", value=True, key="compare_mix",
                    help="Predict candidates first (with the same cached maps) so that about half of the sample "
                    "are images some model gets wrong and half are images every model gets right.")
    uploads = []
else:
    uploads = st.file_uploader("Photos", type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"],
                               accept_multiple_files=True, key="compare_uploads") or []

names = st.multiselect("Models", ctx.available, default=ctx.available, key="compare_backbones",
                       format_func=ctx.label, help="Any of the manifest's models, in the order chosen: "
                       "one column each.")
methods = st.multiselect("CAM methods", METHODS, default=[DEFAULT_METHOD], key="compare_methods",
                         format_func=METHOD_LABELS.get, help="Several methods make the columns models x methods.")
d1, d2, d3, d4 = st.columns([3, 1.4, 1.2, 1.6])
normalisation = d1.radio("Normalisation", compare.NORMALISATIONS, key="compare_norm", horizontal=True,
                         format_func=NORMALISATION_LABELS.get, help=NORMALISATION_HELP)
heatmap_only = d2.toggle("Heatmap alone", value=False, key="compare_heatmap_only")
colormap = d3.selectbox("Colormap", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="compare_colormap")
alpha = d4.slider("Overlay opacity", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key="compare_alpha", disabled=heatmap_only)
view = "heatmap" if heatmap_only else "overlay"

if not names:
    st.info("Choose at least one model.")
    st.stop()
if not methods:
    st.info("Choose at least one CAM method.")
    st.stop()

# --- compute --------------------------------------------------------------------------
models, failures = support.load_models(ctx, names)
for name, reason in failures.items():
    st.error(f"{ctx.label(name)} cannot be loaded: {reason} (the Home page shows the details)")
names = [name for name in names if name in models]
if not names:
    st.stop()
show_health_warnings(names, ctx.label)
explain = support.explainer(ctx, models)
progress = support.Progress()
if source == "folder":
    images, problems = support.images_from_folder(ctx, folder, n, seed, explain if mix else None, names, progress)
else:
    images, problems = support.images_from_uploads(uploads)
for problem in problems:
    st.warning(problem)
if not images:
    progress.clear()
    st.info("Upload one or more photos, or sample them from a test folder." if source == "upload"
            else "No images to compare yet.")
    st.stop()
cell_key = support.cell_key(ctx, models)
with state.shown_errors():
    comparison = compare.compute_comparison(images, names, manifest, explain, progress=progress.maps,
                                            methods=methods, memo=support.SharedCellMemo(), cell_key=cell_key)
grid = comparison.backbones  # the columns: model x method keys
progress.clear()

# --- the grid -------------------------------------------------------------------------
measure = "iou"
if len(grid) > 2:
    measure = st.radio("Agreement matrices", list(AGREEMENT_MEASURES), key="compare_agreement_measure",
                       horizontal=True, format_func=AGREEMENT_MEASURES.get,
                       help="Each photo's matrix: how much every two maps of its row agree (1 = the same).")
support.show_grid(comparison, manifest, methods, support.Style(normalisation, view, alpha, colormap, measure),
                  cell_key)

# --- numbers --------------------------------------------------------------------------
st.subheader("Numbers")
top = round(comparison.fraction * 100)
st.caption("Focus: **half-mass area** = the share of the image that holds half of the map's mass (smaller = "
           "more concentrated); **entropy** = H(p)/log n of the map as a distribution (0 = one point, 1 = uniform).")
st.caption(f"Pairwise agreement: **IoU** of the two maps' top-{top}% regions, **Spearman** rank correlation of "
           "the maps, on a common grid. Means leave undefined values (all-zero or flat maps) out.")
NUMBER = st.column_config.NumberColumn(format="%.3f")
PERCENT = st.column_config.NumberColumn(format="percent")
st.markdown("**Per model**")
by_model = [{"model": comparison.label(str(r["backbone"])), **{k: v for k, v in r.items() if k != "backbone"}}
            for r in compare.backbone_summary(comparison)]  # "backbone": the summary's column key
st.dataframe(by_model, hide_index=True, key="compare_backbone_summary",
             column_config={k: (PERCENT if k == "accuracy" or "area" in k else NUMBER)
                            for k, v in by_model[0].items() if isinstance(v, float)})
if len(grid) > 1:
    st.markdown("**Per pair of models**")
    by_pair = [{**r, "pair": " vs ".join(comparison.label(b) for b in str(r["pair"]).split(" vs "))}
               for r in compare.pair_summary(comparison)]
    st.dataframe(by_pair, hide_index=True, key="compare_pair_summary",
                 column_config={k: NUMBER for k, v in by_pair[0].items() if isinstance(v, float)})
if len(grid) > 2:
    support.show_grid_agreement(comparison, measure)
with st.expander("Per image"):
    st.dataframe(compare.image_table(comparison), hide_index=True, key="compare_image_table")
if st.toggle("Faithfulness of each map", key="compare_faithfulness",
             help="Deletion / insertion AUC (Petsiuk et al. 2018; blurred baseline, 10 steps): 22 forward passes per "
             "map. Lower deletion and higher insertion = the region the map marks drives the score. The Trust page "
             "has the whole test set with floors and intervals."):
    st.dataframe(support.map_faithfulness(ctx, models, comparison), hide_index=True, key="compare_faithfulness_table",
                 column_config={"deletion_auc": NUMBER, "insertion_auc": NUMBER})

# --- export ---------------------------------------------------------------------------
now = dt.datetime.now()
e1, e2, e3 = st.columns(3)
e1.download_button(
    "Download grid (PNG, with numbers)",
    data=lambda: to_png(compare.render_comparison(comparison, manifest, normalisation, view, alpha, colormap,
                                                  created=f"{now:%Y-%m-%d %H:%M:%S}")),
    file_name=compare.export_name(now), mime="image/png", on_click="ignore", key="compare_png",
)
e2.download_button("Download numbers (CSV)", data=compare.to_csv(compare.image_table(comparison)),
                   file_name=compare.export_name(now, ".csv"), mime="text/csv", on_click="ignore", key="compare_csv")
e3.download_button("Download summary (CSV)", data=compare.to_csv(compare.summary_long(comparison)),
                   file_name=compare.export_name(now, "_summary.csv"), mime="text/csv", on_click="ignore",
                   key="compare_summary_csv")
