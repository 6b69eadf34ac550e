"""The report's building blocks: :class:`Block` (one heading, paragraph, table, figure or list of
notes) and the one way each kind of number is written.

Text in a block is plain text: whatever a user typed (a note, a name, a path) goes in as it
is, and each renderer escapes it for its format (:mod:`report_markdown`, :mod:`report_html`).
The one piece of markup is :func:`bold`, a control character (:data:`BOLD`) around the bold
part: notes cannot hold it (:func:`mushcam.text.visible_text` strips control characters), so a
note's ``**`` stays two asterisks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BOLD = "\x02"  # opens and closes a bold span inside a block's text


@dataclass(frozen=True)
class Block:
    """One piece of the report: ``kind`` is h1/h2/h3/p/table/figure/notes, or ``raw``: a part
    another module rendered for both formats itself (``text`` its Markdown, ``html`` its HTML,
    each already escaped there), such as the patterns section."""

    kind: str
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    figure: str = ""  # figure name (file stem) for kind 'figure'
    html: str = ""  # kind 'raw' only: the part as HTML


def bold(text: str) -> str:
    """``text`` marked bold (each renderer writes it its own way: ``**..**``, ``<strong>``)."""
    return f"{BOLD}{text}{BOLD}"


def spans(text: str) -> list[tuple[str, bool]]:
    """``text`` cut at the bold marks: (part, is_bold) in order."""
    return [(part, i % 2 == 1) for i, part in enumerate(text.split(BOLD))]


def pct(value: float) -> str:
    """A share as a percentage with one decimal; 'n/a' for NaN (no population)."""
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def kappa_text(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def k_of_n(k: int, n: int) -> str:
    """The report's one way of writing a count: ``'3 of 6 (50.0%)'`` (``'0 of 0'`` with no population)."""
    return f"{k} of {n} ({pct(k / n)})" if n else f"{k} of 0"
