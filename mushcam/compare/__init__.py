"""Compare the backbones image by image: which images, the grid of maps, its numbers, its export.

- :mod:`mushcam.compare.sample`     — the images: loading them, and a deterministic sample of a
  test folder balanced between poisonous and other classes (and between right and wrong).
- :mod:`mushcam.compare.comparison` — every (model x method) column's map of every image, with
  each map's focus and each pair's agreement on a common grid; the command line's memo.
- :mod:`mushcam.compare.tables`     — the numbers per model, per pair, per image, and as CSV.
- :mod:`mushcam.compare.figure`     — the grid drawn as one PNG, and the export files
  ``gradcam_detailed_comparison_{timestamp}.png`` / ``.csv`` / ``_summary.csv``.

The command ``python -m mushcam compare IMAGES_OR_FOLDER ... --out DIR`` is :mod:`mushcam.cli.compare`.

Re-exported here: the names the pages, ``ui/``, the tests, the benchmarks and the docs use
(``from mushcam.compare import select_sample`` works); everything else is imported from its module.
"""

from __future__ import annotations

from mushcam.compare.comparison import (
    NORMALISATIONS,
    CellKeyFn,
    Comparison,
    ExplainFn,
    MeasuredCell,
    Memo,
    column_label,
    compute_comparison,
    outcome_with,
    split_column,
)
from mushcam.compare.figure import (
    PANEL_SIDE,
    cell_picture,
    export_name,
    fit_to,
    fmt,
    render_comparison,
    verdict,
    write_export,
)
from mushcam.compare.sample import (
    DEFAULT_SAMPLE_SIZE,
    CompareImage,
    load_compare_image,
    manifest_class,
    select_sample,
)
from mushcam.compare.tables import backbone_summary, image_table, pair_summary, summary_long, to_csv

__all__ = [
    # sample
    "DEFAULT_SAMPLE_SIZE", "CompareImage", "load_compare_image", "manifest_class", "select_sample",
    # comparison
    "NORMALISATIONS", "CellKeyFn", "Comparison", "ExplainFn", "MeasuredCell", "Memo", "column_label",
    "compute_comparison", "outcome_with", "split_column",
    # tables
    "backbone_summary", "image_table", "pair_summary", "summary_long", "to_csv",
    # figure
    "PANEL_SIDE", "cell_picture", "export_name", "fit_to", "fmt", "render_comparison", "verdict", "write_export",
]
