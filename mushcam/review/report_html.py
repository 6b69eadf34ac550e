"""The report as one self-contained HTML file: every text HTML-escaped, every figure embedded once.

Figures are embedded as WebP data URIs (:data:`HTML_WEBP_QUALITY`; lossy WebP keeps the maps'
smooth colours in about two thirds of JPEG's bytes), or as JPEG (:data:`HTML_JPEG_QUALITY`) where
this Pillow was built without WebP. The lossless PNGs stay in ``figures/`` beside the Markdown.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

from PIL import Image, features

from mushcam.review.report_blocks import Block, spans

HTML_JPEG_QUALITY = 85
HTML_WEBP_QUALITY = 80
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}h3{margin-top:2em}figure{margin:0.5em 0}
figcaption{color:#666;font-size:0.9em}"""


def _encode(png: bytes, fmt: str, **options: object) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=fmt, **options)
    return buffer.getvalue()


def html_jpeg(png: bytes, quality: int = HTML_JPEG_QUALITY) -> bytes:
    """A figure re-encoded as JPEG (about a tenth of the PNG; the PNG file stays lossless)."""
    return _encode(png, "JPEG", quality=quality, optimize=True)


def html_webp(png: bytes, quality: int = HTML_WEBP_QUALITY) -> bytes:
    """A figure re-encoded as lossy WebP (``method=4``, Pillow's default; ``6`` saves 4 % and takes twice as long)."""
    return _encode(png, "WEBP", quality=quality, method=4)


def webp_available() -> bool:
    """Whether this Pillow can write WebP."""
    return bool(features.check("webp"))


def html_figure(png: bytes, webp: bool | None = None) -> tuple[str, bytes]:
    """(MIME type, bytes) of a figure for the HTML: WebP where available, else JPEG."""
    if webp_available() if webp is None else webp:
        return "image/webp", html_webp(png)
    return "image/jpeg", html_jpeg(png)


def html_inline(text: str) -> str:
    """A block's text in HTML: escaped, bold parts in ``<strong>``."""
    parts = (html.escape(p).replace("\n", "<br>") for p, _ in spans(text))
    return "".join(f"<strong>{p}</strong>" if strong else p for p, (_, strong) in zip(parts, spans(text), strict=True))


def _table(block: Block) -> str:
    head = "".join(f"<th>{html_inline(h)}</th>" for h in block.header)
    body = "".join("<tr>" + "".join(f"<td>{html_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(block: Block, figures: dict[str, bytes], webp: bool | None) -> str:
    mime, data = html_figure(figures[block.figure], webp)
    text = html_inline(block.text)
    return (f"<figure><img alt='{html.escape(block.text.replace(chr(2), ''))}' "
            f"src='data:{mime};base64,{base64.b64encode(data).decode('ascii')}'><figcaption>{text}</figcaption></figure>")


def render_block(block: Block, figures: dict[str, bytes], webp: bool | None = None) -> str:
    """One block as HTML ('' for an unknown kind)."""
    if block.kind in ("h1", "h2", "h3"):
        return f"<{block.kind}>{html_inline(block.text)}</{block.kind}>"
    if block.kind == "p":
        return f"<p>{html_inline(block.text)}</p>"
    if block.kind == "notes":
        return "<ul>" + "".join(f"<li>{html_inline(row[0])}</li>" for row in block.rows) + "</ul>"
    if block.kind == "table":
        return _table(block)
    if block.kind == "figure":
        return _figure(block, figures, webp)
    if block.kind == "raw":
        return block.html
    return ""


def render_html(blocks: Sequence[Block], figures: dict[str, bytes], webp: bool | None = None) -> str:
    """One HTML file with every figure embedded once (data: URLs): it opens anywhere, offline."""
    title = next((b.text for b in blocks if b.kind == "h1"), "Error analysis").replace("\x02", "")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    out += [render_block(b, figures, webp) for b in blocks]
    out.append("</body></html>")
    return "\n".join(out)
