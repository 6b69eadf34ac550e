"""Round two of hostile inputs on the pages (issue 18 §2): a manifest entry whose ``kwargs``
the architecture cannot take (Home, Explain, Compare) and a 3 GB sample photo (Explain).

Each page shows one error box with the library's message and no exception
(``at.exception`` is empty); the 3 GB file (sparse: no disk spent) is refused from its
size, so the process's peak memory does not move.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from factories import write_image_folder, write_manifest
from hostile_checkpoints import make_checkpoint, write_entry_folder
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

PAGES = {"Home": "app.py", "Explain": "pages/1_Explain.py", "Compare": "pages/2_Compare.py"}
KWARGS_MESSAGE = ("models.mine: regnet_y_400mf does not accept kwargs 'bogus'; it accepts activation, block_type, "
                  "norm_layer, se_ratio, stem_type, stem_width")

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def open_page(page: str, folder: Path, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(folder))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(tmp_path / "results.sqlite"))
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cams"))
    at = AppTest.from_file(str(PROJECT_ROOT / PAGES[page]), default_timeout=120)
    at.session_state["checkpoint_folder"] = str(folder)
    at.run()
    if page == "Explain" and not at.exception:
        at.radio(key="source").set_value("Sample folder").run()
    return at


@pytest.mark.parametrize("page", list(PAGES))
def test_a_kwargs_key_the_architecture_lacks_is_one_box_naming_what_it_takes(
        page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    checkpoint = make_checkpoint("tiny", folder)
    write_entry_folder(folder, {"arch": "regnet_y_400mf", "kwargs": {"bogus": 1}}, checkpoint.name)
    before = checkpoint.read_bytes()
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1)
    at = open_page(page, folder, samples, tmp_path, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    boxes = [box.value for box in at.error]
    assert len(boxes) == 1 and KWARGS_MESSAGE in boxes[0], boxes
    assert "Traceback" not in boxes[0] and "TypeError" not in boxes[0]
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize(("page", "kind", "expected"), [
    ("Home", "dev_zero", "dev_zero.pt (a link to /dev/zero) is a character device, not a checkpoint file"),
    ("Explain", "proc_self_mem", "is a special file of the operating system, not a checkpoint file"),
])
def test_a_checkpoint_that_is_a_system_file_is_named_not_called_missing(
        page: str, kind: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    write_entry_folder(folder, {"arch": "resnet18"}, make_checkpoint(kind, folder).name)
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1)
    at = open_page(page, folder, samples, tmp_path, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    boxes = [box.value for box in at.error]
    assert len(boxes) == 1 and expected in boxes[0], boxes


def test_a_3_gb_sample_is_refused_from_its_size_without_reading_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",))
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1)
    with open(samples / "Amanita" / "huge.jpg", "wb") as handle:
        handle.truncate(3 * 10**9)  # sparse: 3 GB to stat, nothing on disk
    at = open_page("Explain", folder, samples, tmp_path, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    at.selectbox(key="sample").set_value("Amanita/huge.jpg").run()
    peak_rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert not at.exception, [e.value for e in at.exception]
    assert [box.value for box in at.error] == ["Cannot read Amanita/huge.jpg: huge.jpg is 3000.0 MB; the limit is "
                                               "52.4 MB"]
    assert peak_rise < 200  # MB; reading it whole raised the peak by 3,000 MB
    at.selectbox(key="sample").set_value("Amanita/img_0.png").run()
    assert not at.exception and at.get("image")  # the page goes on with a readable photo
    assert not [box.value for box in at.error if "Cannot read" in box.value]


def test_compare_lists_a_3_gb_sample_as_a_problem_without_reading_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",))
    samples = write_image_folder(tmp_path / "samples", ["Amanita", "Boletus"], per_class=1)
    with open(samples / "Amanita" / "huge.jpg", "wb") as handle:
        handle.truncate(3 * 10**9)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    at = open_page("Compare", folder, samples, tmp_path, monkeypatch)
    peak_rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert not at.exception, [e.value for e in at.exception]
    said = [box.value for box in (*at.warning, *at.error)]
    assert any("Amanita/huge.jpg: huge.jpg is 3000.0 MB; the limit is 52.4 MB" in text for text in said), said
    assert peak_rise < 400 and at.get("image")  # the two readable photos are still compared
