"""``python -m mushcam review-report | export-labels | check-data``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mushcam.catalog import with_code_consent
from mushcam.cli.common import resolve_manifest
from mushcam.csvfile import write_csv
from mushcam.exceptions import MushcamError
from mushcam.files import write_text_atomic
from mushcam.settings import add_trust_code_option

if TYPE_CHECKING:
    from mushcam.review.store import ReviewData


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register the review commands."""
    report = subparsers.add_parser(
        "review-report",
        help="write the error analysis (Markdown + self-contained HTML) from a store's runs and reviews",
    )
    report.add_argument("store", help="results store written by `evaluate` (with reviews made on the Errors page)")
    report.add_argument("--out", required=True, help="folder for review_report.md, review_report.html, figures/")
    report.add_argument("--data", help="the image folder the store was evaluated on: images are read only under it "
                                       "(never from the folder recorded in the store); without it, no figures")
    report.add_argument("--manifest", help="manifest.json or its folder, for the Grad-CAM figures "
                                           "(default: $MUSHCAM_CHECKPOINTS or checkpoints/)")
    report.add_argument("--no-figures", action="store_true", help="leave the Grad-CAM figures out (no model is loaded)")
    report.add_argument("--consensus", choices=("any", "majority", "all"), default="any",
                        help="when an error has a cause: any reviewer tagged it (default), a majority of its "
                             "reviewers, or all of them; the report states the rule")
    report.add_argument("--labels-csv", help="also write the label-fix CSV (errors tagged 'label doubtful') here")
    add_trust_code_option(report)
    report.set_defaults(handler=run_review_report)

    labels = subparsers.add_parser("export-labels", help="CSV of errors tagged 'label doubtful': path, current "
                                                         "label, suggested label, note, reviewer")
    labels.add_argument("store", help="results store with reviews")
    labels.add_argument("--out", required=True, help="CSV file to write ('-' for standard output)")
    labels.set_defaults(handler=run_export_labels)

    check = subparsers.add_parser("check-data", help="find near-duplicate photos across ROOT/train, val and test "
                                                     "(perceptual hash, robust to crops and watermarks)")
    check.add_argument("root", help="dataset folder with train/, val/, test/ (each <Class>/<image>)")
    check.add_argument("--threshold", type=int, default=None, help="largest pHash distance in bits of 64 (default 12)")
    check.add_argument("--store", help="results store: mark the near-duplicates there, for the Errors page "
                                       "(checked writable before any photo is read)")
    check.add_argument("--csv", help="write every pair to this CSV file (checked writable before any photo is read; "
                                     "written whole or not at all)")
    check.add_argument("--show", type=int, default=20, help="pairs listed on screen (default 20)")
    check.add_argument("--list-skipped", action="store_true",
                       help="list every skipped file and folder with its reason (default: counts by reason and "
                       "10 examples)")
    check.add_argument("--no-geometric", dest="geometric", action="store_false",
                       help="hashes only: skip the second stage that matches local features (ORB + RANSAC) to find "
                       "the same find cropped, rotated, stamped or colour-shifted (it costs a few minutes per "
                       "1,500 photos)")
    check.set_defaults(handler=run_check_data)


def _write_text(path: str, text: str) -> None:
    """``text`` to standard output ('-') or atomically to ``path`` (an earlier file stays whole on failure)."""
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise MushcamError(f"--out {target} is a folder; give a file name")
    write_text_atomic(target, text)


def _read_reviews(store: str) -> ReviewData:
    """The store's reviews, causes and marks; each damaged row skipped is a ``warning:`` line on stderr."""
    from mushcam.review.store import read_review_data

    data = read_review_data(store)
    for warning in data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return data


def run_review_report(args: argparse.Namespace) -> int:
    from mushcam.cache import CamCache, default_cache_dir
    from mushcam.manifest import ManifestError
    from mushcam.review import labels, report
    from mushcam.review.figures import FigureSource
    from mushcam.store import load_store

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise MushcamError(f"--out {out} is a file; give a folder")
    if args.data is not None and not Path(args.data).expanduser().is_dir():
        raise MushcamError(f"--data {args.data} is not a folder")
    from mushcam.patterns.report import patterns_report_section

    contents = load_store(args.store)
    data = _read_reviews(args.store)
    reviews = data.reviews
    figures = None
    source = None
    if not args.no_figures:
        try:
            manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
        except ManifestError as exc:
            if args.manifest:
                raise
            manifest = None
            print(f"note: no figures: {exc}", file=sys.stderr)
        source = FigureSource(manifest, args.data, CamCache(default_cache_dir()))
        figures = source.figure
    try:
        built = report.build_report(contents, reviews, data.causes, figures, duplicates=data.duplicates,
                                    consensus=args.consensus, data_root=args.data,
                                    patterns=patterns_report_section(args.store, data_root=args.data))
    finally:
        if source is not None:
            source.close()
    written = report.write_report(built, out)
    if args.labels_csv:
        _write_text(args.labels_csv, labels.to_csv(labels.label_fixes(reviews.reviews)))
    print(f"{len(reviews.reviews)} reviews, {len(built.figures)} figures; wrote {out / 'review_report.md'} and "
          f"{out / 'review_report.html'} ({len(written)} files)")
    return 0


def run_export_labels(args: argparse.Namespace) -> int:
    from mushcam.review import labels

    fixes = labels.label_fixes(_read_reviews(args.store).reviews.reviews)
    _write_text(args.out, labels.to_csv(fixes))
    if args.out != "-":
        print(f"{len(fixes)} label{'s' if len(fixes) != 1 else ''} to check written to {args.out}")
    return 0


def run_check_data(args: argparse.Namespace) -> int:
    """``check-data``: outputs checked first, then the photos hashed; skipped files summarised."""

    from mushcam.data import printable
    from mushcam.files import check_output_file
    from mushcam.review import dedup
    from mushcam.review import store as review_store
    from mushcam.store import check_writable

    threshold = dedup.DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if args.show < 0:
        raise MushcamError(f"--show must be 0 or more; got {args.show}")
    if args.store:  # every output is checked before the hashing, not after it
        review_store.load_duplicates(args.store)  # it exists and is a MushCAM store
        check_writable(args.store)  # and can be written (not read-only, not locked)
    if args.csv:
        check_output_file(args.csv, "--csv")
    check = dedup.check_data(args.root, threshold, geometric=args.geometric)
    print(dedup.format_check(check, args.show, args.list_skipped))
    if args.csv:
        target = write_csv(args.csv, dedup.pairs_csv_rows(check.pairs))
        print(f"{len(check.pairs)} pairs written to {printable(target, terminal=True)}")
    if args.store:
        review_store.save_duplicates(args.store, check.pairs)
        print(f"near-duplicate marks saved in {printable(args.store, terminal=True)} (the Errors page shows them)")
    return 0
