"""The Explain page's "versus" selector: a contrastive map of the explained class over a second one (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

import mushcam.cam.engine

ROOT = PROJECT_ROOT
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def versus_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("mobilenet_v3_large",))
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1, size=(90, 70))
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    calls: list[object] = []
    original = mushcam.cam.engine.cam

    def counting(*args, **kwargs):
        calls.append(kwargs.get("versus"))
        return original(*args, **kwargs)

    monkeypatch.setattr("mushcam.explain.compute_cam", counting)
    return calls


def test_versus_defaults_to_the_runner_up_and_titles_the_contrast(versus_calls: list[object]):
    at = AppTest.from_file(str(ROOT / "pages" / "1_Explain.py"), default_timeout=120).run()
    at.radio(key="source").set_value("Sample folder").run()
    assert not at.exception and versus_calls == []  # the plain Grad-CAM goes through grad_cam
    at.toggle(key="contrast").set_value(True).run()
    assert not at.exception
    versus = at.selectbox(key="versus")
    text = "\n".join(m.value for m in at.markdown)
    predicted = text.split("### ")[1].split(" ")[0]
    names = ["Amanita", "Boletus", "Gyromitra", "Suillus"]
    assert names[versus.value] != predicted and versus.value in versus_calls
    assert f"what pushed {predicted}" in text and f"above {names[versus.value]}" in text
    # another method that cannot contrast says so and shows its plain map
    at.selectbox(key="method").set_value("eigencam").run()
    assert not at.exception
    assert any("cannot contrast two classes" in c.value for c in at.caption)


def test_the_versus_map_is_cached_apart_from_the_plain_map(versus_calls: list[object]):
    at = AppTest.from_file(str(ROOT / "pages" / "1_Explain.py"), default_timeout=120).run()
    at.radio(key="source").set_value("Sample folder").run()
    plain = [image.proto.imgs[0].url for image in at.get("image")]
    at.toggle(key="contrast").set_value(True).run()
    contrast = [image.proto.imgs[0].url for image in at.get("image")]
    assert contrast[0] != plain[0]  # a different overlay
    at.toggle(key="contrast").set_value(False).run()
    assert len(versus_calls) == 1  # back to the plain map: no new contrast computed
