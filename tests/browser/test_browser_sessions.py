"""Two browser sessions on one server explain different photos with different models at the
same moment: each sees its own answer (no crossed results) and no error.

The expected titles (model, predicted class, confidence, explained class) are computed here
with the library, so a result computed for the other session would be caught.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from browser_support import browser_sessions, exception_texts, running_app, screenshot, wait_for_text, wait_idle
from factories import CLASSES, make_image, write_manifest

from mushcam.data import load_image
from mushcam.explain import explain_image, explanation_title
from mushcam.manifest import load_manifest
from mushcam.models import DISPLAY_NAMES, load_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OVERLAY = '[data-testid="stTabPanel"]:not([hidden]) [data-testid="stImage"] img'
MODELS = ("efficientnet_b0", "mobilenet_v3_large")
BIAS = {"efficientnet_b0": (0.0, 1.5, 0.0, 0.5), "mobilenet_v3_large": (0.5, 0.0, 1.5, 0.0)}


def _bias(path: Path, backbone: str) -> None:
    """Shift the head's bias so that the two models prefer different classes (titles differ)."""
    state = torch.load(path, weights_only=True)
    key = [k for k in state if k.endswith(".bias") and state[k].numel() == len(CLASSES)][-1]
    state[key] = state[key] + torch.tensor(BIAS[backbone])
    torch.save(state, path)


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (this reruns the script at once)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.get_by_role("option").filter(has_text=option).first.click()


def test_two_sessions_explain_different_photos_with_different_models_at_once(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=MODELS, size=96)
    for backbone in MODELS:
        _bias(ckpt / f"{backbone}.pt", backbone)
    photos = [tmp_path / "first.jpg", tmp_path / "second.png"]
    make_image(320, 240, seed=11).save(photos[0], quality=92)
    make_image(200, 260, seed=29).save(photos[1])

    manifest = load_manifest(ckpt)
    models = {b: load_model(b, ckpt / f"{b}.pt", num_classes=manifest.num_classes) for b in MODELS}
    names = manifest.class_names
    target = names[3]

    def title(backbone: str, photo: Path, class_idx: int | None = None) -> str:
        image = load_image(photo)
        explanation = explain_image(models[backbone], image, manifest.input, manifest.models[backbone].layer, class_idx)
        return explanation_title(explanation, manifest, DISPLAY_NAMES[backbone])

    # What each session must show after the simultaneous change: the title names the model,
    # its prediction and the explained class; the overlay's pixel size identifies the photo
    # (randomly initialised trunks give nearly the same probabilities for any photo).
    want_a = title("mobilenet_v3_large", photos[0])
    want_b = title("efficientnet_b0", photos[1], 3)
    crossed = {title("efficientnet_b0", photos[0], 3), title("mobilenet_v3_large", photos[1])} - {want_a, want_b}
    assert want_a != want_b and "map for" in want_b and "map for" not in want_a
    sizes = {id(photos[0]): [320, 240], id(photos[1]): [200, 260]}

    env = {"MUSHCAM_CHECKPOINTS": str(ckpt), "MUSHCAM_SAMPLES": "", "MUSHCAM_CACHE": str(tmp_path / "cams")}
    with running_app(env) as url, browser_sessions(2) as (a, b):
        for page, photo in ((a, photos[0]), (b, photos[1])):
            page.goto(f"{url}/Explain")
            wait_idle(page, ready='input[type="file"]')
            page.locator('input[type="file"]').set_input_files(str(photo))
        for page in (a, b):
            wait_idle(page, ready=OVERLAY)
            assert exception_texts(page) == []

        # At the same moment: A switches to the other model, B asks for another class.
        _choose(a, "Model", DISPLAY_NAMES["mobilenet_v3_large"])
        _choose(b, "Explain class", target)
        for page, want in ((a, want_a), (b, want_b)):
            wait_for_text(page, want)  # the rerun has drawn the new title (the overlay was already there)
            wait_idle(page, ready=OVERLAY)
        screenshot(a, "sessions-a")
        screenshot(b, "sessions-b")
        for page, want, other, photo in ((a, want_a, want_b, photos[0]), (b, want_b, want_a, photos[1])):
            assert exception_texts(page) == []
            assert page.get_by_text(want, exact=False).count() >= 1, page.locator("strong").all_inner_texts()
            assert page.get_by_text(other, exact=False).count() == 0
            for wrong in crossed:
                assert page.get_by_text(wrong, exact=False).count() == 0
            shown = page.locator(OVERLAY).first.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            width, height = sizes[id(photo)]  # this session's photo: its height, and its width plus the colour bar
            assert shown[1] == height and width < shown[0] < width + 200, (shown, sizes[id(photo)])
