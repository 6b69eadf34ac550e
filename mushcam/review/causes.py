"""Why a model got an image wrong: the starting list of causes (the thesis's, plus three), extendable.

A cause has a stable ``key`` (stored in reviews) and a ``label`` (shown). Users add causes
by label, in any script; the key is derived from it (:func:`cause_key`). Adding the same
label twice gives the same cause; a label that differs from an existing one only in case,
width or spacing ("Shortcut" / "shortcut " / "ｓｈｏｒｔｃｕｔ"), or that would get its key, is
refused with the existing cause's name (:func:`colliding`), never merged silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mushcam.exceptions import MushcamError
from mushcam.text import clean_name, fold

LABEL_DOUBTFUL = "label_doubtful"
MAX_LABEL = 80


@dataclass(frozen=True)
class Cause:
    key: str
    label: str
    builtin: bool = True


DEFAULT_CAUSES: tuple[Cause, ...] = (
    Cause("wrong_region", "wrong region / background"),
    Cause("partial_view", "partial view"),
    Cause("look_alike", "look-alike genus"),
    Cause("poor_quality", "poor photo quality"),
    Cause("unusual_angle", "unusual angle"),
    Cause(LABEL_DOUBTFUL, "label doubtful (possibly mislabelled)"),
    Cause("shortcut", "shortcut (watermark, text, ruler, hand)"),
    Cause("other", "other"),
)


# The codebook: what each built-in cause means, so that two reviewers tag the same thing.
DEFINITIONS: dict[str, str] = {
    "wrong_region": "The map's strongest region is background, substrate or another object, not the mushroom.",
    "partial_view": "The mushroom is cut off, hidden or too small in the frame for its genus to be seen.",
    "look_alike": "The photo shows traits that the predicted genus shares with the true one (a plausible mistake "
                  "a person could also make from this photo).",
    "poor_quality": "Blur, darkness, over-exposure, heavy compression or low resolution hide the traits.",
    "unusual_angle": "Seen from an angle (from below, from above only, a cross-section) rare in the training photos.",
    LABEL_DOUBTFUL: "The given genus is probably wrong: the photo seems to show another genus (suggest one).",
    "shortcut": "The map points at a watermark, text, a ruler, a hand or another cue unrelated to the mushroom.",
    "other": "None of the above; the note says what.",
}


def definition_of(cause: Cause) -> str:
    """The cause's codebook definition (a custom cause: what its reviewers named it)."""
    return DEFINITIONS.get(cause.key, f"Added by a reviewer: \"{cause.label}\" (no further definition).")


def _has_letter_or_digit(text: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def cause_key(label: str) -> str:
    """``'Mould / rot'`` -> ``'mould_rot'``; ``'Гниль'`` -> ``'гниль'``.

    Lower-case ASCII words joined by ``_`` when the label's letters are Latin (accents
    dropped: the keys of earlier stores stay the same); otherwise its NFKC, casefolded
    letters and digits joined by ``_`` (any script: Unicode categories L* and N*).
    """
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii").lower()
    key = re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")
    letters = sum(1 for c in unicodedata.normalize("NFKD", label) if unicodedata.category(c)[0] in "LN")
    if not key or sum(c.isalnum() for c in key) < letters:
        folded = unicodedata.normalize("NFKC", label).casefold()
        key = "_".join("".join(c if unicodedata.category(c)[0] in "LN" else " " for c in folded).split())
    if not key:
        raise MushcamError(f"a cause needs letters or digits; got {label!r}")
    return key[:40]


def new_cause(label: str) -> Cause:
    """A user-defined cause from its label (cleaned by :func:`mushcam.text.clean_name`, at most 80 characters)."""
    label = clean_name(label, "a cause name", MAX_LABEL)
    if not label:
        raise MushcamError("type a name for the new cause")
    if not _has_letter_or_digit(label):
        raise MushcamError(f"a cause needs letters or digits; got {label!r}")
    return Cause(cause_key(label), label, builtin=False)


def colliding(cause: Cause, existing: Sequence[Cause]) -> Cause | None:
    """The existing cause that ``cause`` would be confused with (same folded label or same key), if any.

    An existing cause with exactly the same label is no collision: adding it again is harmless.
    """
    for other in existing:
        if other.label == cause.label:
            return None
    for other in existing:
        if fold(other.label) == fold(cause.label) or other.key == cause.key:
            return other
    return None


def merged(custom: Iterable[Cause]) -> tuple[Cause, ...]:
    """The built-in causes, then the custom ones not already built in (in the order given)."""
    causes = list(DEFAULT_CAUSES)
    keys = {c.key for c in causes}
    for cause in custom:
        if cause.key not in keys:
            causes.append(cause)
            keys.add(cause.key)
    return tuple(causes)


def labels_of(causes: Iterable[Cause]) -> dict[str, str]:
    return {c.key: c.label for c in causes}
