"""``python -m mushcam gradcam``: its options and their checks; the job is :mod:`mushcam.pipeline`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mushcam.cache import DEFAULT_MAX_BYTES, CamCache, default_cache_dir
from mushcam.cam import DEFAULT_METHOD, method_help, method_names
from mushcam.catalog import with_code_consent
from mushcam.cli.common import check_megabytes, resolve_manifest
from mushcam.distributed.options import add_ray_options, ray_options
from mushcam.distributed.runtime import RayOptions
from mushcam.exceptions import UsageError
from mushcam.files import write_json_atomic
from mushcam.manifest import Manifest
from mushcam.memory import current_rss_bytes, peak_rss_bytes
from mushcam.pipeline.config import (
    DEFAULT_MAX_SIDE,
    DEFAULT_PNG_LEVEL,
    DEFAULT_VIEWS,
    MAX_MAX_SIDE,
    VIEW_NAMES,
    ModelReport,
    PipelineConfig,
)
from mushcam.pipeline.device import resolve_device
from mushcam.pipeline.items import ImageItem, collect_images, parse_shard, select_shard
from mushcam.pipeline.job import run_pipeline
from mushcam.pipeline.summary import format_summary
from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP
from mushcam.settings import add_trust_code_option

if TYPE_CHECKING:
    from mushcam.distributed.pool import PoolReport


def _split_list(values: Sequence[str] | None) -> list[str]:
    if not values:
        return []
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gradcam``."""
    parser = subparsers.add_parser(
        "gradcam",
        help="batch Grad-CAM: many images, several models, one model at a time, cached and resumable",
        description="Grad-CAM of many images for several models, one model at a time, with an on-disk "
        "cache of the raw maps shared with the app. A re-run skips what is done; --force recomputes.",
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="ROOT_OR_FILES",
                        help="a folder (root/<Class>/*.jpg gives the true class; or a flat folder) or image files")
    parser.add_argument("--model", "--models", "--backbone", "--backbones", dest="models", nargs="+", metavar="NAME",
                        help="models to run by their manifest name, space- or comma-separated (default: every "
                        "model in the manifest); --backbones is the old spelling")
    parser.add_argument("--target", default="predicted",
                        help="class to explain: predicted (default), true (the class folder), or a class name/index")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1: least memory)")
    # the registry's names, read when the parser is built (a method registered before then is listed)
    parser.add_argument("--method", choices=method_names(), default=DEFAULT_METHOD,
                        help=f"{method_help()}; another method writes to OUT/<model>-<method>/")
    parser.add_argument("--views", default=",".join(DEFAULT_VIEWS),
                        help=f"PNG views to write, comma-separated, from {', '.join(VIEW_NAMES)} "
                        f"(default {','.join(DEFAULT_VIEWS)}); the raw map is always written")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="heat map opacity 0..1 (default "
                                                                           f"{DEFAULT_ALPHA})")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, help=f"{', '.join(COLORMAPS)} (default "
                                                                     f"{DEFAULT_COLORMAP})")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: $MUSHCAM_CHECKPOINTS or "
                                           "checkpoints/)")
    parser.add_argument("--cache", help="cache folder (default: $MUSHCAM_CACHE or ~/.cache/mushcam/cams, shared with "
                                        "the app)")
    parser.add_argument("--cache-max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                        help="cache size cap; least recently used maps are evicted (default "
                             f"{DEFAULT_MAX_BYTES // 2**20})")
    parser.add_argument("--shard", metavar="k/N", help="process only shard k of N (1..N), for N independent jobs")
    parser.add_argument("--force", action="store_true", help="recompute every map and rewrite every file")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"longest side of the written views in pixels (default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--png-level", type=int, default=DEFAULT_PNG_LEVEL,
                        help=f"PNG zlib compression 0-9 (default {DEFAULT_PNG_LEVEL}: fast; 6 gives files ~8%% smaller "
                        "for ~2.7x the encoding time, see benchmarks/bench_pipeline.py)")
    parser.add_argument("--summary", metavar="FILE", help="also write the run's summary as JSON to FILE")
    parser.add_argument("--out", required=True, help="output folder (created)")
    add_trust_code_option(parser)
    add_ray_options(parser)
    parser.set_defaults(handler=run_gradcam)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Validate the command line (errors name the option) and build the run's configuration."""
    manifest = with_code_consent(resolve_manifest(args.manifest), trust_code=args.trust_code)
    backbones = _split_list(args.models) or list(manifest.models)
    if not backbones:
        raise UsageError("the manifest lists no models; add one under \"models\" or pass --manifest")
    for backbone in backbones:
        if backbone not in manifest.models:
            raise UsageError(f"--model: no model named {backbone!r} in the manifest; "
                             f"choose from {', '.join(manifest.models)}")
    backbones = list(dict.fromkeys(backbones))
    target = parse_target(args.target, manifest)
    views = check_output_options(args)
    cache = CamCache(Path(args.cache) if args.cache else default_cache_dir(), max_bytes=int(args.cache_max_mb * 2**20))
    return PipelineConfig(
        manifest=manifest,
        out=Path(args.out),
        cache=cache,
        backbones=tuple(backbones),
        target=target,
        batch_size=args.batch_size,
        views=views,
        alpha=float(args.alpha),
        colormap=args.colormap,
        device=resolve_device(args.device),
        force=bool(args.force),
        max_side=int(args.max_side),
        png_level=int(args.png_level),
        shard=parse_shard(args.shard),
        method=args.method,
    )


def parse_target(text: str, manifest: Manifest) -> str | int:
    """``--target``: ``predicted``, ``true``, a class index (ASCII digits) or a class name."""
    target_text = str(text).strip()
    if target_text.lower() in ("predicted", "true"):
        return target_text.lower()
    if re.fullmatch(r"[0-9]+", target_text):  # ASCII digits only: '²'.isdigit() is True
        target = int(target_text)
        if not 0 <= target < manifest.num_classes:
            raise UsageError(f"--target {target} is out of range: there are {manifest.num_classes} classes")
        return target
    try:
        return manifest.class_index(target_text)
    except KeyError as exc:
        raise UsageError(f"--target {target_text!r}: {exc.args[0]}") from None


def check_output_options(args: argparse.Namespace) -> tuple[str, ...]:
    """The batch, view, drawing, output and cache options checked (errors name the option); the views."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1; got {args.batch_size}")
    views = tuple(dict.fromkeys(_split_list([args.views])))
    bad = [v for v in views if v not in VIEW_NAMES]
    if bad or not views:
        raise UsageError(f"--views must list some of {', '.join(VIEW_NAMES)}; got {args.views!r}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {args.colormap!r}")
    if not 16 <= args.max_side <= MAX_MAX_SIDE:
        raise UsageError(f"--max-side must be between 16 and {MAX_MAX_SIDE} pixels (views are for people); got "
                         f"{args.max_side}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder (it is created)")
    if not 0 <= args.png_level <= 9:
        raise UsageError(f"--png-level must be between 0 and 9; got {args.png_level}")
    check_megabytes(args.cache_max_mb, "--cache-max-mb")
    return views


def run_gradcam(args: argparse.Namespace) -> int:
    """``python -m mushcam gradcam``: exit 0, or 1 when some images could not be processed."""
    rss_after_import = current_rss_bytes()  # torch and the rest are imported: the process's floor
    options = ray_options(args, args.device)
    config = config_from_args(args)
    def skipped(path: str, reason: str) -> None:
        print(f"skipped {path}: {reason}", file=sys.stderr)

    items = select_shard(collect_images(args.data, on_skip=skipped), config.shard)
    shard_note = "" if config.shard is None else " (shard {}/{})".format(*config.shard)
    print(f"{len(items)} images{shard_note}, {len(config.backbones)} models, device {config.device}, "
          f"cache {config.cache.root}", file=sys.stderr)
    started = time.perf_counter()
    startup_peak = peak_rss_bytes()  # before the per-model resets: imports, scanning
    reports, pools = _run(config, items, options, _say)
    total = time.perf_counter() - started
    peaks = [p for p in [startup_peak, *(r.peak_rss_bytes for r in reports)] if p is not None]
    print(format_summary(reports, total, config.device, config.method))
    if pools:
        from mushcam.distributed.progress import format_pool_reports

        print(format_pool_reports(pools))
    if args.summary:
        summary = {
            "device": str(config.device),
            "seconds": total,
            "images": len(items),
            "shard": list(config.shard) if config.shard else None,
            "rss_after_import_bytes": rss_after_import,
            "process_peak_rss_bytes": max(peaks) if peaks else None,
            "models": [{**asdict(r), "images_per_second": r.images_per_second} for r in reports],
            **({"ray": [asdict(p) for p in pools]} if pools else {}),
        }
        write_json_atomic(Path(args.summary), summary, "the run summary")
    return 1 if any(r.failed for r in reports) else 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run(config: PipelineConfig, items: list[ImageItem], options: RayOptions | None,
         say: Callable[[str], None]) -> tuple[list[ModelReport], list[PoolReport]]:
    """The job here, or with ``--ray`` on Ray workers (:mod:`mushcam.distributed.gradcam`); reports and pool reports."""
    if options is None:
        return run_pipeline(config, items, progress=say), []
    from mushcam.distributed.gradcam import run_pipeline_on_ray

    return run_pipeline_on_ray(config, items, options, progress=say)
