"""How far two reviewers agree on the causes of the same errors: Cohen's kappa per cause.

For one cause and two reviewers who both reviewed the same ``n`` errors, each error is a
yes/no per reviewer (did they tag this cause?). With ``p_o`` the share of errors where
they agree, and ``a``, ``b`` the shares each said yes::

    p_e   = a * b + (1 - a) * (1 - b)          (agreement expected by chance)
    kappa = (p_o - p_e) / (1 - p_e)

kappa is 1 for perfect agreement, 0 for chance level, negative below chance, and
undefined (NaN) when ``p_e = 1``: both reviewers gave the same answer to every error, so
chance explains it all (reported as "n/a").

Its 95 % interval is a seeded percentile bootstrap over the shared errors: ``resamples``
times, draw ``n`` errors with replacement, compute kappa; the interval is the 2.5th and
97.5th percentiles of the defined values. Under :data:`FEW_SHARED` shared errors the
interval is wide and the report says so.

A **consensus rule** says when an error *has* a cause, from the reviewers who reviewed it
(``k`` of them tagged the cause, ``m`` reviewed it): ``any``: k >= 1; ``majority``:
k > m / 2; ``all``: k = m.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mushcam.exceptions import MushcamError
from mushcam.review.store import Review, ReviewKey

CONSENSUS_RULES: tuple[str, ...] = ("any", "majority", "all")
DEFAULT_CONSENSUS = "any"
FEW_SHARED = 20  # fewer shared errors than this: kappa is shown with a warning
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def check_consensus(rule: str) -> str:
    """``rule`` if it is one of :data:`CONSENSUS_RULES`, else a MushcamError naming them."""
    if rule not in CONSENSUS_RULES:
        raise MushcamError(f"unknown consensus rule {rule!r}; choose from {', '.join(CONSENSUS_RULES)}")
    return rule


def has_cause(reviews: Sequence[Review], cause: str, rule: str = DEFAULT_CONSENSUS) -> bool:
    """Whether an error's ``reviews`` give it ``cause`` under the consensus ``rule`` (False when unreviewed)."""
    if not reviews:
        return False
    k = sum(1 for r in reviews if cause in r.causes)
    if rule == "any":
        return k >= 1
    if rule == "majority":
        return 2 * k > len(reviews)
    if rule == "all":
        return k == len(reviews)
    raise MushcamError(f"unknown consensus rule {rule!r}; choose from {', '.join(CONSENSUS_RULES)}")


def consensus_wording(rule: str) -> str:
    """The rule in words, for the report."""
    return {
        "any": "an error has a cause when at least one of the reviewers who reviewed it tagged it",
        "majority": "an error has a cause when more than half of the reviewers who reviewed it tagged it",
        "all": "an error has a cause when every reviewer who reviewed it tagged it",
    }[check_consensus(rule)]


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


def kappa_interval(a: Sequence[bool], b: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Seeded percentile-bootstrap 95 % interval of Cohen's kappa; (NaN, NaN) when no resample defines it."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if len(x) != len(y):
        raise ValueError(f"two ratings of the same items are needed; got {len(x)} and {len(y)}")
    if len(x) == 0:
        return (math.nan, math.nan)
    draw = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    xs, ys = x[draw], y[draw]
    observed = (xs == ys).mean(axis=1)
    pa, pb = xs.mean(axis=1), ys.mean(axis=1)
    expected = pa * pb + (1 - pa) * (1 - pb)
    defined = expected < 1.0
    if not defined.any():
        return (math.nan, math.nan)
    kappas = (observed[defined] - expected[defined]) / (1 - expected[defined])
    low, high = np.percentile(kappas, [2.5, 97.5])
    return (float(low), float(high))


@dataclass(frozen=True)
class PairAgreement:
    """Two reviewers on the errors they both reviewed: kappa and raw agreement per cause."""

    reviewer_a: str
    reviewer_b: str
    n_items: int
    kappa: dict[str, float]  # cause key -> kappa (NaN: undefined)
    agreement: dict[str, float]  # cause key -> share of items where both said the same
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)  # cause key -> bootstrap 95 %

    @property
    def few(self) -> bool:
        """Fewer than :data:`FEW_SHARED` shared errors: kappa and its interval are fragile."""
        return self.n_items < FEW_SHARED


def pairwise_kappa(reviews: Iterable[Review], cause_keys: Sequence[str],
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[PairAgreement]:
    """Every pair of reviewers with at least one error in common, with kappa (and its seeded
    bootstrap interval) and raw agreement per cause."""
    by_reviewer: dict[str, dict[ReviewKey, frozenset[str]]] = {}
    for review in reviews:
        by_reviewer.setdefault(review.reviewer, {})[review.key] = frozenset(review.causes)
    pairs = []
    for first, second in itertools.combinations(sorted(by_reviewer), 2):
        shared = sorted(set(by_reviewer[first]) & set(by_reviewer[second]),
                        key=lambda k: (k.model, k.checkpoint_sha256, k.image_sha256))
        if not shared:
            continue
        kappa, agreement, interval = {}, {}, {}
        for cause in cause_keys:
            a = [cause in by_reviewer[first][k] for k in shared]
            b = [cause in by_reviewer[second][k] for k in shared]
            kappa[cause] = cohen_kappa(a, b)
            agreement[cause] = sum(x == y for x, y in zip(a, b, strict=True)) / len(shared)
            interval[cause] = kappa_interval(a, b, resamples, seed)
        pairs.append(PairAgreement(first, second, len(shared), kappa, agreement, interval))
    return pairs
