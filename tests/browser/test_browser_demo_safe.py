"""Demo safety in a real browser: a long map starts only on a click and stops at once; every map
carries its colour bar and a caption that matches the colormap; a flat map and a collapsed model
are said in words.

Each step waits for the element it asserts on (never a fixed time), so the tests hold on a
loaded host. Screenshots: artifacts/screenshots/demo_*.png; the measured Stop latency:
artifacts/demo_stop_seconds.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from browser_support import (
    PROJECT_ROOT,
    browser_page,
    exception_texts,
    running_app,
    screenshot,
    wait_for_text,
    wait_idle,
)
from factories import CLASSES, make_image, write_image_folder, write_manifest

pytestmark = pytest.mark.browser

OVERLAY = '[data-testid="stTabPanel"]:not([hidden]) [data-testid="stImage"] img'


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).locator("input").click()
    page.get_by_role("option", name=option, exact=True).click()


def upload(page, url: str, photo: Path) -> None:
    page.goto(f"{url}/Explain")
    wait_idle(page, ready='input[type="file"]')
    page.locator('input[type="file"]').set_input_files(str(photo))
    wait_idle(page, ready=OVERLAY)


def test_score_cam_waits_for_a_click_stops_at_once_and_a_model_change_does_not_restart_it(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("resnet50", "mobilenet_v3_large"), size=96)
    photo = tmp_path / "photo.jpg"
    make_image(320, 240, seed=3).save(photo, quality=92)
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": ""}
    sync_api = pytest.importorskip("playwright.sync_api")

    with running_app(env) as url, browser_page(width=1440, height=1300) as page:
        upload(page, url, photo)
        choose(page, "CAM method", "Score-CAM")
        wait_for_text(page, "Compute Score-CAM")
        assert page.get_by_text("forward passes").count() >= 1  # the estimate is shown before anything starts
        assert page.locator('[data-testid="stProgress"]').count() == 0, "Score-CAM started without a click"
        assert page.get_by_text("confidence").count() >= 1  # the prediction did not wait for the map
        screenshot(page, "demo_long_map_estimate")

        page.get_by_role("button", name="Compute Score-CAM").click()
        page.locator('[data-testid="stProgress"]').first.wait_for(state="visible", timeout=120_000)
        sync_api.expect(page.locator('[data-testid="stProgress"]').first).to_contain_text("channels",
                                                                                         timeout=120_000)
        screenshot(page, "demo_long_map_running")
        stop = page.get_by_role("button", name="Stop")
        started = time.monotonic()
        stop.click()
        page.get_by_text("was stopped").first.wait_for(state="visible", timeout=120_000)
        stopped_after = time.monotonic() - started
        page.get_by_role("button", name="Compute Score-CAM").wait_for(state="visible", timeout=120_000)
        assert page.locator('[data-testid="stProgress"]').count() == 0
        assert exception_texts(page) == []
        (PROJECT_ROOT / "artifacts").mkdir(exist_ok=True)
        (PROJECT_ROOT / "artifacts" / "demo_stop_seconds.json").write_text(json.dumps({"stop_to_usable_s":
                                                                                       stopped_after}))
        assert stopped_after < 10, f"the page took {stopped_after:.1f} s to come back after Stop"
        screenshot(page, "demo_long_map_stopped")

        choose(page, "Model", "MobileNetV3-Large")
        wait_for_text(page, "MobileNetV3-Large for")  # the estimate for the new model, not a silent start
        page.get_by_role("button", name="Compute Score-CAM").wait_for(state="visible", timeout=120_000)
        assert page.locator('[data-testid="stProgress"]').count() == 0, "a model change restarted Score-CAM"
        assert exception_texts(page) == []


def test_every_map_has_a_colour_bar_and_a_caption_that_matches_viridis(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), size=96)
    photo = tmp_path / "photo.jpg"
    make_image(400, 300, seed=5).save(photo, quality=92)
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": ""}
    with running_app(env) as url, browser_page(width=1440, height=1300) as page:
        upload(page, url, photo)
        assert page.get_by_text("Dark red: regions that raised the score").count() == 1  # jet, the default
        choose(page, "Colormap", "viridis")
        wait_for_text(page, "Yellow: regions that raised the score")
        assert page.get_by_text("Dark red: regions").count() == 0 and page.get_by_text("blue: little").count() == 0
        width = page.locator(OVERLAY).first.evaluate("img => img.naturalWidth")
        assert width > 400, "the overlay carries no colour bar beside the photo"
        assert page.get_by_text("MobileNetV3-Large · Grad-CAM").count() >= 1  # the title names the method
        assert exception_texts(page) == []
        screenshot(page, "demo_colour_bar_viridis")


def write_flat_model(ckpt: Path, size: int = 64) -> None:
    """A MobileNetV3 whose last block outputs a constant: a flat map, and one class for every photo."""
    write_manifest(ckpt, backbones=("mobilenet_v3_large",), size=size)
    path = ckpt / "mobilenet_v3_large.pt"
    state = torch.load(path, weights_only=True)
    state["features.16.1.weight"].zero_()
    state["features.16.1.bias"].fill_(1.0)
    torch.save(state, path)


def test_a_flat_map_and_a_collapsed_model_are_said_in_words(tmp_path: Path):
    from mushcam.cli import main

    ckpt = tmp_path / "ckpt"
    write_flat_model(ckpt)
    data = write_image_folder(tmp_path / "test", [name for name, _ in CLASSES], per_class=4)
    store = tmp_path / "results.sqlite"
    assert main(["evaluate", "--manifest", str(ckpt), "--data", str(data), "--out", str(store)]) == 0
    photo = data / CLASSES[0][0] / "img_0.png"
    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": "", "MUSHCAM_RESULTS": str(store)}
    with running_app(env) as url, browser_page(width=1440, height=1300) as page:
        upload(page, url, photo)
        wait_for_text(page, "flat: this map does not single out a region")
        wait_for_text(page, "collapse onto")
        assert exception_texts(page) == []
        screenshot(page, "demo_flat_and_collapsed")
