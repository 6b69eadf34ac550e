"""How far two reviewers agree on the causes of the same errors: Cohen's kappa per cause.

For one cause and two reviewers who both reviewed the same ``n`` errors, each error is a
yes/no per reviewer (did they tag this cause?). With ``p_o`` the share of errors where
they agree, and ``a``, ``b`` the shares each said yes::

    p_e   = a * b + (1 - a) * (1 - b)          (agreement expected by chance)
    kappa = (p_o - p_e) / (1 - p_e)

kappa is 1 for perfect agreement, 0 for chance level, negative below chance, and
undefined (NaN) when ``p_e = 1``: both reviewers gave the same answer to every error, so
chance explains it all (reported as "n/a").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mushcam.review.store import Review, ReviewKey


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's kappa of two binary ratings of the same items (NaN when undefined)."""
    if len(a) != len(b):
        raise ValueError(f"two ratings of the same items are needed; got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    observed = sum(1 for x, y in zip(a, b, strict=True) if bool(x) == bool(y)) / n
    pa = sum(1 for x in a if x) / n
    pb = sum(1 for y in b if y) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class PairAgreement:
    """Two reviewers on the errors they both reviewed: kappa and raw agreement per cause."""

    reviewer_a: str
    reviewer_b: str
    n_items: int
    kappa: dict[str, float]  # cause key -> kappa (NaN: undefined)
    agreement: dict[str, float]  # cause key -> share of items where both said the same


def pairwise_kappa(reviews: Iterable[Review], cause_keys: Sequence[str]) -> list[PairAgreement]:
    """Every pair of reviewers with at least one error in common, with kappa per cause."""
    by_reviewer: dict[str, dict[ReviewKey, frozenset[str]]] = {}
    for review in reviews:
        by_reviewer.setdefault(review.reviewer, {})[review.key] = frozenset(review.causes)
    pairs = []
    for first, second in itertools.combinations(sorted(by_reviewer), 2):
        shared = sorted(set(by_reviewer[first]) & set(by_reviewer[second]),
                        key=lambda k: (k.model, k.checkpoint_sha256, k.image_sha256))
        if not shared:
            continue
        kappa, agreement = {}, {}
        for cause in cause_keys:
            a = [cause in by_reviewer[first][k] for k in shared]
            b = [cause in by_reviewer[second][k] for k in shared]
            kappa[cause] = cohen_kappa(a, b)
            agreement[cause] = sum(x == y for x, y in zip(a, b, strict=True)) / len(shared)
        pairs.append(PairAgreement(first, second, len(shared), kappa, agreement))
    return pairs
