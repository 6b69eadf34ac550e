"""What the results store holds: its schema and identity, its error, and its records.

:class:`RunRecord` (one model on one data root), :class:`Predictions` (that run's rows as
column arrays), :class:`Skipped` (a file or folder left out, and why) and
:class:`StoreContents` (everything, read at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mushcam.exceptions import MushcamError
from mushcam.models import DISPLAY_NAMES
from mushcam.toxicity import Toxicity

SCHEMA_VERSION = 2  # 2: runs.arch (the model's architecture; ``backbone`` holds its name)
APPLICATION_ID = 0x4D434D31  # "MCM1": marks the file as a MushCAM results store

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    backbone TEXT NOT NULL,
    checkpoint_path TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    layer TEXT NOT NULL,
    data_root TEXT NOT NULL,
    manifest_json TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    versions_json TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    seconds REAL NOT NULL,
    n_images INTEGER NOT NULL,
    arch TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (backbone, checkpoint_sha256, data_root);
CREATE TABLE IF NOT EXISTS predictions (
    run_id INTEGER NOT NULL,
    image_path TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    true_idx INTEGER NOT NULL,
    true_class TEXT NOT NULL,
    pred_idx INTEGER NOT NULL,
    pred_class TEXT NOT NULL,
    confidence REAL NOT NULL,
    probabilities BLOB NOT NULL,
    PRIMARY KEY (run_id, image_path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skipped_run ON skipped (run_id);
"""


class StoreError(MushcamError):
    """The results store cannot be read or written (the message says why)."""


@dataclass(frozen=True)
class RunRecord:
    """One model's evaluation on one data root (``run_id`` is None before it is saved).

    ``backbone`` is the model's name in the manifest (the field's old name; :attr:`name` says
    it plainly) and ``arch`` its architecture (default: the name, as in older stores).
    """

    backbone: str
    checkpoint_path: str
    checkpoint_sha256: str
    layer: str
    data_root: str  # absolute
    manifest: dict[str, Any]  # the manifest as used: classes with toxicity, input spec
    started_at: str  # ISO 8601, UTC
    finished_at: str
    versions: dict[str, str]
    batch_size: int
    seconds: float  # wall time of decoding + inference
    n_images: int
    run_id: int | None = None
    arch: str = ""

    def __post_init__(self) -> None:
        if not self.arch:
            object.__setattr__(self, "arch", self.backbone)

    @property
    def name(self) -> str:
        """The model's name in the manifest: what runs are keyed by."""
        return self.backbone

    @property
    def label(self) -> str:
        """The model's display name as recorded with the run (its manifest label, if any)."""
        entry = self.manifest.get("models", {}).get(self.backbone) if isinstance(self.manifest, dict) else None
        label = entry.get("label") if isinstance(entry, dict) else None
        if isinstance(label, str) and label:
            return label
        return DISPLAY_NAMES.get(self.backbone, self.backbone) if self.arch == self.backbone else self.backbone

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["classes"]]

    @property
    def toxicities(self) -> list[str]:
        return [c.get("toxicity", Toxicity.UNKNOWN.value) for c in self.manifest["classes"]]

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class Predictions:
    """Column arrays of one run's rows, in image-path order."""

    image_paths: tuple[str, ...]
    image_sha256: tuple[str, ...]
    true_idx: np.ndarray  # int64 (N,)
    pred_idx: np.ndarray  # int64 (N,)
    confidence: np.ndarray  # float64 (N,)
    probabilities: np.ndarray  # float32 (N, C)

    def __len__(self) -> int:
        return len(self.image_paths)


@dataclass(frozen=True)
class Skipped:
    """A file or class folder that was not evaluated, with the reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class StoreContents:
    """Everything in a store, read at once (what the Errors page caches)."""

    runs: tuple[RunRecord, ...]
    predictions: dict[int, Predictions] = field(default_factory=dict)
    skipped: dict[int, tuple[Skipped, ...]] = field(default_factory=dict)

    def run(self, run_id: int) -> RunRecord:
        for record in self.runs:
            if record.run_id == run_id:
                return record
        raise KeyError(f"no run {run_id} in the store")
