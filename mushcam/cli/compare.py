"""``python -m mushcam compare IMAGES_OR_FOLDER [--model ...] [--method ...] [--n 12] [--seed 0] --out DIR``.

Registered by :mod:`mushcam.cli.main` through :func:`add_cli`: checks the options, picks the
models, gathers the images, computes the comparison with a :class:`Memo` and writes the export.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mushcam.cache import CamCache
from mushcam.cam import DEFAULT_METHOD, method_help, method_names
from mushcam.cli.common import resolve_manifest
from mushcam.compare.comparison import NORMALISATIONS, Memo, compute_comparison, outcome_with
from mushcam.compare.figure import GRID_VIEWS, summary_lines, write_export
from mushcam.compare.sample import DEFAULT_SAMPLE_SIZE, gather_images, manifest_class
from mushcam.exceptions import MushcamError, UsageError
from mushcam.manifest import Manifest
from mushcam.render import DEFAULT_ALPHA, DEFAULT_COLORMAP
from mushcam.settings import add_trust_code_option

MAX_GRID_IMAGES = 100  # rows of one exported grid: the figure is for people (100 rows ~ 30,000 px tall)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="the models side by side on several images: grid PNG with agreement and focus numbers, CSV",
        description="The CAM maps (--method; Grad-CAM by default) of every chosen model on several images, with how "
                    "much the maps agree "
        "(top-20% IoU, Spearman) and how focused each is (half-mass area, entropy). Writes "
        "gradcam_detailed_comparison_{timestamp}.png, .csv and _summary.csv.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGES_OR_FOLDER",
        help="image files (all used; a file's true class is its folder's name when the manifest lists it), "
        "or one test folder <folder>/<Class>/* to sample from (or a folder of images)",
    )
    parser.add_argument("--model", "--models", "--backbone", "--backbones", dest="models", nargs="+", metavar="NAME",
                        help="models to compare by their manifest name, any number (default: every one with a "
                        "checkpoint); --backbones is the old spelling")
    # the registry's names, read when the parser is built (a method registered before then is listed)
    parser.add_argument("--method", nargs="+", choices=method_names(), default=[DEFAULT_METHOD], metavar="METHOD",
                        help=f"{method_help()}; several make the columns models x methods")
    parser.add_argument("--n", type=int, default=DEFAULT_SAMPLE_SIZE, help="images sampled from a folder (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or "
                                           "checkpoints/)")
    parser.add_argument("--normalise", choices=NORMALISATIONS, default="per_image",
                        help="per_image: each map to its own maximum (default); shared: each row to its largest map")
    parser.add_argument("--view", choices=GRID_VIEWS, default="overlay", help="overlay (default) or heatmap alone")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="overlay opacity 0..1 (default 0.45)")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, help="jet (default), viridis, hot, inferno, ...")
    parser.add_argument("--no-outcome-mix", action="store_true",
                        help="sample by class only, without predicting candidates to mix correct and wrong ones")
    parser.add_argument("--no-cache", action="store_true",
                        help="keep maps in memory only (default: the on-disk map cache shared with the app, "
                        "$MUSHCAM_CACHE or ~/.cache/mushcam/cams)")
    add_trust_code_option(parser)
    parser.set_defaults(handler=run_compare)


def usable_backbones(manifest: Manifest, requested: Sequence[str] | None) -> list[str]:
    """The requested models by manifest name (comma or space separated), or every one whose
    checkpoint exists, in the manifest's order."""
    from mushcam.catalog import checkpoint_statuses

    statuses = {s.name: s for s in checkpoint_statuses(manifest)}
    if not requested:
        found = [name for name, status in statuses.items() if status.status == "found"]
        if not found:
            raise MushcamError(
                f"no checkpoint files found for the manifest in {manifest.root}: "
                + ("; ".join(f"{n}: {s.reason}" for n, s in statuses.items()) or "it lists no models")
            )
        return found
    names = [name.strip() for item in requested for name in item.split(",") if name.strip()]
    chosen = []
    for name in names:
        if name not in statuses:
            raise MushcamError(f"--model: no model named {name!r} in the manifest; choose from {', '.join(statuses)}")
        if statuses[name].status != "found":
            raise MushcamError(f"--model: {name} cannot be used ({statuses[name].reason})")
        if name not in chosen:
            chosen.append(name)
    return chosen


def run_compare(args: argparse.Namespace) -> int:
    """``compare``: check the options, pick the models and images, write the grid PNG and CSVs."""
    from mushcam.catalog import load_catalog_entry, with_code_consent
    from mushcam.render import COLORMAPS

    if not 1 <= args.n <= MAX_GRID_IMAGES:
        raise UsageError(f"--n must be between 1 and {MAX_GRID_IMAGES} (one grid is for people to read); got {args.n}; "
                         "for more images use python -m mushcam gradcam")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more; got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder (it is created)")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {args.colormap!r}")
    manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
    backbones = usable_backbones(manifest, args.models)
    from mushcam.cache import default_cache_dir

    cache = None if args.no_cache else CamCache(default_cache_dir())
    memo = Memo(manifest, lambda name: load_catalog_entry(manifest, name), cache)
    outcome_for = None if args.no_outcome_mix else (lambda load: outcome_with(memo, backbones, manifest, load))
    if len(args.inputs) > MAX_GRID_IMAGES:
        raise UsageError(f"{len(args.inputs)} images given; one grid holds at most {MAX_GRID_IMAGES} "
                         "(for more images use python -m mushcam gradcam)")
    images = gather_images(args.inputs, manifest, args.n, args.seed, outcome_for)

    def progress(done: int, total: int, what: str) -> None:
        if done < total:
            print(f"[{done + 1}/{total}] {what}", file=sys.stderr)

    comparison = compute_comparison(images, backbones, manifest, memo, progress=progress, methods=args.method)
    paths = write_export(comparison, manifest, args.out, args.normalise, args.view, args.alpha, args.colormap)
    unlisted = sorted({img.label for img in images
                       if img.label is not None and manifest_class(manifest, img.label) is None})
    if unlisted:
        print(f"note: classes not in the manifest (correctness unknown): {', '.join(unlisted)}", file=sys.stderr)
    print("\n".join(summary_lines(comparison)))
    print(f"wrote {paths.png}\nwrote {paths.csv}\nwrote {paths.summary_csv}")
    return 0
