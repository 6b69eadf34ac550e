"""Explain page: one photo, one model (by its manifest name), any target class; the four Grad-CAM views."""

import streamlit as st

st.set_page_config(page_title="Explain · MushCAM", page_icon="🍄", layout="wide")

from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.explain import explanation_title, render_explanation, top_k  # noqa: E402
from mushcam.methods import METHOD_LABELS, METHODS  # noqa: E402
from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, to_png  # noqa: E402
from mushcam.toxicity import Toxicity  # noqa: E402
from ui import explain_support as support  # noqa: E402
from ui import state  # noqa: E402
from ui.charts import top_k_bar, toxicity_badge  # noqa: E402

ctx = state.sidebar()
state.demo_banner(ctx)
st.title("Explain a photo")
st.caption("Where does the model look when it decides? Upload a photo, pick a model and a class.")

if ctx.manifest is None or not ctx.available:
    st.warning("No model is available: the [home page](/) says what to put where.", icon="🧩")
    st.stop()
manifest = ctx.manifest

# --- the photo ----------------------------------------------------------------------------
photo = support.choose_photo()
if photo is None:
    st.stop()
try:
    loaded = state.load_uploaded(photo.name, photo.data)
except state.ImageLoadError as exc:
    st.error(f"**{photo.name}** cannot be used: {exc}. Please choose another file.", icon="🚫")
    st.stop()

# --- model and target ---------------------------------------------------------------------
controls = st.columns([2, 3, 2, 2])
name = controls[0].selectbox("Model", ctx.available, format_func=ctx.label, key="backbone")
label = ctx.label(name)
method = controls[0].selectbox("CAM method", METHODS, format_func=METHOD_LABELS.get, key="method",
                               help="How the map is made (docs/methods.md). Ablation-CAM and Score-CAM run "
                               "the model once per channel of the layer: seconds to minutes on a CPU.")
try:
    loaded_model = state.get_loaded(ctx, name)
except (MushcamError, OSError, RuntimeError) as exc:
    st.error(f"{label} cannot be loaded: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}", icon="🚫")
    st.caption("The Home page shows the details.")
    st.stop()
model = loaded_model.model
layer = state.cam_layer(ctx, name, loaded_model)
identity = state.model_identity(ctx, name)
with st.spinner("Running the model…"), state.shown_errors(label):
    prediction = state.cached_explanation(model, loaded.image, manifest, identity, loaded.sha256, layer, None, method)
names = manifest.class_names
target = controls[1].selectbox(
    "Explain class",
    [None, *range(len(names))],
    format_func=lambda i: support.target_label(i, prediction, manifest),
    key="target",
    help="Default: the predicted class. Pick another to ask 'why not this one?'",
)
alpha = controls[2].slider("Heat-map opacity (alpha)", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key="alpha")
colormap = controls[3].selectbox("Colormap", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="colormap")

if target is None or target == prediction.class_idx:
    explanation = prediction
else:
    with st.spinner(f"{METHOD_LABELS[method]} for {names[target]}…"), state.shown_errors(label):
        explanation = state.cached_explanation(model, loaded.image, manifest, identity, loaded.sha256, layer, target,
                                               method)

# --- prediction -----------------------------------------------------------------------------
left, right = st.columns([2, 3], gap="large")
with left:
    predicted = names[prediction.predicted_idx]
    toxicity = manifest.toxicity(prediction.predicted_idx)
    st.markdown(f"### {predicted} {toxicity_badge(toxicity)}")
    st.markdown(f"**{prediction.confidence:.1%}** confidence · {label} · layer `{layer}`")
    st.caption(support.model_summary(loaded_model))
    if photo.true_label is not None:
        st.markdown(support.truth_line(photo.true_label, predicted, manifest))
    if toxicity == Toxicity.POISONOUS:
        st.error("The model calls this a **poisonous** genus.", icon="☠️")
    rows = top_k(prediction.probabilities, names, 5)
    st.plotly_chart(
        top_k_bar(rows, [manifest.toxicity(n) for n, _ in rows], highlight=names[explanation.class_idx]),
        key="top_k_chart",
        config={"displayModeBar": False},
    )
    st.caption("Top-5 probabilities. ☠ and red: poisonous genus. Outlined: the class the map explains.")

# --- the four views -----------------------------------------------------------------------
views = render_explanation(loaded.display, explanation, manifest, label, alpha, colormap)
with right:
    st.markdown(f"**{explanation_title(explanation, manifest, label)}**")
    tabs = st.tabs(["Overlay", "Heatmap", "Original", "Combined"])
    tabs[0].image(views.overlay, width="stretch", output_format="JPEG")
    tabs[1].image(views.heatmap, width="stretch", output_format="JPEG")
    tabs[2].image(views.original, width="stretch", output_format="JPEG")
    tabs[3].image(views.combined, width="stretch", output_format="JPEG")
    st.download_button(
        "Download the combined figure (PNG)",
        data=lambda: to_png(views.combined),
        file_name=support.download_name(loaded.name, name, names[explanation.class_idx]),
        mime="image/png",
        key="download_combined",
        icon="⬇️",
    )
    st.caption(
        "Red: regions that raised the score of the explained class most; blue: little or none. "
        "The map is scaled to its own maximum."
        + (" Grey: outside the centre crop the network saw." if manifest.input.resize == "center_crop" else "")
    )
