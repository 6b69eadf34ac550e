"""A results store whose Errors-page contents are known row by row (shared by the Errors, Review and browser tests).

Two runs over a 12-image ImageFolder (4 classes x 3); EfficientNet-B0's rows are ``PRED`` /
``CONF`` against ``TRUE`` (the table is in tests/app/test_errors_page.py), MobileNetV3-Large
gets every row right but Amanita/img_1. Moved here from test_errors_page.py so that no test
module imports another.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from factories import CLASSES, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from mushcam import store
from mushcam.data import image_sha256
from mushcam.manifest import load_manifest
from mushcam.models import DEFAULT_LAYERS, file_sha256

PAGE = str(PROJECT_ROOT / "pages" / "3_Errors.py")
NAMES = [n for n, _ in CLASSES]
TRUE = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
PRED = [0, 1, 3, 1, 0, 1, 2, 3, 0, 3, 3, 2]
CONF = [0.90, 0.95, 0.60, 0.40, 0.70, 0.85, 0.30, 0.55, 0.45, 0.99, 0.80, 0.65]
PATHS = [f"{NAMES[t]}/img_{k}.png" for t in range(4) for k in range(3)]


def rows_for(data: Path, pred: list[int], conf: list[float], paths: list[str] = PATHS) -> store.Predictions:
    """Store rows over ``data``: row i predicts ``pred[i]`` with ``conf[i]``, the rest spread evenly over 3 classes."""
    probabilities = np.zeros((len(pred), 4), dtype=np.float32)
    for i, (p, c) in enumerate(zip(pred, conf, strict=True)):
        probabilities[i] = (1 - c) / 3
        probabilities[i, p] = c
    return store.Predictions(
        image_paths=tuple(paths),
        image_sha256=tuple(image_sha256((data / p).read_bytes()) if (data / p).is_file() else "0" * 64 for p in paths),
        true_idx=np.asarray(TRUE[: len(pred)]), pred_idx=np.asarray(pred),
        confidence=probabilities.max(1).astype(np.float64), probabilities=probabilities,
    )


def run_record(backbone: str, ckpt: Path, data: Path, n: int, sha: str | None = None) -> store.RunRecord:
    """A finished run of ``backbone`` over ``n`` images of ``data`` (``sha``: another checkpoint hash)."""
    manifest = load_manifest(ckpt)
    return store.RunRecord(
        backbone=backbone, checkpoint_path=str(ckpt / f"{backbone}.pt"),
        checkpoint_sha256=sha or file_sha256(ckpt / f"{backbone}.pt"), layer=DEFAULT_LAYERS[backbone],
        data_root=str(data.resolve()), manifest=manifest.to_dict(), started_at="2026-11-26T00:00:00+00:00",
        finished_at="2026-11-26T00:00:05+00:00", versions={}, batch_size=16, seconds=1.0, n_images=n,
    )


def write_errors_setup(base: Path, size: tuple[int, int] = (80, 60)) -> dict[str, Path]:
    """Checkpoints, a 12-image test folder and a store with one run per backbone whose rows are known."""
    ckpt = base / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large", "efficientnet_b0"))
    data = write_image_folder(base / "data", NAMES, per_class=3, size=size)
    out = base / "results.sqlite"
    store.save_run(out, run_record("efficientnet_b0", ckpt, data, 12), rows_for(data, PRED, CONF))
    other_pred = list(TRUE)
    other_pred[1] = 2  # MobileNet calls Amanita/img_1 Gyromitra (wrong, but not dangerous)
    store.save_run(out, run_record("mobilenet_v3_large", ckpt, data, 12), rows_for(data, other_pred, [0.8] * 12))
    return {"base": base, "ckpt": ckpt, "data": data, "out": out}


def open_page(monkeypatch: pytest.MonkeyPatch, ckpt: Path, results: Path, data: Path | str | None = None) -> AppTest:
    """The page on ``results``; the image folder is ``data`` (default: the store's sibling ``data``; "" = none)."""
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(results))
    monkeypatch.setenv("MUSHCAM_DATA", str(results.parent / "data" if data is None else data))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def matching(at: AppTest) -> int:
    """The page's "**N matching rows**" count."""
    texts = [m.value for m in at.markdown if "matching rows" in m.value]
    assert len(texts) == 1, texts
    return int(re.search(r"\*\*(\d+) matching rows\*\*", texts[0]).group(1))


def pictures(at: AppTest) -> list[tuple[str, str]]:
    """(caption, url) of every st.image on the page."""
    return [(img.caption, img.url) for element in at.get("image") for img in element.proto.imgs]


def listed(at: AppTest) -> list[str]:
    """Image paths of the Errors table, in its order."""
    return list(at.dataframe(key="err_table").value["image"])
