"""The toxicity of a class, as the manifest writes it.

A :class:`~enum.StrEnum`: every member *is* its string (``Toxicity.POISONOUS == "poisonous"``,
``str()``, f-strings and ``json.dumps`` give ``poisonous``), so manifests, stores and CSV
files stay byte-identical while code names the values once. Genus-level toxicity is a
simplification; the dangerous error is defined on ``poisonous`` and ``edible`` alone.
"""

from __future__ import annotations

from enum import StrEnum


class Toxicity(StrEnum):
    """What the manifest says about eating a class (the order is the one error messages list)."""

    POISONOUS = "poisonous"
    EDIBLE = "edible"
    INEDIBLE = "inedible"
    MIXED = "mixed"
    UNKNOWN = "unknown"


TOXICITIES: tuple[str, ...] = tuple(t.value for t in Toxicity)

__all__ = ["TOXICITIES", "Toxicity"]
