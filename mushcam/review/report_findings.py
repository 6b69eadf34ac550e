"""What the report states, before any of it is written: each run's errors with their review keys,
error kinds and summary numbers, and the causes in use (counted under the consensus rule)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mushcam.evaluate import run_label, run_metrics
from mushcam.metrics import DANGEROUS, error_kinds
from mushcam.review.agreement import DEFAULT_CONSENSUS, has_cause
from mushcam.review.causes import Cause, labels_of
from mushcam.review.figures import model_name
from mushcam.review.store import ReviewIndex, ReviewKey
from mushcam.store import Predictions, RunRecord, StoreContents


@dataclass(frozen=True)
class ModelSummary:
    """One run's numbers as the report states them."""

    label: str
    n_images: int
    accuracy: float
    errors: int
    dangerous: int
    poisonous_images: int
    benign: int
    reviewed: int
    cause_counts: dict[str, int]


@dataclass(frozen=True)
class ErrorCase:
    """One wrong prediction of one run, with the key its reviews are stored under."""

    run: RunRecord
    rows: Predictions
    index: int
    key: ReviewKey

    @property
    def path(self) -> str:
        return self.rows.image_paths[self.index]

    def describe(self) -> str:
        names = self.run.class_names
        t, p = int(self.rows.true_idx[self.index]), int(self.rows.pred_idx[self.index])
        return f"true {names[t]} → predicted {names[p]} ({float(self.rows.confidence[self.index]):.1%})"


class Findings:
    """Each run's errors (with their review keys), error kinds and summary, and the causes in use."""

    def __init__(self, contents: StoreContents, reviews: ReviewIndex, causes: Sequence[Cause],
                 rule: str = DEFAULT_CONSENSUS) -> None:
        self.contents, self.reviews, self.rule = contents, reviews, rule
        self.runs = contents.runs
        self.causes = tuple(causes)
        self.labels = labels_of(causes)
        self.keys = [c.key for c in causes]
        self.errors: dict[int, list[ErrorCase]] = {}
        self.kinds: dict[int, np.ndarray] = {}
        for run in self.runs:
            rows = contents.predictions[run.run_id]
            self.kinds[run.run_id] = error_kinds(rows.true_idx, rows.pred_idx, run.toxicities)
            self.errors[run.run_id] = [
                ErrorCase(run, rows, i, ReviewKey(rows.image_sha256[i], model_name(run), run.checkpoint_sha256))
                for i in np.flatnonzero(rows.true_idx != rows.pred_idx).tolist()
            ]
        self.summaries = [self.summary(run) for run in self.runs]
        self.used = [k for k in self.keys if any(s.cause_counts[k] for s in self.summaries)]

    def summary(self, run: RunRecord) -> ModelSummary:
        m = run_metrics(self.contents, run.run_id)
        errs = self.errors[run.run_id]
        return ModelSummary(
            run_label(run, self.runs), m.n_images, m.accuracy, len(errs),
            int((self.kinds[run.run_id] == DANGEROUS).sum()), m.poisonous_images, m.benign_count,
            sum(1 for e in errs if self.reviews.of(e.key)), {k: self.count(errs, k) for k in self.keys})

    def label_of(self, run: RunRecord) -> str:
        return run_label(run, self.runs)

    def count(self, errs: Sequence[ErrorCase], cause: str) -> int:
        """Errors that have ``cause`` under the consensus rule."""
        return sum(1 for e in errs if has_cause(self.reviews.of(e.key), cause, self.rule))

    def dangerous(self) -> list[ErrorCase]:
        """Every poisonous-predicted-as-edible error, run by run."""
        return [e for run in self.runs for e in self.errors[run.run_id]
                if self.kinds[run.run_id][e.index] == DANGEROUS]

    def reviewed_pairs(self, run: RunRecord) -> dict[tuple[str, str], list[ErrorCase]]:
        """The run's reviewed errors grouped by (true class, predicted class)."""
        names = run.class_names
        groups: dict[tuple[str, str], list[ErrorCase]] = {}
        for e in self.errors[run.run_id]:
            if self.reviews.of(e.key):
                pair = (names[int(e.rows.true_idx[e.index])], names[int(e.rows.pred_idx[e.index])])
                groups.setdefault(pair, []).append(e)
        return groups

    def examples_of(self, cause: str) -> list[ErrorCase]:
        """Every error that has ``cause`` under the consensus rule, over all runs, each photo once."""
        examples, seen = [], set()
        for run in self.runs:
            for error in self.errors[run.run_id]:
                if error.key.image_sha256 not in seen and has_cause(self.reviews.of(error.key), cause, self.rule):
                    examples.append(error)
                    seen.add(error.key.image_sha256)
        return examples
