"""Test-set evaluation: every prediction of every model into the results store, and a report.

``python -m mushcam evaluate --data ROOT [--manifest FILE] [--models NAME ...] [--batch-size N]
--out results.sqlite`` runs each named model of the manifest over ``ROOT/<Class>/<image>`` (one model at a time,
batched, under ``torch.inference_mode()``) and saves one run per model (see
:mod:`mushcam.store`). Images are decoded with :func:`mushcam.data.load_image`'s decoder
and preprocessed with :func:`mushcam.data.preprocess` to the manifest's input spec, exactly
as the Explain page does, so a stored probability vector is what the app shows for that
image. Class folders not in the manifest and unreadable images are skipped, reported on
the console and listed in the store.

``python -m mushcam report results.sqlite`` prints accuracy, the toxicity-aware error
rates, per-class precision / recall / F1 and the confusion matrix of every run.

The package, one module per role:

- :mod:`mushcam.evaluate.scan`    — the test set: images under ``ROOT/<Class>/`` of the manifest's
  classes, and what is skipped.
- :mod:`mushcam.evaluate.predict` — each model's probabilities in batches (:func:`predict_images`)
  and the runs saved to the store (:func:`evaluate_models`).
- :mod:`mushcam.evaluate.report`  — a stored run's metrics and the text report (:func:`format_report`).
Every public name is re-exported here, so ``from mushcam.evaluate import X`` keeps working. The
commands ``python -m mushcam evaluate ...`` and ``report ...`` are in :mod:`mushcam.cli.evaluate`.
"""

from __future__ import annotations

from mushcam.evaluate.predict import (
    MAX_BATCH_SIZE,
    BatchOutput,
    Progress,
    RunSummary,
    check_model_names,
    evaluate_models,
    library_versions,
    predict_images,
)
from mushcam.evaluate.report import format_report, run_label, run_metrics
from mushcam.evaluate.scan import TestImage, TestSet, scan_test_set

__all__ = [
    # scan
    "TestImage", "TestSet", "scan_test_set",
    # predict
    "MAX_BATCH_SIZE", "BatchOutput", "Progress", "RunSummary", "check_model_names", "evaluate_models",
    "library_versions", "predict_images",
    # report
    "format_report", "run_label", "run_metrics",
]
