"""Compare the backbones image by image: which images, the grid of maps, its numbers, its export.

- :mod:`mushcam.compare.sample`     — the images: loading them, and a deterministic sample of a
  test folder balanced between poisonous and other classes (and between right and wrong).
- :mod:`mushcam.compare.comparison` — every (model x method) column's map of every image, with
  each map's focus and each pair's agreement on a common grid; the command line's memo.
- :mod:`mushcam.compare.tables`     — the numbers per model, per pair, per image, and as CSV.
- :mod:`mushcam.compare.figure`     — the grid drawn as one PNG, and the export files
  ``gradcam_detailed_comparison_{timestamp}.png`` / ``.csv`` / ``_summary.csv``.

Every public name is re-exported here, so ``from mushcam.compare import X`` keeps working. The
command ``python -m mushcam compare IMAGES_OR_FOLDER ... --out DIR`` is :mod:`mushcam.cli.compare`.
"""

from __future__ import annotations

from mushcam.compare.comparison import (
    MEASURE_SIDE,
    NORMALISATIONS,
    Cell,
    Comparison,
    ExplainFn,
    Memo,
    ProgressFn,
    Row,
    column_key,
    column_label,
    compute_comparison,
    make_cell,
    measure_map,
    outcome_with,
    split_column,
)
from mushcam.compare.figure import (
    EXPORT_STEM,
    GRID_VIEWS,
    PANEL_SIDE,
    SHORT_NAMES,
    ExportPaths,
    cell_picture,
    export_name,
    fit_to,
    fmt,
    render_comparison,
    short_name,
    summary_lines,
    verdict,
    write_export,
)
from mushcam.compare.sample import (
    DEFAULT_SAMPLE_SIZE,
    DISPLAY_MAX_SIDE,
    CompareImage,
    OutcomeFn,
    flat_folder_images,
    gather_images,
    label_toxicity,
    load_compare_image,
    manifest_class,
    select_sample,
)
from mushcam.compare.tables import backbone_summary, image_table, pair_summary, summary_long, to_csv

__all__ = [
    # sample
    "DEFAULT_SAMPLE_SIZE", "DISPLAY_MAX_SIDE", "CompareImage", "OutcomeFn", "flat_folder_images",
    "gather_images", "label_toxicity", "load_compare_image", "manifest_class", "select_sample",
    # comparison
    "MEASURE_SIDE", "NORMALISATIONS", "Cell", "Comparison", "ExplainFn", "Memo", "ProgressFn", "Row",
    "column_key", "column_label", "compute_comparison", "make_cell", "measure_map", "outcome_with",
    "split_column",
    # tables
    "backbone_summary", "image_table", "pair_summary", "summary_long", "to_csv",
    # figure
    "EXPORT_STEM", "GRID_VIEWS", "PANEL_SIDE", "SHORT_NAMES", "ExportPaths", "cell_picture", "export_name",
    "fit_to", "fmt", "render_comparison", "short_name", "summary_lines", "verdict", "write_export",
]
