"""Home and Explain pages in Streamlit's AppTest, with checkpoints the tests write."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from factories import CLASSES, write_checkpoint, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

import mushcam.explain
from mushcam import models

ROOT = PROJECT_ROOT
HOME = str(ROOT / "app.py")
EXPLAIN = str(ROOT / "pages" / "1_Explain.py")


# Streamlit caches persist across AppTest instances in one process: every test starts clean.
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Counts calls of the Grad-CAM engine made through the explain module."""
    calls: list[object] = []
    real = mushcam.explain.grad_cam

    def counting(*args, **kwargs):
        calls.append(kwargs.get("class_idx", args[3] if len(args) > 3 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(mushcam.explain, "grad_cam", counting)
    return calls


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def home(folder: Path) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["checkpoint_folder"] = str(folder)
    return at.run()


def test_home_lists_loaded_models_classes_and_the_safety_note(checkpoint_dir: Path):
    at = home(checkpoint_dir)
    assert not at.exception
    table = at.table[0].value
    assert list(table["Model"]) == ["ResNet-50", "EfficientNet-B0", "MobileNetV3-Large"]
    assert list(table["Architecture"]) == ["resnet50", "efficientnet_b0", "mobilenet_v3_large"]
    assert list(table["Status"]) == ["loaded", "loaded", "loaded"]
    assert "never decide whether to eat a mushroom" in at.info[0].value.lower()
    text = markdown_text(at)
    for name, _toxicity in CLASSES:
        assert f"**{name}**" in text
    assert ":red[poisonous]" in text and ":green[edible]" in text
    assert "64 x 64 px, resize mode `squash`" in text
    assert at.success and "3 of 3 models ready" in at.success[0].value


def test_home_shows_test_metrics_from_the_results_store(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from mushcam.evaluate import evaluate_models
    from mushcam.manifest import load_manifest
    from mushcam.metrics import compute_metrics
    from mushcam.store import load_store

    data = write_image_folder(tmp_path / "test", [name for name, _ in CLASSES], per_class=2)
    store = tmp_path / "results.sqlite"
    manifest = load_manifest(checkpoint_dir)
    evaluate_models(data, manifest, store, backbones=["mobilenet_v3_large"], log=lambda line: None)
    monkeypatch.setenv("MUSHCAM_RESULTS", str(store))
    run = load_store(store).runs[0]
    predictions = load_store(store).predictions[run.run_id]
    expected = compute_metrics(predictions.true_idx, predictions.pred_idx, manifest.class_names,
                               [c.toxicity for c in manifest.classes])

    at = home(checkpoint_dir)
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["Test images"]) == [8]
    assert list(table["Accuracy"]) == [f"{expected.accuracy:.1%}"]
    assert table["Poisonous → edible"][0].startswith(f"{expected.dangerous_count} / 4 ")


def test_home_names_missing_and_broken_checkpoints(checkpoint_dir: Path):
    (checkpoint_dir / "resnet50.pt").unlink()
    (checkpoint_dir / "efficientnet_b0.pt").write_bytes(b"not a checkpoint")
    at = home(checkpoint_dir)
    assert not at.exception
    table = at.table[0].value
    assert list(table["Status"]) == ["missing", "failed to load", "loaded"]
    assert "no file at" in table["Note"][0]
    assert "cannot read checkpoint efficientnet_b0.pt" in table["Note"][1]


def test_home_without_any_checkpoint_explains_what_to_put_where(tmp_path: Path):
    at = home(tmp_path / "empty")
    assert not at.exception
    assert "manifest not found" in at.error[0].value
    text = markdown_text(at)
    assert "resnet50.pt" in text and "manifest.json" in text and "python -m mushcam train" in text
    assert "demo mode" in text

    write_manifest(tmp_path / "weightless", write_weights=False)
    at = home(tmp_path / "weightless")
    assert list(at.table[0].value["Status"]) == ["missing"] * 3
    assert "No model can be used yet" in at.warning[0].value
    at.button(key="enable_demo").click().run()
    assert at.session_state["demo_mode"] is True


def test_demo_mode_offline_from_the_torch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    write_checkpoint(models.imagenet_weights_path("mobilenet_v3_large"), "mobilenet_v3_large", 1000)
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["demo_mode"] = True
    at.run()
    assert not at.exception
    assert "Demo mode" in at.warning[0].value  # the banner
    table = at.table[0].value
    assert list(table["Status"]) == ["unavailable", "unavailable", "loaded"]
    assert "could not download ImageNet weights for resnet50" in table["Note"][0]
    assert "agaric" in markdown_text(at)

    at.switch_page("pages/1_Explain.py").run()
    assert not at.exception
    assert "Demo mode" in at.warning[0].value  # labelled on every page


@pytest.fixture
def explain_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("efficientnet_b0", "mobilenet_v3_large"))
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=2, size=(120, 90))
    (samples / "Amanita" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    return samples


def explain_page() -> AppTest:
    at = AppTest.from_file(EXPLAIN, default_timeout=120).run()
    at.radio(key="source").set_value("Sample folder").run()
    return at


def image_urls(at: AppTest) -> list[str]:
    return [image.proto.imgs[0].url for image in at.get("image")]


def test_explain_controls_and_what_reruns_the_engine(explain_env: Path, engine_calls: list[object]):
    at = explain_page()
    assert not at.exception
    assert at.selectbox(key="sample").value == "Amanita/img_0.png"
    assert len(engine_calls) == 1  # one prediction + map for the predicted class
    assert len(at.get("image")) == 4  # overlay, heatmap, original, combined
    assert len(at.get("plotly_chart")) == 1
    assert "True class: **Amanita**" in markdown_text(at)
    first = image_urls(at)

    at.slider(key="alpha").set_value(0.8).run()
    assert len(engine_calls) == 1, "moving the alpha slider must not call the engine"
    after_alpha = image_urls(at)
    assert after_alpha[0] != first[0]  # the overlay changed
    assert after_alpha[2] == first[2]  # the original did not

    at.selectbox(key="colormap").set_value("viridis").run()
    assert len(engine_calls) == 1, "changing the colormap must not call the engine"
    assert image_urls(at)[1] != after_alpha[1]  # the heatmap changed

    predicted = at.session_state["target"]
    assert predicted is None
    options = at.selectbox(key="target").options
    assert options[0].startswith("Predicted: ")
    at.selectbox(key="target").set_value(3).run()  # "why Suillus?"
    assert engine_calls[1:] == [3], "a new target class runs the engine once, for that class"
    assert "map for Suillus" in markdown_text(at)
    at.selectbox(key="target").set_value(None).run()
    at.selectbox(key="target").set_value(3).run()
    assert len(engine_calls) == 2, "maps already computed are served from the cache"

    at.selectbox(key="backbone").set_value("mobilenet_v3_large").run()
    assert not at.exception
    assert engine_calls[2:] == [None, 3], "another backbone: its prediction, then the chosen class's map"
    assert at.get("download_button")


def test_explain_bad_file_gets_a_message_and_the_page_keeps_working(explain_env: Path, engine_calls: list[object]):
    at = explain_page()
    at.selectbox(key="sample").set_value("Amanita/zz_broken.jpg").run()
    assert not at.exception
    assert "zz_broken.jpg** cannot be used" in at.error[0].value
    assert "truncated" in at.error[0].value or "not an image" in at.error[0].value
    at.selectbox(key="sample").set_value("Boletus/img_1.png").run()
    assert not at.exception
    assert not [e for e in at.error if "cannot be used" in e.value]
    assert len(at.get("image")) == 4


def test_explain_without_models_points_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_manifest(tmp_path / "ckpt", write_weights=False)
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(tmp_path / "ckpt"))
    at = AppTest.from_file(EXPLAIN, default_timeout=60).run()
    assert not at.exception
    assert "No model is available" in at.warning[0].value
