"""Column widths for the pages' tables (ui.table_fit): headers whole, types kept, the Errors list and Trust tabs fit."""

from __future__ import annotations

import streamlit as st

from ui import errors_support, trust_support
from ui.table_fit import CELL_PADDING, HEADER_EXTRA, column_width, fitted, text_px, total_width

ROW = {"#": [1], "image": ["Gyromitra/gyromitra_esculenta-lannyf-0569a3d5aa.jpg"], "true class": ["Volvopluteus"],
       "predicted": ["Coprinellus"], "confidence": [0.9], "p(true class)": [0.1], "kind": ["poisonous → edible"],
       "review": [""]}


def test_a_column_is_as_wide_as_its_header_or_its_values_up_to_the_cap() -> None:
    assert text_px("Edible → poisonous") >= text_px("Edible - poisonous")  # the arrow counts as wide
    assert column_width("Poisonous → edible", ["0 / 4 (0.0%)"]) == text_px("Poisonous → edible") + HEADER_EXTRA
    assert column_width("x", ["a" * 200], cap=150) == 150 + CELL_PADDING


def test_fitted_keeps_a_columns_type_and_adds_widths_and_tooltips() -> None:
    config = {"confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0)}
    out = fitted({"model": ["MobileNetV3-Large"], "confidence": [0.5]}, config=config, helps={"model": "the net"})
    assert out["confidence"]["type_config"]["type"] == "progress"
    assert out["model"]["help"] == "the net" and out["model"]["width"] == text_px("MobileNetV3-Large") + CELL_PADDING
    assert all(isinstance(c["width"], int) for c in out.values())


def test_the_errors_list_fits_its_frame_with_or_without_reviews() -> None:
    plain = errors_support.list_columns(ROW)
    assert list(plain) == ["#", "image", "true class", "predicted", "confidence"]  # review shown once filled
    assert plain["true class"]["label"] == "true" and total_width(plain, row_marker=True) <= 575
    reviewed = errors_support.list_columns({**ROW, "review": ["Ana: wrong region"]})
    assert "review" in reviewed and total_width(reviewed, row_marker=True) == errors_support.LIST_FIT_PX


def test_the_trust_tabs_hold_every_column_of_the_table() -> None:
    interval = ["0.250 [0.250, 0.250]"]
    columns: dict[str, list[object]] = {"model": ["MobileNetV3-Large"], "method": ["gradcampp"], "baseline": ["blur"],
                                        "images": [235], "Average Drop % ↓": ["12.5 [10.1, 14.9]"]}
    for key in ("deletion AUC ↓", "… gain over random ↑", "insertion AUC ↑", "… gain over random ↑ ", "Increase % ↑",
                "ROAD ↑"):
        columns[key] = interval
    for key in ("… random map", "… inverted map", "… random map ", "… inverted map "):
        columns[key] = [0.25]
    tabs = trust_support.table_tabs(columns)
    assert [title for title, _, _ in tabs] == list(trust_support.TABLE_TABS)
    assert set().union(*(part for _, part, _ in tabs)) == set(columns)
    deletion = tabs[0][2]
    assert deletion["… random map"]["label"] == "random map" and "floor" in deletion["… random map"]["help"]
    assert all(total_width(config) <= 975 for _, _, config in tabs)  # the page's 980 px at 1440
