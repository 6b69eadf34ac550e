"""The Errors page under Streamlit's AppTest, on a results store whose contents the test wrote.

The store holds two runs over a 12-image ImageFolder (4 classes x 3). EfficientNet-B0's rows
are chosen by hand so that every filter has a known answer:

    row  image          true       pred       conf  kind
    0    Amanita/0      Amanita    Amanita    0.90  correct
    1    Amanita/1      Amanita    Boletus    0.95  poisonous -> edible
    2    Amanita/2      Amanita    Suillus    0.60  poisonous -> edible
    3    Boletus/0      Boletus    Boletus    0.40  correct, low confidence
    4    Boletus/1      Boletus    Amanita    0.70  edible -> poisonous
    5    Boletus/2      Boletus    Boletus    0.85  correct
    6    Gyromitra/0    Gyromitra  Gyromitra  0.30  correct, low confidence
    7    Gyromitra/1    Gyromitra  Suillus    0.55  poisonous -> edible
    8    Gyromitra/2    Gyromitra  Amanita    0.45  wrong (poisonous -> poisonous), low confidence
    9    Suillus/0      Suillus    Suillus    0.99  correct
    10   Suillus/1      Suillus    Suillus    0.80  correct
    11   Suillus/2      Suillus    Gyromitra  0.65  edible -> poisonous
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from errors_setup import (
    CONF,
    NAMES,
    PATHS,
    PRED,
    listed,
    matching,
    open_page,
    pictures,
    rows_for,
    run_record,
    write_errors_setup,
)
from factories import write_manifest
from streamlit.testing.v1 import AppTest

from mushcam import store


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_errors_setup(tmp_path_factory.mktemp("errors_page"))


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def image_rows(at: AppTest) -> list[tuple[int, ...]]:
    """For each row of columns holding st.image elements directly: how many each column holds."""
    rows: list[tuple[int, ...]] = []

    def walk(node: object) -> None:
        children = list(getattr(node, "children", {}).values())
        columns = [c for c in children if getattr(c, "type", "") == "column"]
        held = [sum(getattr(e, "type", "") == "image" for e in c.children.values()) for c in columns]
        if sum(held):
            rows.append(tuple(held))
        for child in children:
            walk(child)

    walk(at._tree)
    return rows


def test_opens_on_errors_sorted_confident_first(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    run = at.selectbox(key="err_run")
    assert run.format_func(run.value) == "EfficientNet-B0"  # registry order
    assert matching(at) == 6
    assert listed(at) == ["Amanita/img_1.png", "Boletus/img_1.png", "Suillus/img_2.png", "Amanita/img_2.png",
                          "Gyromitra/img_1.png", "Gyromitra/img_2.png"]
    # dangerous counts of every model, on top
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["EfficientNet-B0: poisonous → edible"] == "3 / 6"
    assert metrics["MobileNetV3-Large: poisonous → edible"] == "0 / 6"
    assert at.subheader[0].value == "Poisonous predicted as edible"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("dangerous", 3), ("benign", 2), ("other", 1), ("low_confidence", 3), ("all", 12), ("errors", 6)],
)
def test_error_kind_filter(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path], kind: str, expected: int) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.selectbox(key="err_kind").select(kind).run()
    assert not at.exception
    assert matching(at) == expected and len(listed(at)) == expected


def test_confidence_true_and_predicted_class_filters(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.slider(key="err_conf").set_value((0.5, 1.0)).run()
    assert matching(at) == 5 and "Gyromitra/img_2.png" not in listed(at)  # 0.45 is out
    at.slider(key="err_conf").set_value((0.0, 1.0)).run()
    at.selectbox(key="err_true").select("Amanita").run()
    assert matching(at) == 2 and set(listed(at)) == {"Amanita/img_1.png", "Amanita/img_2.png"}
    at.selectbox(key="err_true").select("(any)").run()
    at.selectbox(key="err_pred").select("Suillus").run()
    assert matching(at) == 2 and set(listed(at)) == {"Amanita/img_2.png", "Gyromitra/img_1.png"}
    at.selectbox(key="err_kind").select("all").run()
    assert matching(at) == 4  # + the two Suillus images predicted right


def test_sorting_and_paging(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.selectbox(key="err_order").select("least_confident_first").run()
    assert listed(at)[0] == "Gyromitra/img_2.png" and listed(at)[-1] == "Amanita/img_1.png"
    at.selectbox(key="err_kind").select("all").run()
    at.selectbox(key="err_page_size").select(10).run()
    assert matching(at) == 12 and len(listed(at)) == 10
    assert listed(at)[0] == "Gyromitra/img_0.png"  # 0.30, the least confident of all
    at.number_input(key="err_page").set_value(2).run()
    assert listed(at) == ["Amanita/img_1.png", "Suillus/img_0.png"]  # 0.95, 0.99
    assert matching(at) == 12  # the count does not depend on the page
    at.selectbox(key="err_kind").select("dangerous").run()  # a filter change goes back to page 1
    assert at.number_input(key="err_page").value == 1 and len(listed(at)) == 3


def test_confusion_cell_filters_the_list(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    charts = at.get("plotly_chart")
    figure = json.loads(charts[0].proto.spec)
    assert figure["data"][0]["type"] == "heatmap"
    assert figure["data"][0]["z"][0] == [1, 1, 0, 1]  # Amanita row: 1 right, 1 -> Boletus, 1 -> Suillus
    cell = at.selectbox(key="err_cell")
    assert cell.options[1].startswith("Amanita → Boletus")  # errors first
    cell.select("Gyromitra → Suillus").run()
    assert matching(at) == 1 and listed(at) == ["Gyromitra/img_1.png"]
    assert at.selectbox(key="err_true").value == "Gyromitra" and at.selectbox(key="err_pred").value == "Suillus"
    at.selectbox(key="err_cell").select("Suillus → Suillus").run()  # a diagonal cell lists the right ones
    assert matching(at) == 2
    at.selectbox(key="err_cell").select(None).run()
    assert matching(at) == 12 and at.selectbox(key="err_true").value == "(any)"


def test_model_filter_and_other_backbone_one_click(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    # the first error, Amanita/img_1 (EfficientNet: Boletus 95%), explained: original + two maps + their contrast
    assert at.selectbox(key="err_pick").format_func(at.selectbox(key="err_pick").value).startswith("Amanita/img_1.png")
    captions = [caption for caption, _ in pictures(at)]
    assert len(captions) == 4 and captions[0].startswith("Original")
    assert captions[1].startswith("Why Boletus? (95.0%)") and captions[2].startswith("Where is Amanita? (1.7%)")
    assert captions[3].startswith("Boletus over Amanita?") and "y(Boletus) − y(Amanita)" in captions[3]
    seen = next(d.value for d in at.dataframe if "verdict" in d.value.columns)  # how each model saw it
    assert list(seen["model"]) == ["EfficientNet-B0", "MobileNetV3-Large"]
    assert list(seen["predicted"]) == ["Boletus", "Gyromitra"]
    assert list(seen["verdict"]) == ["poisonous → edible", "wrong"]
    at.radio(key="err_view").set_value(at.radio(key="err_view").options[1]).run()  # one click
    assert not at.exception
    captions = [caption for caption, _ in pictures(at)]
    assert captions[1].startswith("Why Gyromitra? (80.0%)")
    assert any("MobileNetV3-Large, layer `features.16`" in c.value for c in at.caption)
    # the model filter itself
    at.selectbox(key="err_run").select(at.selectbox(key="err_run").options[1]).run()
    assert matching(at) == 1 and listed(at) == ["Amanita/img_1.png"]
    assert at.radio(key="err_view").value == at.selectbox(key="err_run").value


def test_alpha_colormap_and_scale_controls(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    assert at.slider(key="err_alpha").value == pytest.approx(0.45)
    assert at.selectbox(key="err_colormap").value == "jet"
    before = pictures(at)[1][1]
    at.slider(key="err_alpha").set_value(0.9).run()
    at.selectbox(key="err_colormap").select("viridis").run()
    at.toggle(key="err_shared").set_value(False).run()
    assert not at.exception
    assert pictures(at)[1][1] != before
    assert any("each map scaled to its own maximum" in c.value for c in at.caption)


def test_low_confidence_right_prediction_shows_one_map(
    monkeypatch: pytest.MonkeyPatch, written: dict[str, Path]
) -> None:
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    at.selectbox(key="err_kind").select("low_confidence").run()
    assert matching(at) == 3
    at.selectbox(key="err_pick").select(PATHS.index("Gyromitra/img_0.png")).run()  # right, at 30%
    assert len(pictures(at)) == 2 and pictures(at)[1][0].startswith("Why Gyromitra? (30.0%)")
    assert any("This prediction is right" in c.value for c in at.caption)


def test_changed_checkpoint_warns_and_outside_path_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                               written: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.sqlite"
    data, ckpt = written["data"], written["ckpt"]
    (data.parent / "secret.png").write_bytes((data / "Amanita" / "img_0.png").read_bytes())
    paths = ["../secret.png", *PATHS[1:]]
    record = run_record("efficientnet_b0", ckpt, data, 12, sha="f" * 64)
    store.save_run(out, record, rows_for(data, PRED, CONF, paths))
    at = open_page(monkeypatch, ckpt, out, data)
    assert any("has changed since this run was evaluated" in w.value for w in at.warning)
    at.selectbox(key="err_kind").select("all").run()
    at.selectbox(key="err_order").select("path").run()
    assert listed(at)[0] == "../secret.png"
    at.selectbox(key="err_pick").select(0).run()
    assert any("refused path outside the data folder" in e.value for e in at.error)
    assert not pictures(at)


def test_wrong_checkpoint_folder_is_explained(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path],
                                              tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_manifest(other, backbones=("efficientnet_b0",), classes=[("A", "edible"), ("B", "poisonous")],
                   write_weights=True)
    at = open_page(monkeypatch, other, written["out"])
    assert any("classes differ from the classes of this run" in e.value for e in at.error)
    assert matching(at) == 6  # browsing still works without Grad-CAM


def test_missing_and_corrupt_stores(monkeypatch: pytest.MonkeyPatch, written: dict[str, Path], tmp_path: Path) -> None:
    at = open_page(monkeypatch, written["ckpt"], tmp_path / "absent.sqlite")
    assert any("no results store at" in i.value and "mushcam evaluate" in i.value for i in at.info)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 500)
    at.text_input(key="results_store_widget").input(str(bad)).run()
    assert not at.exception
    assert any("not a readable SQLite results store" in e.value for e in at.error)
    assert not at.dataframe


def test_images_are_read_only_from_the_folder_the_user_chose(monkeypatch: pytest.MonkeyPatch,
                                                             written: dict[str, Path], tmp_path: Path) -> None:
    """The store records a data folder, but the page reads nothing from it until the user chooses it."""
    at = open_page(monkeypatch, written["ckpt"], written["out"], data="")
    assert not pictures(at)
    assert any(f"evaluated on `{written['data'].resolve()}`" in i.value for i in at.info)
    at.button(key="err_use_recorded").click().run()  # the user's explicit choice
    assert at.text_input(key="err_data_widget").value == str(written["data"].resolve())
    assert len(pictures(at)) == 4  # original, predicted, true, and the contrast of the two
    # another folder without these images: a clear message, nothing read elsewhere
    empty = tmp_path / "empty"
    empty.mkdir()
    at.text_input(key="err_data_widget").input(str(empty)).run()
    assert not at.exception and not pictures(at)
    assert any("image not found" in e.value for e in at.error)
    # a dataset of symlinked files is accepted
    linked = tmp_path / "linked"
    for source in written["data"].rglob("*.png"):
        (linked / source.parent.name).mkdir(parents=True, exist_ok=True)
        (linked / source.parent.name / source.name).symlink_to(source)
    at.text_input(key="err_data_widget").input(str(linked)).run()
    assert len(pictures(at)) == 4 and not at.error


def test_cell_selector_shows_its_default_not_choose_an_option(monkeypatch: pytest.MonkeyPatch,
                                                              written: dict[str, Path]) -> None:
    """Issue 22: a selectbox whose value is None shows its placeholder; the placeholder is the default's name."""
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    cell = at.selectbox(key="err_cell")
    assert cell.value is None and cell.proto.placeholder == "(none: all pairs)"
    assert cell.format_func(None) == cell.proto.placeholder


def test_confusion_matrix_labels_are_slanted_and_the_height_follows_the_classes() -> None:
    """Issue 22: overlapping predicted-class labels: slanted, margins grown to fit, taller with more classes."""
    from ui.errors_support import confusion_layout

    four = confusion_layout(["Amanita", "Boletus", "Gyromitra", "Suillus"], [])
    assert four["xaxis"]["tickangle"] == -45
    assert four["xaxis"]["automargin"] and four["yaxis"]["automargin"]
    nine = confusion_layout([f"Genus{i}" for i in range(9)], [])
    assert nine["height"] - four["height"] >= 5 * 40
    long_names = confusion_layout(["Coprinopsis atramentaria", "B", "C", "D"], [])
    assert long_names["height"] > four["height"]  # room for the slanted long label


def test_maps_are_two_side_by_side_and_larger_gives_full_width(monkeypatch: pytest.MonkeyPatch,
                                                              written: dict[str, Path]) -> None:
    """Issue 22: the maps were three to a row (~190 px at 1440 px): now two to a row, or one with "Larger"."""
    at = open_page(monkeypatch, written["ckpt"], written["out"])
    before = [caption for caption, _ in pictures(at)]
    assert len(before) == 4
    # original | note, then predicted | true at half width, then their contrast
    assert image_rows(at) == [(1, 0), (1, 1), (1, 0)]
    at.toggle(key="err_large").set_value(True).run()
    assert not at.exception
    assert image_rows(at) == [(4, 0)]  # one per row in the explanation column (beside the review panel)
    assert [caption for caption, _ in pictures(at)] == before  # same panels, same order


def test_lookalike_strip_behind_a_toggle_with_the_sibling_train_folder(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """Issue 20: the look-alike strip under the maps, only when asked; the training folder defaults to ../train."""
    from factories import write_image_folder

    setup = write_errors_setup(tmp_path)
    at = open_page(monkeypatch, setup["ckpt"], setup["out"])
    assert at.toggle(key="err_lookalike").value is False
    assert not [s for s in at.subheader if s.value == "Look-alike training photos"]  # nothing built yet
    at.toggle(key="err_lookalike").set_value(True).run()
    assert not at.exception
    assert at.text_input(key="err_train").value == ""  # no train/ beside the test folder
    assert any("Enter the training folder" in i.value for i in at.info)
    train = write_image_folder(tmp_path / "train", NAMES, per_class=2, size=(64, 48))
    at = open_page(monkeypatch, setup["ckpt"], setup["out"])
    at.toggle(key="err_lookalike").set_value(True).run()
    at.default_timeout = 180
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="err_train").value == str(train)
    assert any(s.value == "Look-alike training photos" for s in at.subheader)
    assert any("It resembles these" in m.value for m in at.markdown)
    assert len(pictures(at)) > 3  # the three panels and the training photos
