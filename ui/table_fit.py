"""Column widths that make an ``st.dataframe`` fit its container with every header whole.

Streamlit's grid draws its headers on a canvas and cuts a header with "…" when its column is
narrower than the text; a grid wider than its container scrolls sideways and hides its last
columns (Home's metrics, the Errors list and the Trust table did both at 1440 px). :func:`fitted`
gives each column a width in pixels:

    width = max(header_px + HEADER_EXTRA, min(widest_value_px, cap) + CELL_PADDING)

where ``text_px`` over-estimates the width of a text in the grid's font (400 14px Source Sans:
``tests/browser/test_browser_tables.py`` measures every header in Chromium against it). A value
wider than its column's cap is cut; its full text is in the column's tooltip (``help``) or a
double-click away (the grid's cell viewer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

CELL_PADDING = 18  # px: the grid's 8 px either side, and a border
HEADER_EXTRA = 26  # px: the grid's 8 px either side, a border, and room for the sort arrow
NARROW = set("iljtfrI.,:;|!'\"()[] ")
WIDE = set("mwMWOQGD@%—→←")


def text_px(text: str) -> int:
    """An upper bound of ``text``'s width in px at 14 px Source Sans (narrow, wide and other characters)."""
    width = 0.0
    for char in text:
        if char in NARROW:
            width += 4.5
        elif char in WIDE or not char.isascii():
            width += 12.5
        elif char.isupper() or char.isdigit():
            width += 8.5
        else:
            width += 7.5
    return int(width + 0.999)


def column_width(label: str, values: Sequence[object] = (), cap: int = 300) -> int:
    """The column's width in px: its header whole, its values up to ``cap`` px."""
    widest = max((text_px(str(v)) for v in values), default=0)
    return max(text_px(label) + HEADER_EXTRA, min(widest, cap) + CELL_PADDING)


def fitted(columns: Mapping[str, Sequence[object]], config: Mapping[str, Any] | None = None,
           helps: Mapping[str, str] | None = None, caps: Mapping[str, int] | None = None,
           shown: Sequence[str] | None = None) -> dict[str, Any]:
    """``column_config`` for ``st.dataframe(columns)``: every shown column a pixel width (header whole).

    ``config`` keeps a column's own type (a progress bar, a label); ``helps`` are the header
    tooltips; ``caps`` the widest a column's values may make it (default 300 px); ``shown`` the
    columns displayed (default: all).
    """
    out: dict[str, Any] = {}
    for key in shown or list(columns):
        given = dict(config.get(key) or {}) if config else {}
        label = given.get("label") or key
        help_text = (helps or {}).get(key)
        column = given or st.column_config.Column(label)
        column["width"] = column_width(label, columns.get(key, ()), (caps or {}).get(key, 300))
        if help_text:
            column["help"] = help_text
        out[key] = column
    return out


def total_width(config: Mapping[str, Any], row_marker: bool = False) -> int:
    """The grid's width in px with ``config``'s widths (``row_marker``: the selection checkbox column)."""
    return sum(int(c["width"]) for c in config.values()) + (36 if row_marker else 0) + 2
