"""``python -m mushcam faithfulness`` and ``python -m mushcam sanity``.

faithfulness: every (model, method) over a test folder into the results store; ``report``
prints the table. sanity: cascading randomisation of one model x method, on image files
(printed step by step) or on N images of a folder (stored for the report).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mushcam.cam import DEFAULT_METHOD, method_help
from mushcam.catalog import with_code_consent
from mushcam.cli.common import count_at_least, resolve_manifest
from mushcam.distributed.options import add_ray_options, ray_options
from mushcam.exceptions import MushcamError
from mushcam.settings import add_trust_code_option
from mushcam.trust.faithfulness import BASELINES, DEFAULT_ROAD_PERCENTAGES, DEFAULT_STEPS, FaithfulnessSettings


def _percentages(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none", "off"):
        return ()
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole percentages such as 10,50,90; got {text!r}"
        ) from None


def _threads(value: int | None) -> None:
    if value is not None:
        if value < 1:
            raise MushcamError(f"--threads must be at least 1; got {value}")
        torch.set_num_threads(value)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``faithfulness`` and ``sanity``."""
    parser = subparsers.add_parser(
        "faithfulness",
        help="deletion/insertion AUC, Average Drop, ROAD of every model x method over a test folder, into the results "
             "store",
    )
    parser.add_argument("--data", required=True, help="test folder: ROOT/<Class>/<image>")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or "
                                           "checkpoints/)")
    parser.add_argument("--models", "--backbones", nargs="+", metavar="MODEL",
                        help="manifest model names (default: every model with a checkpoint)")
    # the registry's names, read when the parser is built (a method registered before then is listed)
    parser.add_argument("--methods", default=DEFAULT_METHOD, help=f"{method_help()}; several, comma-separated")
    parser.add_argument("--baseline", choices=BASELINES, default="blur",
                        help="what a removed pixel becomes: the blurred image (default) or the mean colour")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="deletion/insertion steps (default "
                                                                         f"{DEFAULT_STEPS})")
    parser.add_argument("--road-percentages", type=_percentages, default=DEFAULT_ROAD_PERCENTAGES,
                        help="ROAD removal percentages, comma-separated (default 10,...,90; 'none' to skip ROAD)")
    parser.add_argument("--batch-size", type=int, default=32, help="perturbed images per forward pass (default 32)")
    parser.add_argument("--limit", type=count_at_least(1),
                        help="only N images, taken at even intervals over the folder (every class gets its share)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random maps, tie-breaking and ROAD noise")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--out", required=True, help="results store (the evaluate command's file), e.g. results.sqlite")
    add_trust_code_option(parser)
    add_ray_options(parser)
    parser.set_defaults(handler=run_faithfulness)

    sanity = subparsers.add_parser("sanity", help="cascading-randomisation sanity check of one model x method")
    sanity.add_argument("images", nargs="*", help="image files (or use --data)")
    sanity.add_argument("--data", help="test folder ROOT/<Class>/<image>: check --images N of its photos")
    sanity.add_argument("--images", dest="n_images", type=count_at_least(1), default=8,
                        help="photos taken from --data (default 8)")
    sanity.add_argument("--manifest", help="manifest.json or its folder")
    sanity.add_argument("--model", "--backbone", required=True, help="manifest model name")
    sanity.add_argument("--method", default=DEFAULT_METHOD, help=method_help())
    sanity.add_argument("--seed", type=int, default=0)
    sanity.add_argument("--threads", type=int, help="CPU threads")
    sanity.add_argument("--out", help="results store to save the check in (with --data), for the report")
    add_trust_code_option(sanity)
    sanity.set_defaults(handler=run_sanity)


def run_faithfulness(args: argparse.Namespace) -> int:
    from mushcam.trust.run import faithfulness_over_folder

    _threads(args.threads)
    settings = FaithfulnessSettings(steps=args.steps, baseline=args.baseline, road_percentages=args.road_percentages,
                                    batch_size=args.batch_size, seed=args.seed)
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise MushcamError(f"--out {out} is a folder; give a file such as {out / 'results.sqlite'}")
    manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
    if (options := ray_options(args)) is not None:
        from mushcam.distributed.faithfulness import faithfulness_on_ray
        from mushcam.distributed.progress import format_pool_reports

        _, pools = faithfulness_on_ray(args.data, manifest, out, args.methods.split(","), options, args.models,
                                       settings, limit=args.limit)
        print(format_pool_reports(pools))
        return 0
    faithfulness_over_folder(args.data, manifest, out, args.methods.split(","), args.models,
                             settings, limit=args.limit)
    return 0


def run_sanity(args: argparse.Namespace) -> int:
    from mushcam.catalog import load_catalog_entry, with_code_consent
    from mushcam.data import load_image, preprocess
    from mushcam.trust.report import format_sanity
    from mushcam.trust.run import StepProgress, choose_models, sanity_over_folder
    from mushcam.trust.sanity import method_explainer, sanity_check
    from mushcam.trust.store import RunKey, SanityRun

    _threads(args.threads)
    manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
    if bool(args.images) == bool(args.data):
        raise MushcamError("give image files or --data FOLDER (one of the two)")
    progress = StepProgress(f"sanity {args.model} · {args.method}")  # maps done / total, ETA, on stderr
    if args.data:
        run = sanity_over_folder(args.data, manifest, args.out, args.model, args.method, args.n_images, args.seed,
                                 progress=progress)
    else:
        choose_models(manifest, [args.model], print)
        inputs = torch.stack([preprocess(load_image(p), manifest.input) for p in args.images])
        loaded = load_catalog_entry(manifest, args.model)
        result = sanity_check(loaded.model, inputs, method_explainer(loaded.layer, args.method), seed=args.seed,
                              progress=progress)
        run = SanityRun(-1, RunKey(args.model, "", "", args.method, loaded.layer), result.blocks,
                        tuple(args.images), result.spearman, result.ssim)
    result = run.result
    print(f"{args.model} · {args.method} · layer {run.key.layer}: {len(run.image_paths)} image(s); "
          "Spearman and SSIM between the trained model's map and the map after randomising, from the logits down:")
    for step, block in enumerate(result.blocks):
        print(f"  {step + 1:2d}. + {block:<24} Spearman {result.mean_spearman[step]:+.3f}   SSIM "
              f"{result.mean_ssim[step]:.3f}")
    print(format_sanity([run]))
    if args.out and args.data:
        print(f"saved in {args.out}; the report shows it: python -m mushcam report {args.out}")
    return 0
