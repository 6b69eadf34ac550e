"""Text that people type (reviewer names, cause names, notes): cleaned once on entry, escaped on the way out.

Entry (the store's writers call these, so the page and any script get the same rules):

- :func:`clean_name` for names (a reviewer, a cause): NFC, whitespace collapsed to single
  spaces, and **refused** when it still holds an invisible or control character (Unicode
  categories Cc, Cf, Cs, Co: bidi overrides such as U+202E, zero-width characters, C0/C1
  controls). A name is an identity, so a look-alike spelled with hidden characters is not
  silently turned into another name.
- :func:`clean_note` for notes: NFC, every line break (CR LF, CR, U+2028 ...) made ``\\n``,
  tabs kept, invisible and control characters **stripped** (a note pasted from a web page
  often carries some; ZWJ/ZWNJ stay, scripts and emoji need them), at most :data:`MAX_NOTE`
  characters (refused above, with the limit in the message).

Exit: :func:`shown_note` bounds an old, longer note for display ("… (truncated, N characters)");
:func:`markdown_text` escapes any text for Markdown (the report and the pages), so a note
shows as the characters typed and never as HTML, an image, a link or a heading;
:func:`fold` is the form in which two labels are "the same" (NFKC, casefold, spaces collapsed).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from mushcam.exceptions import MushcamError

MAX_NOTE = 5000  # characters in a review note
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co"})
_KEEP_IN_NOTES = frozenset({"\n", "\t", "\u200c", "\u200d"})  # line break, tab, ZWNJ, ZWJ
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Characters with a meaning anywhere in a line of Markdown (CommonMark, GFM tables and strikethrough,
# Streamlit's $math$), and those that mean something only at the start of a line (headings, lists,
# setext underlines, ordered lists).
_MD_SPECIALS = re.compile(r"([\\`*\[\]|~$])")
_MD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # '_' that could open or close emphasis (not img_1)
_MD_LINE_START = re.compile(r"^([#+=-]|\d{1,9}(?=[.)](\s|$)))")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def describe_char(char: str) -> str:
    """``'U+202E RIGHT-TO-LEFT OVERRIDE'``: a character named so the user can find it."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'CONTROL CHARACTER')}"


def clean_name(text: object, what: str, max_len: int) -> str:
    """A name as stored: NFC, single spaces; '' when blank. Refuses hidden characters and over-long names.

    ``what`` names the field in the message ("a reviewer name", "a cause name").
    """
    name = " ".join(unicodedata.normalize("NFC", str(text)).split())
    for position, char in enumerate(name, 1):
        if unicodedata.category(char) in _INVISIBLE:
            raise MushcamError(f"{what} cannot hold invisible or control characters: {describe_char(char)} at "
                               f"character {position}; type the name again without it")
    if len(name) > max_len:
        raise MushcamError(f"{what} has at most {max_len} characters; this one has {len(name)}")
    return name


def visible_text(text: object) -> str:
    """``text`` in NFC with line breaks as ``\\n`` and invisible or control characters (but tab, ZWJ, ZWNJ) removed."""
    note = _LINE_BREAKS.sub("\n", unicodedata.normalize("NFC", str(text)))
    return "".join(c for c in note if c in _KEEP_IN_NOTES or unicodedata.category(c) not in _INVISIBLE)


def clean_note(text: object, max_len: int = MAX_NOTE) -> str:
    """A note as stored: :func:`visible_text`, trimmed; refused over ``max_len`` characters."""
    note = visible_text(text).strip()
    if len(note) > max_len:
        raise MushcamError(f"a note has at most {max_len:,} characters; this one has {len(note):,}: shorten it")
    return note


def truncation_suffix(length: int) -> str:
    return f"… (truncated, {length:,} characters)"


def shown_note(text: str, length: int | None = None, max_len: int = MAX_NOTE) -> str:
    """``text`` if it fits in ``max_len``, else its start plus "… (truncated, N characters)" (``max_len`` in all).

    ``length``: the note's full length when ``text`` is already a prefix of it (read with SQL ``substr``).
    """
    full = len(text) if length is None else length
    if full <= max_len:
        return text
    suffix = truncation_suffix(full)
    return text[: max_len - len(suffix)] + suffix


def fold(text: str) -> str:
    """The form in which two labels are the same: NFKC, casefolded, whitespace collapsed.

    ``'Shortcut'``, ``'shortcut '`` and ``'ｓｈｏｒｔｃｕｔ'`` (full-width) all fold to ``'shortcut'``.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _escape_line(line: str) -> str:
    line = "".join(_MD_ENTITIES.get(c, c) for c in line)
    line = _MD_UNDERSCORE.sub(r"\\_", _MD_SPECIALS.sub(r"\\\1", line))
    match = _MD_LINE_START.match(line)
    if match is None:
        return line
    if match.group(1)[0].isdigit():  # '1.' / '1)' would start an ordered list
        end = match.end()
        return line[:end] + "\\" + line[end:]
    return "\\" + line


def markdown_text(text: str) -> str:
    """``text`` escaped for Markdown: shown as typed, never as markup.

    Every Markdown special is backslash-escaped (so no link, image, emphasis, heading, list or
    table cell starts), ``& < >`` become entities (so no raw HTML and no entity trick), and
    each line break becomes a hard break with the next line trimmed (so no blank line, indented
    code block or block quote starts inside it).
    """
    lines = [line.strip() for line in _LINE_BREAKS.sub("\n", str(text)).split("\n")]
    return "  \n".join(_escape_line(line) for line in lines if line)


def file_safe_name(name: str) -> str:
    """A model name as a file or folder name: unchanged when it is already safe
    (``resnet50``, ``resnet50-x4``, ``v1.2``), else its safe characters plus a short hash of
    the name, so that ``a/b`` and ``a b`` never share a folder and ``..`` never escapes one."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:60]
    if slug == name and name:
        return name
    return f"{slug or 'model'}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def terminal_safe(text: str) -> str:
    """``text`` with every control or format character (ESC, CR, BEL, a bidi override) written as
    its escape (``\\x1b``, ``\\r``, ``\\u202e``): what may be printed on a terminal, which such
    characters would recolour, move the cursor of or reorder."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


_ASCII_SUBSTITUTES = str.maketrans({"×": "x", "→": "->", "–": "-", "—": "-", "…": "...", "·": "|"})


def font_ascii(text: str) -> str:
    """Text for Pillow's bundled font, which lacks most non-ASCII glyphs: user labels such as
    'ResNet-50 (×4)' or 'Rüde' are drawn as 'ResNet-50 (x4)' and 'Rude', and '?' stands for
    anything else rather than an empty box."""
    text = unicodedata.normalize("NFKD", text.translate(_ASCII_SUBSTITUTES))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.encode("ascii", "replace").decode("ascii")
