"""Home-page helpers: model status table, setup help, test metrics (Streamlit glue)."""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from mushcam.catalog import IMAGENET_FUNGI, CodeRequest, PretrainedWeightsUnavailable, code_requests
from mushcam.exceptions import MushcamError
from mushcam.metrics import format_rate
from mushcam.models import imagenet_weights_path
from mushcam.settings import read_trusted_code, remember_trusted_code
from mushcam.store import StoreError
from ui import errors_support, state, store_picker
from ui.table_fit import fitted

__all__ = ["IMAGENET_FUNGI", "SAFETY_NOTE", "ModelRow", "code_consent_panel", "enable_demo", "failure_detail",
           "metrics_columns", "model_rows", "model_table", "path_rows", "pending_code", "setup_help", "short_paths",
           "test_metrics", "trust_code", "table_css", "WHOLE_WORD_COLUMNS"]

# st.table lays its columns out to their longest unbreakable word ("resnet50_finetuned_best_epoch_37.pt",
# "mobilenet_v3_large"): the model table ran 200 px past the page at 1440 px and hid its Note column.
# Cells of file names, layers and paths may break anywhere (the full paths are listed under the table,
# path_rows); headers and the columns of words keep their words whole ("missin|g" and "Hea|d" were
# seen when every cell could break anywhere: the browser squeezed the short columns first).
WHOLE_WORD_COLUMNS: tuple[str, ...] = ("Model", "Status")


def table_css(columns: Sequence[str]) -> str:
    """The model table's CSS for a table with ``columns`` in this order (st.table draws no index)."""
    table = "[data-testid='stTable']"
    whole = [f"{table} th", *(f"{table} td:nth-child({columns.index(c) + 1})" for c in WHOLE_WORD_COLUMNS
                              if c in columns)]
    selectors = ", ".join(f"{s}, {s} *" for s in whole)
    return (f"<style>{table} td, {table} td * {{overflow-wrap: anywhere !important;}} "
            f"{selectors} {{overflow-wrap: break-word !important; word-break: normal !important;}}</style>")


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:;,]+/)+([^\s/:;,]+)")

SAFETY_NOTE = (
    "**Research tool, not a field guide.** The toxicity shown is a genus-level simplification: edibility "
    "varies by species inside every genus, and look-alikes are common. Never decide whether to eat a "
    "mushroom from this software or any classifier."
)


def setup_help(folder: Path) -> str:
    """What to put where, in one screen of Markdown."""
    return f"""
**To explain your own models**, put into `{folder}`:

1. one weights file per model, e.g. `resnet50.pt`, `efficientnet_b0.pt`, `mobilenet_v3_large.pt`
   (a `state_dict`, or a dict holding it under `state_dict` / `model_state_dict`);
2. `manifest.json`: the classes **in output order** with their toxicity, the input size and
   resize mode, and under `models` each model by a name of your choice with its `checkpoint`,
   its `arch` (default: the name) and optionally its Grad-CAM `layer` and `label`
   (see `docs/manifest.md`).

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


def pending_code(ctx: state.AppContext) -> list[CodeRequest]:
    """The entries whose code waits for the user's consent (nothing of it imported); none in demo mode."""
    if ctx.manifest is None or ctx.demo:
        return []
    return [r for r in code_requests(ctx.manifest) if not r.trusted and not r.error]


def trust_code(request: CodeRequest) -> None:
    """Remember the user's consent to ``request``'s files as hashed when the page showed them."""
    remember_trusted_code((f.path, f.sha256) for f in request.files)


def code_consent_panel(ctx: state.AppContext) -> None:
    """For each entry that wants to run code: its files with their SHA-256 and a "Trust and run"
    button; a damaged settings file is said to be (nothing is trusted then)."""
    warning = read_trusted_code().warning if ctx.manifest is not None and not ctx.demo else ""
    if warning:
        st.warning(warning, icon="⚠️")
    for request in pending_code(ctx):
        label = ctx.label(request.name)
        files = ", ".join(f"`{f.path.name}`" for f in request.files)
        st.warning(f"**{label}** needs your consent to run {files}: its manifest entry builds the model with "
                   f"`{request.code}`. That code runs with your permissions; trust it only if you wrote it, read "
                   "it, or trust its author. A changed file asks again.", icon="🔐")
        st.code("\n".join(f"{f.sha256}  {f.path}" for f in request.files), language=None)
        st.button("Trust and run", key=f"trust_code_{request.name}",
                  on_click=trust_code, args=(request,), help="remembered for these files' SHA-256 in "
                  "the local settings file ($MUSHCAM_CONFIG_DIR, else ~/.config/mushcam)")


@dataclass(frozen=True)
class ModelRow:
    """One named model on the Home page: its table row, and what went wrong or needs saying."""

    name: str
    label: str
    row: dict[str, str]
    error: BaseException | None = None  # why it failed to load (shown in one line, detail in an expander)
    runs_code: str | None = None  # the user's file the model is built from


def model_rows(ctx: state.AppContext) -> list[ModelRow]:
    """One row per named model: name and label, architecture, the head as rebuilt, how the
    checkpoint was recognised, the Grad-CAM layer and where it came from, and the status
    (loaded / missing / failed to load, with the reason in one line)."""
    rows = []
    for status in ctx.statuses:
        label = ctx.label(status.name)
        row = {
            "Model": label,
            "Name": status.name,
            "Architecture": status.arch,
            "Status": status.status,
            "Checkpoint": status.path.name if status.path else "",
            "Head": "",
            "Recognised as": "",
            "Grad-CAM layer": status.layer or "automatic",
            "Note": short_paths(status.reason),
        }
        error: BaseException | None = None
        runs_code = None
        if status.status in ("found", "download"):
            try:
                loaded = state.get_loaded(ctx, status.name)
            except PretrainedWeightsUnavailable:
                row["Status"] = "unavailable"
                row["Note"] = f"could not download ImageNet weights for {status.name}: not in the torch cache"
                st.session_state.setdefault(state.DEMO_UNAVAILABLE_KEY, set()).add(status.name)
            except (MushcamError, OSError, RuntimeError) as exc:
                row["Status"], row["Note"], error = "failed to load", short_paths(first_line(exc)), exc
            else:
                runs_code = loaded.runs_code
                parameters = sum(p.numel() for p in loaded.model.parameters()) / 1e6
                row.update({
                    "Status": "loaded",
                    "Architecture": loaded.arch,
                    "Head": loaded.head,
                    "Recognised as": loaded.recognised,
                    "Grad-CAM layer": f"{loaded.layer} ({loaded.layer_note})",
                    "Note": f"{parameters:.1f} M parameters"
                    + (f" · runs code from {Path(runs_code).name}" if runs_code else ""),
                })
        rows.append(ModelRow(status.name, label, row, error, runs_code))
    return rows


def short_paths(text: str) -> str:
    """``text`` with each absolute path shortened to ``…/parent/name`` (the table shows the rest as notes)."""
    def shorten(match: re.Match[str]) -> str:
        parts = match.group(0).rstrip("/").split("/")
        return match.group(0) if len(parts) <= 3 else "…/" + "/".join(parts[-2:])
    return ABSOLUTE_PATH.sub(shorten, text)


def path_rows(ctx: state.AppContext) -> str:
    """The full paths of checkpoints outside the manifest's folder (the table shows ``…/parent/name``), or ""."""
    outside = [f"**{ctx.label(s.name)}**: `{s.path}`" for s in ctx.statuses
               if s.path is not None and s.path.parent != ctx.folder]
    return "Checkpoint files outside the folder: " + "; ".join(outside) if outside else ""


def metrics_columns(rows: list[dict[str, object]]) -> dict[str, object]:
    """``column_config`` of the test-metrics table: widths that keep every header whole, and tooltips."""
    columns = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
    return fitted(columns, helps={
        "Test images": "photos of the test set the model was evaluated on",
        "Macro F1": "mean of the per-class F1 scores (each class counts alike)",
        "Poisonous → edible": "poisonous photos predicted as an edible genus: count / poisonous photos (rate)",
        "Edible → poisonous": "edible photos predicted as a poisonous genus: count / edible photos (rate)",
    })


def demo_weights_help(names: list[str]) -> str:
    """One line for demo mode offline: which files are missing from the torch cache and where they go."""
    files = ", ".join(f"`{imagenet_weights_path(name).name}`" for name in names)
    folder = imagenet_weights_path(names[0]).parent
    return (f"Demo mode needs torchvision's ImageNet weights, which are not in the torch cache and cannot be "
            f"downloaded here: copy {files} into `{folder}` from a machine with internet access, or switch demo "
            "mode off.")


def model_table(ctx: state.AppContext) -> list[dict[str, str]]:
    """The Home page's model table: one dict per named model (see :func:`model_rows`)."""
    return [r.row for r in model_rows(ctx)]


def first_line(exc: BaseException) -> str:
    """An error as one line: its message's first line (the rest goes into :func:`failure_detail`)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def failure_detail(exc: BaseException) -> str:
    """The whole message, and the traceback of what caused it (e.g. an exception raised in the
    user's own model code), for an expander the user opens if they want it."""
    parts = [str(exc).strip() or type(exc).__name__]
    cause = exc.__cause__ or getattr(exc, "detail", None)
    if isinstance(cause, BaseException):
        parts.append("".join(traceback.format_exception(cause)).rstrip())
    elif isinstance(cause, str) and cause:
        parts.append(cause.rstrip())
    return "\n\n".join(parts)


def test_metrics() -> dict[str, object] | None:
    """Accuracy and toxicity-aware error rates per evaluated model, from the results store
    the Errors page reads (its sidebar path, else ``$MUSHCAM_RESULTS`` / runs/results.sqlite).
    None where there is no store yet; a broken store is reported, never raised."""
    path = store_picker.chosen_store_path()
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
