"""Reaching Ray: import it (or say how to install it), start a local runtime or join a cluster.

Ray is an optional extra (``pip install -e .[ray]``): nothing here imports it at module
level, so the library and the command line load without it; :func:`require_ray` imports it
when a job asks for it and turns its absence into a :class:`RayUnavailableError`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mushcam.exceptions import MushcamError

LOCAL = "local"  # --ray without an address: a runtime on this machine with its cores
INSTALL_HINT = "pip install -e .[ray]  (or: pip install -r requirements-test.txt)"


class RayUnavailableError(MushcamError):
    """Ray is not installed, or the cluster named by ``--ray ADDRESS`` cannot be reached."""


class DistributedError(MushcamError):
    """A distributed run cannot go on (a worker died more often than it may be retried, no resources)."""


@dataclass(frozen=True)
class RayOptions:
    """How a job runs on Ray: where (``address``), with how many workers per model, on which device.

    ``address``: ``"local"`` (start a runtime here with ``num_cpus`` cores, default all of
    them) or a cluster address (``auto``, ``HOST:6379``, ``ray://HOST:10001``). ``workers``:
    actors per model (default: one per GPU of the cluster, else one per CPU). ``device``:
    ``auto`` (a GPU per worker when the cluster has GPUs), ``cpu``, or ``cuda``.
    ``max_retries``: how often a worker is restarted, and its tasks retried, after it dies.
    ``progress_seconds``: how often the driver prints progress (0: after every batch).
    """

    address: str = LOCAL
    workers: int | None = None
    device: str = "auto"
    num_cpus: int | None = None
    max_retries: int = 3
    batches_in_flight: int = 2  # per worker: one running, one queued, so a worker never waits on the driver
    progress_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise DistributedError(f"--ray-workers must be at least 1; got {self.workers}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise DistributedError(f"with --ray, --device must be auto, cpu or cuda (each worker gets its own GPU); "
                                   f"got {self.device!r}")


def require_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`RayUnavailableError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--ray needs Ray, which is not installed ({exc}); install it with: "
                                  f"{INSTALL_HINT}") from None
    return ray


def _package_path() -> str:
    """The folder holding the ``mushcam`` package, put on the local workers' PYTHONPATH (an uninstalled checkout)."""
    here = str(Path(__file__).resolve().parents[2])
    current = os.environ.get("PYTHONPATH", "")
    return here if not current else f"{here}{os.pathsep}{current}"


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once when nothing listens at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address: Ray itself would
    keep retrying for minutes. ``auto`` (the cluster this node joined) is left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailableError(
            f"--ray {address}: nothing answers there ({exc.strerror or exc}); start the cluster's head with "
            "`ray start --head --port 6379` and give its HOST:6379, or give --ray without an address for a "
            "runtime on this machine") from None


@contextmanager
def ray_session(options: RayOptions) -> Iterator[ModuleType]:
    """Ray, connected for the ``with`` block: an already connected runtime is used (and left running),
    otherwise one is started here (``local``) or joined (an address) and shut down afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if options.address != LOCAL:
        check_reachable(options.address)
    try:
        if options.address == LOCAL:
            ray.init(num_cpus=options.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": _package_path()}})
        else:
            ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = ("start a local Ray runtime" if options.address == LOCAL
                 else f"reach the Ray cluster at {options.address}")
        raise RayUnavailableError(
            f"cannot {where}: {exc}; start the cluster with `ray start --head` (then `ray start --address HEAD:6379` "
            "on the other nodes), or give --ray without an address for a runtime on this machine") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Placement:
    """Where the workers of one model go: how many, and what each one asks of the cluster."""

    workers: int
    num_cpus: float
    num_gpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus else "cpu"


def placement(ray: ModuleType, options: RayOptions, batches: int) -> Placement:
    """One actor per GPU when the cluster has GPUs (``num_gpus=1`` and its share of the cores each) and the device
    allows, else one per CPU; never more workers than batches, nor than ``options.workers`` when it is given
    (more workers than GPUs share them: 64 workers on 8 GPUs get 1/8 GPU each)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if options.device == "cuda" and not gpus:
        raise DistributedError("--device cuda: the Ray cluster has no GPU; use --device auto or cpu")
    use_gpu = gpus > 0 and options.device != "cpu"
    slots = gpus if use_gpu else cpus
    workers = max(1, min(options.workers or slots, batches))
    # more workers than slots share them (fractional CPUs), rather than waiting forever for a free one
    share = min(1.0, slots / workers)
    if not use_gpu:
        return Placement(workers, share, 0.0)
    # a GPU worker also gets its share of the CPUs (whole cores where there are enough): the perturbations and
    # ROAD's imputation run on the CPU (Ray sets the worker's OMP_NUM_THREADS to that number)
    cores = float(cpus // workers) if workers <= cpus else cpus / workers
    return Placement(workers, cores, share)
