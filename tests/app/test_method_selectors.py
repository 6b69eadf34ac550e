"""The CAM method selectors of the Explain, Compare and Errors pages (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

import mushcam.explain
from mushcam.cam import METHODS

LABELS = ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "HiResCAM", "LayerCAM", "Eigen-CAM", "Ablation-CAM", "Score-CAM",
          "Finer-CAM", "CAM", "EigenGrad-CAM", "Grad-CAM (element-wise)", "FullGrad", "KPCA-CAM", "ShapleyCAM", "FEM",
          "RefineCAM", "Smooth Grad-CAM++", "SS-CAM", "IS-CAM", "LeGrad", "Deep Feature Factorization")

ROOT = PROJECT_ROOT


# Streamlit caches persist across AppTest instances in one process: every test starts clean.
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("efficientnet_b0", "mobilenet_v3_large"))
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1, size=(90, 70))
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cams"))
    return samples


@pytest.fixture
def method_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods computed through mushcam.explain (Grad-CAM goes through its own engine)."""
    calls: list[str] = []
    real_cam, real_grad_cam = mushcam.explain.compute_cam, mushcam.explain.grad_cam

    def counting_cam(*args, **kwargs):
        calls.append(kwargs["method"])
        return real_cam(*args, **kwargs)

    def counting_grad_cam(*args, **kwargs):
        calls.append("gradcam")
        return real_grad_cam(*args, **kwargs)

    monkeypatch.setattr(mushcam.explain, "compute_cam", counting_cam)
    monkeypatch.setattr(mushcam.explain, "grad_cam", counting_grad_cam)
    return calls


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_explain_method_selector(env: Path, method_calls: list[str]):
    at = AppTest.from_file(str(ROOT / "pages" / "1_Explain.py"), default_timeout=120).run()
    at.radio(key="source").set_value("Sample folder").run()
    assert not at.exception
    selector = at.selectbox(key="method")
    assert selector.value == "gradcam" and list(selector.options) == [
*LABELS]
    assert method_calls == ["gradcam"]
    before = [image.proto.imgs[0].url for image in at.get("image")]

    at.selectbox(key="method").set_value("layercam").run()
    assert not at.exception
    assert method_calls == ["gradcam", "layercam"]
    assert "· LayerCAM: predicted" in markdown_text(at)  # the map's title names its method
    after = [image.proto.imgs[0].url for image in at.get("image")]
    assert after[0] != before[0] and after[2] == before[2]  # a new overlay, the same original

    at.selectbox(key="method").set_value("gradcam").run()
    assert method_calls == ["gradcam", "layercam"], "a map already made is served from the cache"
    at.selectbox(key="target").set_value(1).run()
    at.selectbox(key="method").set_value("eigencam").run()
    assert not at.exception
    assert method_calls[-1] == "eigencam"


def test_compare_methods_are_a_second_axis(env: Path):
    at = AppTest.from_file(str(ROOT / "pages" / "2_Compare.py"), default_timeout=120).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.multiselect(key="compare_methods").value == ["gradcam"]
    assert list(at.multiselect(key="compare_methods").options) == [
*LABELS]
    images_before = len(at.get("image"))
    at.multiselect(key="compare_methods").select("hirescam").run()
    assert not at.exception, [e.message for e in at.exception]
    headers = [md.value for md in at.markdown[:5]]
    assert headers == ["**Image**", "**EfficientNet-B0**", "**EfficientNet-B0 · HiResCAM**",
                       "**MobileNetV3-Large**", "**MobileNetV3-Large · HiResCAM**"]
    rows = images_before // 3
    # per row: the original, 2 models x 2 methods and the row's matrix; then the whole grid's matrix
    assert len(at.get("image")) == rows * (5 + 1) + 1
    summary = at.dataframe[0].value
    assert list(summary["model"]) == ["EfficientNet-B0", "EfficientNet-B0 · HiResCAM",
                                         "MobileNetV3-Large", "MobileNetV3-Large · HiResCAM"]
    at.toggle(key="compare_faithfulness").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    faithfulness = next(d.value for d in at.dataframe if "deletion_auc" in d.value.columns)
    assert len(faithfulness) == rows * 4 and "EfficientNet-B0 · HiResCAM" in set(faithfulness["model"])
    at.toggle(key="compare_faithfulness").set_value(False).run()
    at.multiselect(key="compare_methods").unselect("gradcam").unselect("hirescam").run()
    assert not at.exception
    assert any("one CAM method" in info.value for info in at.info)


def test_errors_page_has_a_method_selector(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from errors_setup import open_page, pictures, write_errors_setup

    written = write_errors_setup(tmp_path / "errors")
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    assert at.selectbox(key="err_method").value == "gradcam"
    assert len(at.selectbox(key="err_method").options) == len(METHODS)
    before = [url for _, url in pictures(at)]
    assert len(before) >= 2  # the original and at least one map
    at.selectbox(key="err_method").set_value("gradcampp").run()
    assert not at.exception, [e.value for e in at.exception]
    after = [url for _, url in pictures(at)]
    assert len(after) == len(before) and after[0] == before[0]  # the same original
    assert after[1:] != before[1:]  # the maps were redrawn with the other method
