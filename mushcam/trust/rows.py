"""Checks on every row the trust tables give back, before anything computes with it.

A results store is a file anyone can hand over, edit or damage, and SQLite stores any
value in any column (text in a REAL column stays text). The one reader
(:func:`mushcam.trust.store.load_trust`, and the curve readers beside it) passes each value
through these checks, so a damaged row becomes one :class:`~mushcam.store.StoreError` that
names the run, the row and what to do ("re-run faithfulness for model X"), never a
``ValueError`` from ``float()``, ``json.loads`` or ``np.frombuffer`` deep in a page.

Blob sizes (float32, 4 bytes a value): a faithfulness image's ``curves`` holds
``4 * (steps + 1) + 2 * len(road_percentages)`` values; a sanity image's ``spearman`` and
``ssim`` hold one value per randomised block.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mushcam.store import StoreError

FLOAT_BYTES = 4


@dataclass(frozen=True)
class RowPlace:
    """Where a value lies, for the message: which table's run, which model, which image."""

    kind: str  # "faithfulness" or "sanity"
    run_id: object
    model: object
    image: object = None

    def error(self, problem: str) -> StoreError:
        """A StoreError naming the run (and the image) with the way out."""
        where = f"{self.kind} run {self.run_id} (model {self.model!s})"
        if self.image is not None:
            where += f", image {self.image!s}"
        return StoreError(
            f"the results store's trust tables are damaged: {where}: {problem}; "
            f"re-run {self.kind} for model {self.model!s} (it replaces this run)"
        )


def text(place: RowPlace, column: str, value: object) -> str:
    """A TEXT column's value; anything else (a blob, NULL, a number) is damage."""
    if not isinstance(value, str):
        raise place.error(f"the {column} column holds {_kind(value)}, not text")
    return value


def whole(place: RowPlace, column: str, value: object) -> int:
    """An INTEGER column's value (SQLite keeps text typed into it as text)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise place.error(f"the {column} column holds {_kind(value)}, not a whole number")
    return value


def number(place: RowPlace, column: str, value: object) -> float:
    """A REAL column's value as a float; NULL is NaN (an undefined score); text is damage."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise place.error(f"the {column} column holds {_kind(value)}, not a number")
    return float(value)


def json_value(place: RowPlace, column: str, value: object) -> Any:  # noqa: ANN401 - whatever the JSON holds
    """The parsed JSON text of a column; text that is not JSON is damage."""
    try:
        return json.loads(text(place, column, value))
    except (ValueError, RecursionError):
        raise place.error(f"the {column} column is not valid JSON") from None


def faithfulness_settings(place: RowPlace, value: object) -> dict[str, Any]:
    """``settings_json``: an object with a whole ``steps`` >= 1 and a list of ``road_percentages``."""
    settings = json_value(place, "settings_json", value)
    if not isinstance(settings, dict):
        raise place.error("the settings_json column is not a JSON object")
    steps = settings.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 100_000:
        raise place.error(f"settings_json has no whole number of steps (got {steps!r})")
    road = settings.get("road_percentages", [])
    if not isinstance(road, list) or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in road):
        raise place.error("settings_json's road_percentages is not a list of numbers")
    return settings


def curve_values(settings: dict[str, Any]) -> int:
    """How many float32 values one image's ``curves`` blob holds under these settings."""
    return 4 * (int(settings["steps"]) + 1) + 2 * len(settings.get("road_percentages", []))


def blocks(place: RowPlace, value: object) -> tuple[str, ...]:
    """``blocks_json``: a non-empty JSON list of block names."""
    names = json_value(place, "blocks_json", value)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise place.error("the blocks_json column is not a non-empty JSON list of block names")
    return tuple(names)


def blob_size(place: RowPlace, column: str, kind: object, size: object, values: int) -> None:
    """A float32 blob of exactly ``values`` values, judged from SQL's ``typeof`` and ``length`` (no read)."""
    if kind != "blob":
        raise place.error(f"the {column} column holds {kind}, not a blob of numbers")
    if not isinstance(size, int) or size != values * FLOAT_BYTES:
        got = f"{size} bytes" if isinstance(size, int) else "no length"
        raise place.error(f"the {column} blob holds {got}; expected {values * FLOAT_BYTES} ({values} float32 values)")


def floats(place: RowPlace, column: str, value: object, values: int) -> np.ndarray:
    """A float32 blob of exactly ``values`` values, as float64."""
    blob_size(place, column, "blob" if isinstance(value, bytes) else _kind(value),
              len(value) if isinstance(value, bytes) else None, values)
    assert isinstance(value, bytes)
    return np.frombuffer(value, dtype="<f4").astype(np.float64)


def _kind(value: object) -> str:
    if value is None:
        return "nothing (NULL)"
    if isinstance(value, bytes):
        return f"a blob of {len(value)} bytes"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"the {type(value).__name__} {value!r}"
