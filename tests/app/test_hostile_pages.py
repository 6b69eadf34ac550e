"""The hostile-input catalogue, page side: every page answers bad input with one message.

Each case prepares a checkpoint folder, a sample folder, a results store or a cache folder
the way a hostile user would, opens a page in Streamlit's AppTest, and asserts that no
exception reached the page (``at.exception`` is empty), that the message is shown in an
error or warning box, and (where the input leaves a way forward) that the page still works.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import CLASSES, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

ROOT = PROJECT_ROOT
PAGES = {
    "Home": str(ROOT / "app.py"),
    "Explain": str(ROOT / "pages" / "1_Explain.py"),
    "Compare": str(ROOT / "pages" / "2_Compare.py"),
    "Errors": str(ROOT / "pages" / "3_Errors.py"),
}
MODEL = "mobilenet_v3_large"
NAMES = [name for name, _ in CLASSES]
BAD_NAME = os.fsdecode(b"caf\xe9.png")


# Streamlit caches persist across AppTest instances in one process: every test starts clean.
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(checkpoint folder, data folder, results store with one run), made once."""
    from mushcam.evaluate import evaluate_models
    from mushcam.manifest import load_manifest

    base = tmp_path_factory.mktemp("store")
    ckpt = base / "ckpt"
    write_manifest(ckpt, backbones=(MODEL,))
    data = write_image_folder(base / "data", NAMES, per_class=2)
    store = base / "results.sqlite"
    evaluate_models(data, load_manifest(ckpt), store, log=lambda line: None)
    return ckpt, data, store


@dataclass
class Env:
    tmp: Path
    ckpt: Path
    samples: Path
    store: Path
    monkeypatch: pytest.MonkeyPatch

    def manifest(self, edit: Callable[[dict], None]) -> None:
        path = self.ckpt / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))

    def store_sql(self, sql: str, *params: object) -> None:
        connection = sqlite3.connect(self.store)
        connection.execute(sql, params)
        connection.commit()
        connection.close()


def _nan_weights(env: Env) -> None:
    path = env.ckpt / f"{MODEL}.pt"
    state = torch.load(path, weights_only=True)
    state["classifier.3.bias"] = torch.full_like(state["classifier.3.bias"], float("inf"))
    state["classifier.3.weight"] = torch.full_like(state["classifier.3.weight"], float("nan"))
    torch.save(state, path)


def _layer(name: str) -> Callable[[Env], None]:
    def edit(env: Env) -> None:
        env.manifest(lambda m: m["models"][MODEL].update(layer=name))
    return edit


def _cache_is_a_file(env: Env) -> None:
    blocked = env.tmp / "cache-file"
    blocked.write_text("not a folder")
    env.monkeypatch.setenv("MUSHCAM_CACHE", str(blocked))


def _bad_sample_name(env: Env) -> None:
    (env.samples / "Amanita" / BAD_NAME).write_bytes((env.samples / "Amanita" / "img_0.png").read_bytes())


def _sample_root_link(env: Env) -> None:
    (env.samples / "Everything").symlink_to("/")


def _nan_blob(env: Env) -> None:
    blob = np.full(len(NAMES), np.nan, dtype="<f4").tobytes()
    env.store_sql("UPDATE predictions SET probabilities = ?", blob)


@dataclass(frozen=True)
class PageCase:
    page: str
    name: str
    setup: Callable[[Env], None]
    box: str  # "error" or "warning": where the message must be
    message: str  # regular expression
    still_works: bool = False  # the page goes on to show its pictures


PAGE_CASES = [
    PageCase("Explain", "layer-not-a-feature-map", _layer("classifier"), "error", r"needs a 4-D feature map"),
    PageCase("Explain", "layer-unknown", _layer("features.99"), "error", r"no module named 'features\.99'"),
    PageCase("Explain", "nan-weights", _nan_weights, "error", r"MobileNetV3-Large.*(non-finite|not finite)"),
    PageCase("Explain", "cache-cannot-be-written", _cache_is_a_file, "warning", r"cannot be written.*kept in memory",
             True),
    PageCase("Explain", "non-utf8-sample-name", _bad_sample_name, "warning", r"caf\\xe9\.png.*not valid UTF-8", True),
    PageCase("Explain", "sample-class-links-to-root", _sample_root_link, "warning", r"Everything.*links to /", True),
    PageCase("Compare", "nan-weights", _nan_weights, "error", r"MobileNetV3-Large.*(non-finite|not finite)"),
    PageCase("Compare", "layer-not-a-feature-map", _layer("classifier"), "error", r"needs a 4-D feature map"),
    PageCase("Compare", "non-utf8-sample-name", _bad_sample_name, "warning", r"caf\\xe9\.png.*not valid UTF-8", True),
    PageCase("Compare", "sample-class-links-to-root", _sample_root_link, "warning", r"Everything.*links to /", True),
    PageCase("Compare", "cache-cannot-be-written", _cache_is_a_file, "warning", r"cannot be written.*kept in memory",
             True),
    PageCase("Home", "store-bad-manifest-json",
             lambda env: env.store_sql("UPDATE runs SET manifest_json = '[1, 2'"), "error",
             r"manifest_json column is not a JSON object"),
    PageCase("Home", "store-class-index-out-of-range",
             lambda env: env.store_sql("UPDATE predictions SET true_idx = 42"), "error",
             r"true_idx holds class indices outside 0\.\.3"),
    PageCase("Home", "store-nan-probabilities", _nan_blob, "error", r"stored probabilities are not finite"),
    PageCase("Home", "store-is-a-text-file", lambda env: env.store.write_text("hello\n" * 200), "error",
             r"not a readable SQLite results store"),
    PageCase("Home", "cache-cannot-be-written", _cache_is_a_file, "warning", r"cannot be written.*kept in memory"),
    PageCase("Errors", "store-bad-manifest-json",
             lambda env: env.store_sql("UPDATE runs SET manifest_json = 'null'"), "error",
             r"manifest_json column is not a JSON object"),
    PageCase("Errors", "store-class-index-out-of-range",
             lambda env: env.store_sql("UPDATE predictions SET pred_idx = 9"), "error",
             r"pred_idx holds class indices outside"),
    PageCase("Errors", "store-manifest-without-classes",
             lambda env: env.store_sql("UPDATE runs SET manifest_json = '{}'"), "error", r"no usable class list"),
    PageCase("Errors", "store-foreign-sqlite",
             lambda env: (env.store.unlink(), env.store_sql("CREATE TABLE notes (body TEXT)")), "error",
             r"not a MushCAM results store"),
]


@pytest.mark.parametrize("case", PAGE_CASES, ids=[f"{c.page}:{c.name}" for c in PAGE_CASES])
def test_pages_answer_hostile_input_with_one_message(case: PageCase, good_store: tuple[Path, Path, Path],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt_source, _, store_source = good_store
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for item in ckpt_source.iterdir():
        (ckpt / item.name).write_bytes(item.read_bytes())
    store = tmp_path / "results.sqlite"
    store.write_bytes(store_source.read_bytes())
    samples = write_image_folder(tmp_path / "samples", NAMES[:2], per_class=1)
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(store))
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cams"))
    case.setup(Env(tmp_path, ckpt, samples, store, monkeypatch))

    at = AppTest.from_file(PAGES[case.page], default_timeout=120)
    at.session_state["checkpoint_folder"] = str(ckpt)
    at.run()
    if case.page == "Explain" and not at.exception:
        at.radio(key="source").set_value("Sample folder").run()
    assert not at.exception, [e.value for e in at.exception]
    boxes = [box.value for box in getattr(at, case.box)]
    assert any(re.search(case.message, text, re.S) for text in boxes), boxes
    if case.still_works and case.page in ("Explain", "Compare"):
        assert at.get("image"), "the page should go on to show its pictures"
