"""MushCAM home page: what is loaded, the class list with toxicity, and the safety note."""

import streamlit as st

st.set_page_config(page_title="MushCAM", page_icon="🍄", layout="wide")

from ui import state  # noqa: E402  (set_page_config must come first)

ctx = state.sidebar()
st.title("MushCAM")
st.caption("Grad-CAM explanations for mushroom-genus classifiers")
state.demo_banner(ctx)
if ctx.manifest is None:
    st.error(ctx.manifest_error)
else:
    st.write({s.backbone: s.status for s in ctx.statuses})
