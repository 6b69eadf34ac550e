"""The report as Markdown: every text escaped (:func:`mushcam.text.markdown_text`), so a note or a
name shows as typed and never becomes HTML, an image, a link, a heading or a table cell."""

from __future__ import annotations

from collections.abc import Sequence

from mushcam.review.report_blocks import Block, spans
from mushcam.text import markdown_text

_HEADINGS = {"h1": "#", "h2": "##", "h3": "###"}


def _part(part: str, strong: bool) -> str:
    core = part.strip()
    if not core:
        return " " if part else ""
    escaped = f"**{markdown_text(core)}**" if strong else markdown_text(core)
    return (" " if part[0].isspace() else "") + escaped + (" " if part[-1].isspace() else "")


def md_inline(text: str) -> str:
    """A block's text in Markdown: each part escaped (spaces between parts kept), bold parts in ``**``."""
    return "".join(_part(part, strong) for part, strong in spans(text)).strip()


def md_cell(text: str) -> str:
    """One table cell: escaped (``|`` included) and on one line."""
    return md_inline(text).replace("  \n", " ")


def _table(block: Block) -> str:
    lines = ["| " + " | ".join(md_cell(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


def render_block(block: Block, figure_dir: str = "figures") -> str:
    """One block as Markdown ('' for an unknown kind)."""
    if block.kind in _HEADINGS:
        return f"{_HEADINGS[block.kind]} {md_cell(block.text)}"
    if block.kind == "p":
        return md_inline(block.text)
    if block.kind == "notes":
        return "\n".join(f"- {md_inline(row[0])}" for row in block.rows)
    if block.kind == "table":
        return _table(block)
    if block.kind == "figure":
        return f"![{md_cell(block.text)}]({figure_dir}/{block.figure}.png)"
    if block.kind == "raw":
        return block.text.strip("\n")
    return ""


def render_markdown(blocks: Sequence[Block], figure_dir: str = "figures") -> str:
    """The whole report as Markdown; figures link ``figure_dir/<name>.png``."""
    return "\n\n".join(render_block(b, figure_dir) for b in blocks) + "\n"
