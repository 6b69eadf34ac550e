"""The command line's ``--ray [ADDRESS]`` and ``--ray-workers N``, shared by gradcam, evaluate and faithfulness."""

from __future__ import annotations

import argparse

from mushcam.distributed.runtime import LOCAL, RayOptions, require_ray


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]`` (no address: a local runtime with this machine's cores) and ``--ray-workers``."""
    parser.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                        help="run on Ray: without ADDRESS a local runtime with this machine's cores, with one that "
                        "cluster (auto, HOST:6379, ray://HOST:10001); needs pip install -e .[ray] "
                        "(docs/distributed.md)")
    parser.add_argument("--ray-workers", type=int, metavar="N",
                        help="with --ray: workers per model (default: one per GPU of the cluster, else one per CPU)")


def ray_options(args: argparse.Namespace, device: str = "auto") -> RayOptions | None:
    """The run's :class:`RayOptions`, or None without ``--ray`` (with it and without Ray: how to install it)."""
    if not getattr(args, "ray", None):
        return None
    require_ray()  # before the command prints or writes anything
    return RayOptions(address=args.ray, workers=args.ray_workers, device=device)
