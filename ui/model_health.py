"""Warnings about a degenerate model, from its latest run in the results store (Streamlit glue).

Home, Explain and Compare say in words when the numbers behind a model do not support reading
its maps: predictions collapsed onto one or two classes, or accuracy not above chance
(:mod:`mushcam.metrics.health` has the rules). No store, or no run of the model yet: nothing to say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import streamlit as st

from mushcam.metrics.health import ModelHealth, model_health
from mushcam.store import StoreError
from ui import errors_support, store_picker


@st.cache_data(show_spinner=False, max_entries=64)
def _health(path: str, version: str) -> dict[str, ModelHealth]:
    contents, _ = errors_support.load_contents(Path(path))
    health: dict[str, ModelHealth] = {}
    for run in contents.runs:  # later runs of a model replace earlier ones
        predictions = contents.predictions[run.run_id]
        health[run.backbone] = model_health(predictions.true_idx, predictions.pred_idx, run.class_names)
    return health


def health_by_model() -> dict[str, ModelHealth]:
    """The latest run's health of every model in the chosen results store (empty without a store)."""
    path = store_picker.chosen_store_path()
    if not path.is_file():
        return {}
    try:
        version = errors_support.store_version(path)
        return _health(str(path), version)
    except StoreError:
        return {}


def show_health_warnings(names: Sequence[str], label: Callable[[str], str]) -> None:
    """One warning box per named model whose latest run is degenerate."""
    health = health_by_model()
    for name in names:
        report = health.get(name)
        if report is not None and report.warnings:
            st.warning(f"**{label(name)}** (latest evaluation): " + "; ".join(report.warnings) + ".", icon="📉")
