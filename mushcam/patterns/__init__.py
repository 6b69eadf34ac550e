"""Patterns: what a model relies on across the whole test set (issue 19).

One module per role:

- :mod:`mushcam.patterns.maps`      — collect the maps of every photo of a model from the CAM cache
  (computing the missing ones through :func:`mushcam.cache.cached_explanation`).
- :mod:`mushcam.patterns.cluster`   — strategy clusters (SpRAy): spectral clustering of the
  downsampled maps with an eigengap choice of k, and the 2-D spectral embedding.
- :mod:`mushcam.patterns.shortcuts` — border-band / corner mass, outside-object mass and
  same-location flags, with the reason in words.
- :mod:`mushcam.patterns.focus`     — the energy-based pointing game and the pointing game on object
  regions, with bootstrap 95 % intervals and what a uniform map would get.
- :mod:`mushcam.patterns.regions`   — object regions: CSV and COCO-JSON import, GrabCut proposals.
- :mod:`mushcam.patterns.concepts`  — Deep Feature Factorization (NMF of a layer's activations per
  class) and each concept's contribution to the class logit.
- :mod:`mushcam.patterns.store`     — the regions and pattern numbers in the results store.
- :mod:`mushcam.patterns.report`    — patterns.json, Markdown and self-contained HTML.
- :mod:`mushcam.patterns.run`       — the whole job over a test folder (the command and the page call it).
- :mod:`mushcam.patterns.cli`       — ``python -m mushcam patterns`` (:func:`add_cli`).

The formulas are in ``docs/patterns.md``.
"""
