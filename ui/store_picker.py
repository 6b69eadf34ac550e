"""The one results-store field, shared by the Errors and Trust pages.

``python -m mushcam evaluate`` and ``python -m mushcam faithfulness`` write into the same
SQLite file, so the user picks it once: the value lives under :data:`STORE_KEY` and survives
page changes (:func:`ui.state.persistent_widget`), and a file picked on one page is the
file the other page reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ui import state

RESULTS_ENV = "MUSHCAM_RESULTS"
STORE_KEY = "results_store"  # the chosen path; the text field itself is STORE_WIDGET_KEY
STORE_WIDGET_KEY = f"{STORE_KEY}_widget"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_store_path() -> str:
    """``$MUSHCAM_RESULTS`` if set, else ``runs/results.sqlite`` in the project."""
    configured = os.environ.get(RESULTS_ENV, "").strip()
    return configured or str(PROJECT_ROOT / "runs" / "results.sqlite")


def chosen_store_path() -> Path:
    """The store the user picked on any page, else :func:`default_store_path` (no widget drawn)."""
    return Path(str(st.session_state.get(STORE_KEY) or default_store_path()).strip()).expanduser()


def store_path_input() -> Path:
    """The sidebar's results-store field (defaults to :func:`default_store_path`)."""
    st.session_state.setdefault(STORE_KEY, default_store_path())
    with st.sidebar:
        state.persistent_widget(
            st.text_input, STORE_KEY, "Results store",
            help="SQLite file written by `python -m mushcam evaluate ... --out FILE` and `python -m mushcam "
            f"faithfulness ... --out FILE` (default: ${RESULTS_ENV} or runs/results.sqlite)",
        )
    return chosen_store_path()


__all__ = [
    "RESULTS_ENV", "STORE_KEY", "STORE_WIDGET_KEY", "chosen_store_path", "default_store_path", "store_path_input",
]
