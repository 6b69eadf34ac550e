"""Training: checkpoints for any genus list, weighted so that poisonous genera count more.

``python -m mushcam train --data ROOT --backbone all --out DIR`` trains on ``ROOT/train/<Class>/``,
selects the epoch with the lowest validation loss on ``ROOT/val/<Class>/`` and writes, per
backbone, ``DIR/<backbone>.pt`` (a plain state dict, what :func:`mushcam.models.load_model`
reads), ``DIR/<backbone>.train.csv`` (one row per epoch) and ``DIR/<backbone>.train.json``
(the run's settings and the best epoch's validation and, where ``ROOT/test`` exists, test
metrics), and merges the model into ``DIR/manifest.json`` (classes in output order with
toxicity, the input spec, checkpoint file, Grad-CAM layer). The app explains the result
as it is.

The loss is cross-entropy weighted per class (:func:`class_weights`): the thesis made every
poisonous genus count 4x (section 4.4.3 f) to keep dangerous false negatives -- a
poisonous genus predicted as edible -- rare. Optimiser AdamW, cosine learning-rate decay per
step, early stopping on the (weighted) validation loss. The validation and test inputs are
exactly :func:`mushcam.data.preprocess` of the photo, i.e. what the app feeds the model.

Every save is atomic and shielded from Ctrl-C (checkpoint first, then the manifest), so an
interrupted run leaves the best checkpoint so far and a manifest that matches it.

The package, one module per role: :mod:`~mushcam.train.data` (classes, photos, toxicities),
:mod:`~mushcam.train.metrics` (loss weights and metrics), :mod:`~mushcam.train.config` (a run's
settings and results), :mod:`~mushcam.train.output` (the output folder: manifest, checkpoints,
summaries) and :mod:`~mushcam.train.loop` (the training itself); the command is :mod:`mushcam.cli.train`.
Everything public is re-exported here: ``from mushcam.train import X`` works.
"""

from __future__ import annotations

from mushcam.device import resolve_device
from mushcam.train.config import TrainConfig, TrainResult
from mushcam.train.data import Report, TrainingData, find_classes, load_training_data, resolve_toxicities
from mushcam.train.loop import (
    batches,
    cosine_factor,
    evaluate_checkpoint,
    initial_model,
    set_batchnorm_momentum,
    train,
    train_backbone,
)
from mushcam.train.metrics import (
    EDIBLE,
    POISONOUS,
    SplitMetrics,
    class_weights,
    dangerous_error_rate,
    evaluate_tensors,
)
from mushcam.train.output import LOG_COLUMNS, plan_output

__all__ = [
    "EDIBLE",
    "LOG_COLUMNS",
    "POISONOUS",
    "Report",
    "SplitMetrics",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "batches",
    "class_weights",
    "cosine_factor",
    "dangerous_error_rate",
    "evaluate_checkpoint",
    "evaluate_tensors",
    "find_classes",
    "initial_model",
    "load_training_data",
    "plan_output",
    "resolve_device",
    "resolve_toxicities",
    "set_batchnorm_momentum",
    "train",
    "train_backbone",
]
