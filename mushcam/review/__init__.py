"""Error review: reviewers tag a model's mistakes with causes and notes; the analysis writes itself.

Modules: :mod:`causes` (the extendable list of causes), :mod:`store` (reviews, custom causes
and near-duplicate marks in the results store), :mod:`agreement` (Cohen's kappa between
reviewers), :mod:`figures` (the error figure: original, predicted- and true-class Grad-CAM),
:mod:`report` (Markdown + self-contained HTML: its sections in :mod:`report_sections`, built from
:mod:`report_findings` as :mod:`report_blocks`, written by :mod:`report_markdown` and
:mod:`report_html`), :mod:`labels` (label-fix CSV, through :mod:`mushcam.csvfile`),
:mod:`dedup` (near-duplicate photos across splits), :mod:`paths` (reading images only under
the folder the user gave). The commands (``review-report``, ``export-labels``, ``check-data``)
are in :mod:`mushcam.cli.review`.
"""
