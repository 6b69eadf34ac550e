"""Home-page helpers: model status table, setup help, test metrics (Streamlit glue)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from mushcam.catalog import IMAGENET_FUNGI, PretrainedWeightsUnavailable
from mushcam.metrics import format_rate
from mushcam.store import StoreError
from ui import errors_support, state

__all__ = ["IMAGENET_FUNGI", "SAFETY_NOTE", "enable_demo", "model_table", "setup_help", "test_metrics"]

SAFETY_NOTE = (
    "**Research tool, not a field guide.** The toxicity shown is a genus-level simplification: edibility "
    "varies by species inside every genus, and look-alikes are common. Never decide whether to eat a "
    "mushroom from this software or any classifier."
)


def setup_help(folder: Path) -> str:
    """What to put where, in one screen of Markdown."""
    return f"""
**To explain your own models**, put into `{folder}`:

1. one weights file per backbone: `resnet50.pt`, `efficientnet_b0.pt`, `mobilenet_v3_large.pt`
   (a `state_dict`, or a dict holding it under `state_dict` / `model_state_dict`);
2. `manifest.json`: the classes **in output order** with their toxicity, the input size and
   resize mode, and per backbone its file and Grad-CAM layer (see `checkpoints/README.md`).

No weights yet? Train them on a folder of `train/<Genus>/` and `val/<Genus>/` photos:

```bash
.venv/bin/python -m mushcam train --data PATH/TO/DATA --backbone all --out {folder}
```

Another folder can be chosen in the sidebar or with `MUSHCAM_CHECKPOINTS=/path`. Or switch on
**demo mode** in the sidebar to explain torchvision's ImageNet-pretrained backbones (fetched once
into the torch cache; needs internet access the first time).
"""


def enable_demo() -> None:
    st.session_state[state.DEMO_KEY] = True


def model_table(ctx: state.AppContext) -> list[dict[str, str]]:
    """One row per backbone: loaded / missing / failed (with the reason), file, layer."""
    rows = []
    for status in ctx.statuses:
        row = {
            "Backbone": state.display_name(status.backbone),
            "Status": status.status,
            "Checkpoint": status.path.name if status.path else "",
            "Grad-CAM layer": status.layer,
            "Note": status.reason,
        }
        if status.status in ("found", "download"):
            try:
                model = state.get_model(ctx, status.backbone)
                row["Status"] = "loaded"
                row["Note"] = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"
            except PretrainedWeightsUnavailable as exc:
                row["Status"], row["Note"] = "unavailable", str(exc)
            except (ValueError, OSError, RuntimeError) as exc:
                row["Status"], row["Note"] = "failed to load", str(exc)
        rows.append(row)
    return rows


def test_metrics() -> dict[str, object] | None:
    """Accuracy and toxicity-aware error rates per evaluated model, from the results store
    the Errors page reads (its sidebar path, else ``$MUSHCAM_RESULTS`` / runs/results.sqlite).
    None where there is no store yet; a broken store is reported, never raised."""
    path = Path(st.session_state.get(errors_support.STORE_KEY) or errors_support.default_store_path()).expanduser()
    if not path.is_file():
        return None
    try:
        contents, version = errors_support.load_contents(path)
    except StoreError as exc:
        return {"path": path, "rows": [], "error": str(exc)}
    rows = []
    for run in contents.runs:
        m = errors_support.metrics_for(str(path), version, run.run_id)
        rows.append({
            "Model": errors_support.label(run, contents),
            "Test images": m.n_images,
            "Accuracy": f"{m.accuracy:.1%}",
            "Macro F1": "n/a" if np.isnan(m.macro_f1) else f"{m.macro_f1:.3f}",
            "Poisonous → edible": format_rate(m.dangerous_count, m.dangerous_rate, m.poisonous_images),
            "Edible → poisonous": format_rate(m.benign_count, m.benign_rate, m.edible_images),
        })
    return {"path": path, "rows": rows, "error": ""}
