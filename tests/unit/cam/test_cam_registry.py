"""The CAM method registry: a method registered at run time reaches the engine, the cache key,
the command line and the Explain page, with no edit to any of them; old import paths still work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from factories import make_image, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from mushcam.cache import cam_key, method_key_part
from mushcam.cam import (
    COSTS,
    DEFAULT_METHOD,
    METHOD_LABELS,
    METHODS,
    Column,
    MapRequest,
    Method,
    UnknownMethodError,
    cam,
    capture,
    check_method,
    get_method,
    method_help,
    register,
    registered,
)
from mushcam.cli import main
from mushcam.manifest import InputSpec
from mushcam.models import build_model

ROOT = PROJECT_ROOT
BUILT_IN = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigencam", "ablationcam", "scorecam",
            "finercam", "cam", "eigengradcam", "gradcamelementwise", "fullgrad", "kpcacam", "shapleycam", "fem",
            "refinecam", "smoothgradcampp", "sscam", "iscam", "legrad", "dff")


def toy_map(request: MapRequest) -> torch.Tensor:
    """The activation's mean over channels, ReLU'd: the simplest map there is."""
    return torch.relu(request.activation.mean(dim=1))


TOY = Method("toycam", "Toy-CAM", "1 forward, no gradient", False, toy_map)


@pytest.fixture
def toy() -> Method:
    with registered(TOY) as method:
        yield method
    assert "toycam" not in METHODS  # the block leaves nothing behind


def test_registering_a_method_for_a_block_and_undoing_it(toy: Method):
    assert METHODS == (*BUILT_IN, "toycam")
    assert METHOD_LABELS["toycam"] == "Toy-CAM" and COSTS["toycam"] == "1 forward, no gradient"
    assert get_method("toycam") is toy and check_method("toycam") == "toycam"
    assert "toycam" in method_help() and method_help().startswith("CAM method: gradcam (default), gradcampp")
    with pytest.raises(ValueError, match="already registered"):
        register(TOY)


def test_the_registry_views_are_the_built_in_methods_in_order():
    assert METHODS == BUILT_IN and tuple(METHOD_LABELS) == BUILT_IN and len(COSTS) == len(BUILT_IN)
    assert DEFAULT_METHOD == "gradcam" and METHOD_LABELS["gradcam"] == "Grad-CAM"
    assert [get_method(name).needs_gradient for name in BUILT_IN[:9]] == [True] * 5 + [False] * 3 + [True]
    with pytest.raises(UnknownMethodError, match="toycam"), registered(TOY):
        check_method("nocam")  # the message lists every registered name
    with pytest.raises(UnknownMethodError):
        check_method("toycam")


def test_a_registered_method_runs_on_the_shared_capture(toy: Method):
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_large", 4).eval()
    batch = torch.randn(2, 3, 64, 64)
    result = cam(model, batch, "features.16", class_idx=[1, 2], method="toycam")
    captured = capture(model, batch, "features.16", [1, 2], gradients=False)
    assert torch.equal(result.cams, torch.relu(captured.activations["features.16"].mean(dim=1)).float())
    assert result.class_idx.tolist() == [1, 2]
    spec = InputSpec(size=64)
    keys = {cam_key("ck", "im", "features.16", 1, spec, method) for method in METHODS}
    assert len(keys) == len(METHODS)  # the new method has its own cache entries


def test_a_registered_method_is_on_the_command_line(toy: Method, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "toycam" in " ".join(capsys.readouterr().out.split())
    ckpt = write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",))
    image = tmp_path / "photo.png"
    make_image(80, 60, seed=2).save(image)
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", "mobilenet_v3_large", "--manifest", str(ckpt),
                 "--method", "toycam", "--out", str(out)]) == 0
    assert json.loads((out / "prediction.json").read_text())["method"] == "toycam"
    assert (out / "overlay.png").is_file()


@pytest.mark.parametrize("command", ["gradcam", "compare", "faithfulness", "sanity"])
def test_a_registered_method_is_in_every_commands_method_help(toy: Method, command: str,
                                                              capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main([command, "--help"])  # builds the parser now, after the toy method was registered
    text = " ".join(capsys.readouterr().out.split())
    assert method_help() in text
    assert "toycam" in text and all(name in text for name in BUILT_IN)


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_a_registered_method_is_on_the_explain_page(toy: Method, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",))
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1, size=(90, 70))
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Explain.py"), default_timeout=120).run()
    at.radio(key="source").set_value("Sample folder").run()
    assert not at.exception
    assert list(at.selectbox(key="method").options)[-1] == "Toy-CAM"
    at.selectbox(key="method").set_value("toycam").run()
    assert not at.exception
    assert "· Toy-CAM: predicted" in "\n".join(m.value for m in at.markdown)


def test_columns_keep_todays_keys():
    assert Column("resnet50", "gradcam").key == "resnet50" == Column("resnet50").key
    assert Column("resnet50", "gradcampp").key == "resnet50/gradcampp"
    for key in ("resnet50", "resnet50/scorecam", "org/model", "org/model/eigencam"):
        assert Column.parse(key).key == key
    assert Column.parse("org/model") == Column("org/model", "gradcam")
    assert Column.parse("org/model/eigencam") == Column("org/model", "eigencam")


def test_gradcam_keeps_the_cache_key_it_had_before_methods():
    assert method_key_part("gradcam") == () and method_key_part("eigencam") == ("method=eigencam",)


def test_old_import_paths_still_work():
    import mushcam.agreement
    import mushcam.cache
    import mushcam.cam
    import mushcam.explain
    import mushcam.gradcam
    import mushcam.methods
    import mushcam.metrics
    import mushcam.metrics.agreement
    import mushcam.metrics.classification
    from mushcam.methods.core import capture as old_capture
    from mushcam.methods.eigen import eigen_projection

    assert mushcam.gradcam.grad_cam is mushcam.cam.grad_cam
    assert mushcam.gradcam.GradCAMResult is mushcam.cam.CamResult is mushcam.cam.GradCAMResult
    assert mushcam.gradcam.GradCAMError is mushcam.cam.GradCAMError
    assert mushcam.methods.cam is mushcam.cam.cam and mushcam.methods.METHODS == BUILT_IN
    assert old_capture is capture and callable(eigen_projection)
    assert mushcam.cache.cached_explanation is mushcam.explain.cached_explanation
    assert mushcam.agreement.spearman is mushcam.metrics.agreement.spearman
    assert mushcam.metrics.compute_metrics is mushcam.metrics.classification.compute_metrics


def test_every_registered_method_has_its_row_in_the_methods_doc():
    table = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")}
    missing = [name for name in METHODS if name not in rows]
    assert not missing, f"docs/methods.md's table has no row for {missing}"
