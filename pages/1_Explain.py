"""Explain page: one photo, one model (by its manifest name), any target class and CAM method; the four views."""

import streamlit as st

st.set_page_config(page_title="Explain · MushCAM", page_icon="🍄", layout="wide")

from mushcam.cam import DEFAULT_METHOD, METHODS, method_label  # noqa: E402
from mushcam.exceptions import MushcamError  # noqa: E402
from mushcam.explain import top_k  # noqa: E402
from mushcam.toxicity import Toxicity  # noqa: E402
from ui import explain_support as support  # noqa: E402
from ui import state  # noqa: E402
from ui.charts import top_k_bar, toxicity_badge  # noqa: E402
from ui.model_health import show_health_warnings  # noqa: E402

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

# --- model, method and target ---------------------------------------------------------------
controls = st.columns([2, 2, 3])
name = controls[0].selectbox("Model", ctx.available, format_func=ctx.label, key="backbone")
label = ctx.label(name)
method = controls[1].selectbox("CAM method", METHODS, format_func=method_label, key="method",
                               help="How the map is made (docs/methods.md). Long methods (Ablation-CAM, "
                               "Score-CAM: one pass per channel of the layer) say how long they will take and "
                               "start only when you press their button.")
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
    # The prediction never waits for a long map: it comes with Grad-CAM's, one forward pass.
    prediction = state.cached_explanation(model, loaded.image, manifest, identity, loaded.sha256, layer, None,
                                          DEFAULT_METHOD)
names = manifest.class_names
target = controls[2].selectbox(
    "Explain class",
    [None, *range(len(names))],
    format_func=lambda i: support.target_label(i, prediction, manifest),
    key="target",
    placeholder=support.target_label(None, prediction, manifest),  # what a reset selector shows: the default
    help="Default: the predicted class. Pick another to ask 'why not this one?'",
)
map_class = None if target is None or target == prediction.class_idx else target
explained = prediction.class_idx if map_class is None else map_class
versus = support.versus_selector(controls[2], prediction, manifest, explained, method)
if versus is not None:
    map_class = explained  # a contrast names both classes

# --- prediction -----------------------------------------------------------------------------
left, right = st.columns([2, 3], gap="large")
with left:
    predicted = names[prediction.predicted_idx]
    toxicity = manifest.toxicity(prediction.predicted_idx)
    st.markdown(f"### {predicted} {toxicity_badge(toxicity)}")
    st.markdown(f"**{prediction.confidence:.1%}** confidence · {label} · layer `{layer}`")
    st.caption(support.model_summary(loaded_model))
    show_health_warnings([name], ctx.label)
    if photo.true_label is not None:
        st.markdown(support.truth_line(photo.true_label, predicted, manifest))
    if toxicity == Toxicity.POISONOUS:
        st.error("The model calls this a **poisonous** genus.", icon="☠️")
    rows = top_k(prediction.probabilities, names, 5)
    st.plotly_chart(
        top_k_bar(rows, [manifest.toxicity(n) for n, _ in rows], highlight=names[explained]),
        key="top_k_chart",
        config={"displayModeBar": False},
    )
    st.caption("Top-5 probabilities, coloured by the genus's toxicity (key above the bars). "
               "Outlined: the class the map explains.")

# --- the map ----------------------------------------------------------------------------------
with right:
    if method == DEFAULT_METHOD and map_class is None and versus is None:
        explanation = prediction
    else:
        cost = support.cost_of(model, identity, layer, manifest.input.size, method)
        ask = support.MapAsk(model, loaded.image, manifest, identity, loaded.sha256, layer, map_class, method, versus)
        if cost.long:
            explanation = support.long_map(ask, cost, label, names[explained])
        else:
            with st.spinner(f"{method_label(method)} for {names[explained]}…"), state.shown_errors(label):
                explanation = state.cached_explanation(model, loaded.image, manifest, identity, loaded.sha256, layer,
                                                       map_class, method, versus)
    if explanation is not None:
        support.views_panel(loaded, explanation, manifest, label, name)
