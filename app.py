"""MushCAM home page: what is loaded, the classes with their toxicity, test metrics, and the
safety note."""

import streamlit as st

st.set_page_config(page_title="MushCAM", page_icon="🍄", layout="wide")

from ui import home, state  # noqa: E402  (set_page_config must come first)
from ui.charts import toxicity_badge  # noqa: E402
from ui.model_health import show_health_warnings  # noqa: E402

ctx = state.sidebar()
st.title("MushCAM")
st.caption("See why a mushroom-genus classifier decided what it decided: Grad-CAM for your own models "
           "(ResNet-50, EfficientNet-B0 and MobileNetV3-Large are presets; any name, any architecture).")
state.demo_banner(ctx)
st.info(home.SAFETY_NOTE, icon="⚠️")

if ctx.manifest is None:
    st.error(f"**No usable manifest.** {ctx.manifest_error}")
    st.markdown(home.setup_help(ctx.folder))
    st.stop()

model_rows = home.model_rows(ctx)
models = [r.row for r in model_rows]
usable = [row for row in models if row["Status"] == "loaded"]
st.subheader(f"Models ({len(models)})")
# A static table (not a scrolling grid): heads such as "Dropout → Linear(2048→512) → ReLU → …"
# are shown whole, and the text can be selected and copied.
st.markdown(home.table_css(list(models[0]) if models else []), unsafe_allow_html=True)
st.table(models, hide_index=True)
if paths := home.path_rows(ctx):
    st.caption(paths)
home.code_consent_panel(ctx)
unavailable = [r.name for r in model_rows if r.row["Status"] == "unavailable"]
if ctx.demo and unavailable:
    st.warning(home.demo_weights_help(unavailable), icon="📦")
for item in model_rows:
    if item.runs_code:
        st.caption(f"⚠️ **{item.label}** runs code from `{item.runs_code}` (its manifest entry names it).")
    if item.error is not None:
        st.error(f"**{item.label}** failed to load: {home.first_line(item.error)}", icon="🚫")
        with st.expander(f"Details: why {item.label} failed to load"):
            st.code(home.failure_detail(item.error), language=None)
if not usable:
    st.warning("No model can be used yet." if models else
               "The manifest lists no models: add them under `models` (see docs/manifest.md).", icon="🧩")
    st.markdown(home.setup_help(ctx.folder))
    if not ctx.demo:
        st.button("Try demo mode (ImageNet weights)", key="enable_demo", on_click=home.enable_demo)
else:
    st.success(
        f"{len(usable)} of {len(models)} models ready. Open **Explain** to upload a photo, **Compare** to "
        "line the models up, **Errors** to review test-set mistakes.",
        icon="✅",
    )
    st.page_link("pages/1_Explain.py", label="Explain a photo", icon="🔎")
metrics = home.test_metrics()
if metrics:  # the whole width: six columns with their headers whole did not fit beside the classes
    st.subheader("Test-set metrics")
    st.caption(f"From the results store `{metrics['path']}` (`python -m mushcam evaluate`); details on **Errors**.")
    if metrics["error"]:
        st.error(metrics["error"])
    st.dataframe(metrics["rows"], hide_index=True, column_config=home.metrics_columns(metrics["rows"]))
left, right = st.columns([3, 2], gap="large")
with left:
    show_health_warnings([s.name for s in ctx.statuses], ctx.label)

with right:
    st.subheader(f"Classes ({ctx.manifest.num_classes})")
    if ctx.demo:
        st.markdown("ImageNet's 1000 classes; its fungi: " + ", ".join(home.IMAGENET_FUNGI) + ".")
    else:
        st.markdown("  \n".join(f"{i}. **{c.name}** {toxicity_badge(c.toxicity)}"
                                for i, c in enumerate(ctx.manifest.classes)))
    spec = ctx.manifest.input
    st.subheader("Input")
    st.markdown(
        f"{spec.size} x {spec.size} px, resize mode `{spec.resize}`, mean {list(spec.mean)}, std {list(spec.std)}  \n"
        f"Manifest: `{'torchvision ImageNet weights' if ctx.demo else ctx.folder / 'manifest.json'}`"
    )
