"""Can the map be trusted? Faithfulness metrics, the sanity check, their storage and report.

- :mod:`mushcam.trust.faithfulness` — deletion / insertion curves and AUC, Average Drop and
  Increase in Confidence, ROAD; a random map and the inverted map beside each real one.
- :mod:`mushcam.trust.imputation`  — ROAD's noisy linear imputation (a sparse solve per image).
- :mod:`mushcam.trust.sanity`      — cascading model-parameter randomisation.
- :mod:`mushcam.trust.store`       — their tables in the results store (one reader; interrupted runs resume).
- :mod:`mushcam.trust.rows`        — the checks that reader makes on every stored value.
- :mod:`mushcam.trust.paths`       — where the Trust page may read a run's photos (under the user's folder).
- :mod:`mushcam.trust.report`      — tables with bootstrap intervals.
- :mod:`mushcam.trust.run`         — over a test folder, per model x method, streamed into the store.
- :mod:`mushcam.trust.figure`      — the mean curves as a PNG.

The commands ``python -m mushcam faithfulness`` and ``sanity`` are in :mod:`mushcam.cli.trust`; every
method is reached through :func:`mushcam.cam.cam` and named by the registry (:mod:`mushcam.cam.registry`).
"""
