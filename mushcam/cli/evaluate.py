"""``python -m mushcam evaluate`` (predictions into the results store) and ``python -m mushcam report``."""

from __future__ import annotations

import argparse

import torch

from mushcam.catalog import with_code_consent
from mushcam.cli.common import resolve_manifest
from mushcam.distributed.options import add_ray_options, ray_options
from mushcam.evaluate.predict import evaluate_models
from mushcam.evaluate.report import format_report
from mushcam.exceptions import MushcamError
from mushcam.settings import add_trust_code_option
from mushcam.store import load_store


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` and ``report``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="run each model over a test set (ROOT/<Class>/<image>) and store every prediction in SQLite",
    )
    parser.add_argument("--data", required=True, help="test-set folder: ROOT/<Class>/<image> (class = manifest class)")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or "
                                           "checkpoints/)")
    parser.add_argument("--model", "--models", "--backbone", "--backbones", dest="models", nargs="+", metavar="NAME",
                        help="models to evaluate, by their manifest name (default: every manifest model with a "
                        "checkpoint); --backbones is the old spelling")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--out", required=True, help="results store to create or update, e.g. results.sqlite")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for inference (default: torch's choice; 1 is fastest on a busy shared host)")
    add_trust_code_option(parser)
    add_ray_options(parser)
    parser.set_defaults(handler=run_evaluate)

    report = subparsers.add_parser("report", help="print accuracy, per-class scores, confusion matrix and "
                                                  "toxicity-aware error rates")
    report.add_argument("store", help="results store written by `evaluate`")
    report.add_argument("--markdown", action="store_true", help="markdown tables")
    report.add_argument("--summary", action="store_true", help="only the one-row-per-model summary")
    report.set_defaults(handler=run_report)


def run_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: every chosen model over the test folder, one run each in the store."""
    if args.threads is not None:
        if args.threads < 1:
            raise MushcamError(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
    options = ray_options(args)
    if options is None:
        evaluate_models(args.data, manifest, args.out, batch_size=args.batch_size, models=args.models)
        return 0
    from mushcam.distributed.evaluate import evaluate_models_on_ray
    from mushcam.distributed.progress import format_pool_reports

    _, pools = evaluate_models_on_ray(args.data, manifest, args.out, options, args.models, args.batch_size)
    print(format_pool_reports(pools))
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``report``: the runs' metrics, then the trust tables when the store holds any."""
    from mushcam.trust.report import format_trust_report
    from mushcam.trust.store import load_trust

    contents, trust_contents = load_store(args.store), load_trust(args.store)  # both read (and checked) first
    print(format_report(contents, markdown=args.markdown, summary_only=args.summary))
    trust = format_trust_report(trust_contents, markdown=args.markdown)
    if trust:
        print("\n" + trust)
    return 0
