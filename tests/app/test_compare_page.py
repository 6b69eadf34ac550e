"""The Compare page in Streamlit's AppTest: controls, the grid's contents and its numbers.

Checkpoints are random-weight backbones whose head bias is pushed towards one class, so
every prediction (and so every mark on the page) is known in advance:
MobileNetV3-Large always says Boletus (edible), EfficientNet-B0 always says Amanita.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from compare_setup import NAMES, TWO, write_biased_checkpoint
from factories import CLASSES, write_image_folder, write_manifest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

PAGE = str(PROJECT_ROOT / "pages" / "2_Compare.py")
TOXICITY = dict(CLASSES)


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=TWO)
    for backbone in TWO:
        write_biased_checkpoint(ckpt / f"{backbone}.pt", backbone)
    samples = write_image_folder(tmp_path / "samples", NAMES, per_class=2)
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("MUSHCAM_SAMPLES", str(samples))
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cams"))  # no maps from earlier runs
    st.cache_data.clear()
    st.cache_resource.clear()
    yield ckpt
    st.cache_data.clear()
    st.cache_resource.clear()


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def row_names(at: AppTest) -> list[str]:
    return [m.group(1) for m in (re.match(r"`([^`]+)`", md.value) for md in at.markdown) if m]


def cell_texts(at: AppTest) -> list[str]:
    return [md.value for md in at.markdown if "half-mass area" in md.value]


def image_urls(at: AppTest) -> list[str]:
    return [img.proto.imgs[0].url for img in at.get("image")]


def test_grid_shows_every_image_with_known_marks_and_numbers(app_env: Path) -> None:
    at = run_page()
    names = row_names(at)
    assert len(names) == 8  # 12 asked, 8 in the folder: all of them, poisonous classes first
    assert [n.split("/")[0] for n in names] == ["Amanita"] * 2 + ["Gyromitra"] * 2 + ["Boletus"] * 2 + ["Suillus"] * 2
    assert len(at.get("image")) == 8 * 3  # original + two backbones per row
    headers = [md.value for md in at.markdown[:3]]
    assert headers == ["**Image**", "**EfficientNet-B0**", "**MobileNetV3-Large**"]
    cells = cell_texts(at)
    assert len(cells) == 16
    for row, label in enumerate(n.split("/")[0] for n in names):
        eff, mob = cells[2 * row], cells[2 * row + 1]
        assert eff.startswith("**Amanita**") and mob.startswith("**Boletus**")
        assert ("✓ correct" in eff) == (label == "Amanita") and ("✗ wrong" in eff) == (label != "Amanita")
        dangerous = TOXICITY[label] == "poisonous"
        assert ("Poisonous called edible" in mob) == dangerous
        assert ("✓ correct" in mob) == (label == "Boletus")
        assert "Poisonous called edible" not in eff
    agreement = [c.value for c in at.caption if c.value.startswith("Agreement:")]
    assert len(agreement) == 8 and "EfficientNet-B0 vs MobileNetV3-Large: IoU" in agreement[0]

    by_backbone = at.dataframe[0].value.set_index("model")
    assert by_backbone.loc["EfficientNet-B0", "correct"] == 2 and by_backbone.loc["EfficientNet-B0", "wrong"] == 6
    assert by_backbone.loc["MobileNetV3-Large", "poisonous_called_edible"] == 4
    assert by_backbone.loc["EfficientNet-B0", "poisonous_called_edible"] == 0
    assert by_backbone.loc["MobileNetV3-Large", "accuracy"] == pytest.approx(2 / 8)
    pairs = at.dataframe[1].value
    assert list(pairs["pair"]) == ["EfficientNet-B0 vs MobileNetV3-Large"]
    per_image = at.dataframe[2].value
    assert len(per_image) == 8
    assert per_image["mobilenet_v3_large_confidence"].min() > 0.99
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download grid (PNG, with numbers)", "Download numbers (CSV)", "Download summary (CSV)"]


def test_controls_sample_view_and_normalisation(app_env: Path) -> None:
    at = run_page()
    at.number_input(key="compare_n").set_value(4).run()
    first = row_names(at)
    assert len(first) == 4 and sum(n.split("/")[0] in ("Amanita", "Gyromitra") for n in first) == 2
    at.number_input(key="compare_seed").set_value(3).run()
    assert len(row_names(at)) == 4
    at.number_input(key="compare_seed").set_value(0).run()
    assert row_names(at) == first  # the same seed gives the same sample

    overlay_urls = image_urls(at)
    numbers = at.dataframe[2].value
    at.toggle(key="compare_heatmap_only").set_value(True).run()
    assert at.slider(key="compare_alpha").disabled
    heat_urls = image_urls(at)
    originals = slice(0, None, 3)
    assert heat_urls[originals] == overlay_urls[originals]  # the originals do not change
    changed = [a != b for i, (a, b) in enumerate(zip(overlay_urls, heat_urls, strict=True)) if i % 3]
    assert all(changed)

    at.radio(key="compare_norm").set_value("shared").run()
    assert not at.exception
    shared_urls = image_urls(at)
    assert shared_urls[originals] == heat_urls[originals]
    assert any(a != b for a, b in zip(heat_urls, shared_urls, strict=True))  # the weaker map of each row dims
    # The numbers are scale-free: the normalisation choice leaves them unchanged.
    assert at.dataframe[2].value.equals(numbers)


def test_choosing_backbones_changes_columns_and_pairs(app_env: Path) -> None:
    at = run_page()
    at.number_input(key="compare_n").set_value(2).run()
    at.multiselect(key="compare_backbones").set_value(["mobilenet_v3_large"]).run()
    assert not at.exception
    assert len(at.get("image")) == 2 * 2
    assert not [c for c in at.caption if c.value.startswith("Agreement:")]
    assert len(at.dataframe) == 2  # per backbone and per image; no pair table for one backbone
    at.multiselect(key="compare_backbones").set_value([]).run()
    assert [i.value for i in at.info] == ["Choose at least one model."]


def test_many_columns_get_one_tab_per_method_and_agreement_matrices(app_env: Path) -> None:
    """2 models x 3 methods (6 columns > 4): one tab per method with the models inside, each
    photo's agreement as a heatmap matrix, the whole grid's mean matrix under Numbers."""
    at = run_page()
    at.number_input(key="compare_n").set_value(2).run()
    at.multiselect(key="compare_methods").set_value(["gradcam", "hirescam", "xgradcam"]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.label for t in at.tabs] == ["Grad-CAM", "HiResCAM", "XGrad-CAM"]
    for shown in ("HiResCAM", "XGrad-CAM", "Grad-CAM"):  # lazy tabs: only the open one is drawn
        at.session_state["compare_method_tab"] = shown
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        assert [len(tab.get("image")) for tab in at.tabs] == [6 if t.label == shown else 0 for t in at.tabs]
        tab = next(t for t in at.tabs if t.label == shown)
        headers = [md.value for md in tab.markdown[:3]]
        assert headers == ["**Image**", "**EfficientNet-B0**", "**MobileNetV3-Large**"]  # the method is the tab
        assert len(tab.get("image")) == 2 * 3  # per photo: the original + 2 models
        assert len([c for c in tab.caption if c.value.startswith("Agreement:")]) == 2  # one pair: one line
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert captions[-1] == "Mean IoU of the top regions over 2 photos"  # the whole grid's matrix, under Numbers
    assert captions.count("IoU of the top regions of every two maps") == 0  # one pair a photo: a line, no matrix
    at.radio(key="compare_agreement_measure").set_value("spearman").run()
    assert not at.exception
    assert at.get("image")[-1].proto.imgs[0].caption == "Mean Spearman rank correlation over 2 photos"


def test_folder_problems_and_upload_mode_are_explained(app_env: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUSHCAM_SAMPLES")
    at = run_page()  # no sample folder configured: the page starts in upload mode
    assert at.radio(key="compare_source").value == "upload"
    assert [i.value for i in at.info] == ["Upload one or more photos, or sample them from a test folder."]
    at.radio(key="compare_source").set_value("folder").run()
    assert any("Enter a test folder" in w.value for w in at.warning)
    at.text_input(key="compare_folder").input(str(tmp_path / "missing")).run()
    assert not at.exception
    assert any("not found" in w.value for w in at.warning)
    assert not at.get("image")
    (tmp_path / "odd" / "Morel").mkdir(parents=True)
    write_image_folder(tmp_path / "odd", ["Morel"], per_class=1)
    at.text_input(key="compare_folder").input(str(tmp_path / "odd")).run()
    assert any("not in the manifest" in w.value and "Morel" in w.value for w in at.warning)
    assert len(cell_texts(at)) == 2 and all("true class unknown" in t for t in cell_texts(at))


def test_without_a_manifest_the_page_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(tmp_path / "nothing"))
    monkeypatch.delenv("MUSHCAM_SAMPLES", raising=False)
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cams"))
    at = run_page()
    assert at.error and "manifest not found" in at.error[0].value
    assert not at.get("image")
