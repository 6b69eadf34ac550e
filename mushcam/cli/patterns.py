"""``python -m mushcam patterns``: strategy clusters, shortcut flags, object focus and concepts.

Registered by the command line's ``add_cli(subparsers)`` convention (as :mod:`mushcam.trust.cli`)::

    python -m mushcam patterns --store results.sqlite --data data/test --model resnet50 mobilenet_v3_large \\
        --out patterns/ [--regions boxes.csv | --propose-regions] [--group-by true] [--concepts 0]

Writes ``patterns.json``, ``patterns.md`` and ``patterns.html`` into ``--out`` and the regions
and numbers into ``--store``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mushcam.cache import CamCache, default_cache_dir
from mushcam.cli.common import count_at_least
from mushcam.exceptions import MushcamError
from mushcam.methods import DEFAULT_METHOD
from mushcam.patterns.cluster import DEFAULT_MAX_K
from mushcam.patterns.concepts import DEFAULT_CONCEPTS
from mushcam.patterns.strategies import GROUPINGS
from mushcam.settings import add_trust_code_option


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``patterns``."""
    parser = subparsers.add_parser(
        "patterns", help="what each model relies on across a test folder: strategy clusters, shortcut flags, "
                         "focus on the object, concepts; Markdown + HTML + patterns.json",
    )
    parser.add_argument("--store", required=True, help="results store (the evaluate command's file): regions and "
                        "pattern numbers are saved there (created if new)")
    parser.add_argument("--data", required=True, help="test folder: ROOT/<Class>/<image>")
    parser.add_argument("--model", "--models", dest="models", nargs="+", required=True, metavar="NAME",
                        help="manifest model names")
    parser.add_argument("--out", required=True, help="folder for patterns.json, patterns.md and patterns.html")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or "
                        "checkpoints/)")
    parser.add_argument("--method", default=DEFAULT_METHOD, help="CAM method of the maps (default gradcam)")
    parser.add_argument("--group-by", choices=GROUPINGS, default="predicted",
                        help="a class's photos: those the model calls it (default) or those that truly are")
    parser.add_argument("--max-clusters", type=int, default=DEFAULT_MAX_K, help=f"most clusters per class "
                        f"(default {DEFAULT_MAX_K}; the eigengap chooses up to this)")
    parser.add_argument("--concepts", type=int, default=DEFAULT_CONCEPTS,
                        help=f"DFF concepts per class (default {DEFAULT_CONCEPTS}; 0 skips them)")
    parser.add_argument("--regions", help="object boxes: a CSV (path,x0,y0,x1,y1) or a COCO JSON file")
    parser.add_argument("--propose-regions", action="store_true",
                        help="propose a box by GrabCut for every photo without one (marked 'proposed')")
    parser.add_argument("--limit", type=count_at_least(1),
                        help="only N photos, taken at even intervals over the folder")
    parser.add_argument("--cache", help="CAM cache folder (default: $MUSHCAM_CACHE or ~/.cache/mushcam/cams)")
    parser.add_argument("--seed", type=int, default=0, help="seed of k-means, NMF and the bootstrap")
    add_trust_code_option(parser)
    parser.set_defaults(handler=run_patterns_command)


def run_patterns_command(args: argparse.Namespace) -> int:
    from mushcam.catalog import with_code_consent
    from mushcam.cli.common import resolve_manifest
    from mushcam.methods import METHODS
    from mushcam.patterns.report import write_report
    from mushcam.patterns.run import PatternsSettings, progress_bars, run_patterns

    if args.method not in METHODS:
        raise MushcamError(f"unknown CAM method {args.method!r}; choose one of {', '.join(METHODS)}")
    if args.max_clusters < 1 or args.concepts < 0 or (args.limit is not None and args.limit < 1):
        raise MushcamError("--max-clusters and --limit must be at least 1, --concepts at least 0")
    store = Path(args.store).expanduser()
    if store.is_dir():
        raise MushcamError(f"--store {store} is a folder; give a file such as {store / 'results.sqlite'}")
    manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
    for name in args.models:
        if name not in manifest.models:
            raise MushcamError(f"the manifest has no model named {name!r} (models: {', '.join(manifest.models)})")
    settings = PatternsSettings(args.method, args.group_by, args.max_clusters, args.concepts, args.propose_regions,
                                args.seed)
    cache = CamCache(Path(args.cache) if args.cache else default_cache_dir())
    result = run_patterns(args.data, manifest, args.models, cache, store, settings, args.regions, args.limit,
                          progress=progress_bars())
    for path in write_report(result, manifest.input, args.out):
        print(f"wrote {path}")
    flagged = sum(bool(c.flags) for m in result.models for s in m.strategies for c in s.clusters)
    print(f"{flagged} cluster(s) flagged as a possible shortcut; numbers saved in {store}")
    return 0
