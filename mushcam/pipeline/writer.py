"""The files a run writes into ``OUT/<model>/``: the folder's name, where each one goes, atomic writes, each image's
views, map and CSV row, and the ``run.json`` that keeps one folder to one set of settings."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mushcam.cam import DEFAULT_METHOD
from mushcam.catalog import entry_fingerprint
from mushcam.exceptions import UsageError
from mushcam.explain import Explanation, render_explanation
from mushcam.files import write_bytes_atomic
from mushcam.manifest import file_safe_name
from mushcam.pipeline.config import PipelineConfig
from mushcam.pipeline.items import ImageItem
from mushcam.render import to_png

RUN_FORMAT = 1
CSV_FIELDS = ("image", "true_class", "predicted", "confidence", "explained_class", "explained_probability", "cam_max")


def model_folder_name(backbone: str, method: str) -> str:
    """The name of a model's folder under ``OUT``: ``<model>`` for Grad-CAM, ``<model>-<method>`` otherwise.

    Grad-CAM keeps the folder of runs made before there were other methods, so that those
    folders are found (and extended, not recomputed) as before; another method gets its own.
    """
    folder = file_safe_name(backbone)
    return folder if method == DEFAULT_METHOD else f"{folder}-{method}"


def method_setting(method: str) -> dict[str, str]:
    """The method's part of ``run.json``: nothing for Grad-CAM, ``{"method": name}`` otherwise.

    Grad-CAM keeps the ``run.json`` of runs made before there were other methods (it had no
    ``method`` field), so that their folders still match their settings and are not refused.
    """
    return {} if method == DEFAULT_METHOD else {"method": method}


def output_paths(out_dir: Path, relpath: str, views: Sequence[str]) -> dict[str, Path]:
    """The files one image gets in a backbone's folder: one PNG per view and the raw map."""
    paths = {view: out_dir / f"{relpath}.{view}.png" for view in views}
    paths["cam"] = out_dir / f"{relpath}.cam.npy"
    return paths


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    write_bytes_atomic(path, data)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def run_settings(config: PipelineConfig, backbone: str, checkpoint_sha: str, layer: str) -> dict[str, object]:
    spec = config.manifest.input
    return {
        "format": RUN_FORMAT,
        "backbone": backbone,  # the model's manifest name
        "checkpoint_sha256": checkpoint_sha,
        "layer": layer,
        "classes": config.manifest.class_names,
        "input": {"size": spec.size, "resize": spec.resize, "mean": list(spec.mean), "std": list(spec.std)},
        "target": config.target,
        "views": list(config.views),
        "alpha": config.alpha,
        "colormap": config.colormap,
        "max_side": config.max_side,
        "png_level": config.png_level,
        # the architecture, where the name does not say it (runs of older versions had none)
        **({"arch": arch} if (arch := config.manifest.models[backbone].arch) != backbone else {}),
        # head activation / user code / kwargs, where the entry sets them (catalog.entry_fingerprint)
        **({"entry": fingerprint} if (fingerprint := entry_fingerprint(config.manifest, backbone)) else {}),
        **method_setting(config.method),
    }


def check_run_settings(out_dir: Path, settings: dict[str, object], force: bool) -> None:
    """Refuse to mix files made with other settings into one folder (unless --force)."""
    path = out_dir / "run.json"
    if path.is_file() and not force:
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != settings:
            differing = (
                sorted(k for k in settings if previous.get(k) != settings[k])
                if isinstance(previous, dict) else ["run.json"]
            )
            raise UsageError(
                f"{out_dir} holds results made with other settings ({', '.join(differing)} differ); "
                "choose another --out, or pass --force to recompute and overwrite them"
            )
    write_atomic(path, (json.dumps(settings, indent=2) + "\n").encode("utf-8"))


def write_image_files(config: PipelineConfig, out_dir: Path, label: str, relpath: str, image: Image.Image,
                      explanation: Explanation) -> None:
    """One image's view PNGs (``config.views``) and its raw map ``.cam.npy`` in ``out_dir``."""
    views = render_explanation(image, explanation, config.manifest, label,
                               config.alpha, config.colormap, max_side=config.max_side)
    pixels = {name.lower(): array for name, array in views.as_dict().items()}
    paths = output_paths(out_dir, relpath, config.views)
    for view in config.views:
        write_atomic(paths[view], to_png(pixels[view], config.png_level))
    write_atomic(paths["cam"], npy_bytes(explanation.cam.numpy().astype(np.float32)))


def csv_row(names: Sequence[str], item: ImageItem, stored: torch.Tensor, probabilities: torch.Tensor,
            class_idx: int) -> list[str]:
    """One image's row of ``predictions.csv`` (columns: :data:`CSV_FIELDS`)."""
    predicted = int(probabilities.argmax())
    return [
        item.relpath,
        item.label or "",
        names[predicted],
        f"{float(probabilities[predicted]):.6f}",
        names[class_idx],
        f"{float(probabilities[class_idx]):.6f}",
        repr(float(stored.max())) if stored.numel() else "0.0",
    ]
