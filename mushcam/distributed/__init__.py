"""Batch jobs on a Ray cluster: ``gradcam``, ``evaluate`` and ``faithfulness`` with ``--ray [ADDRESS]``.

Ray is optional (``pip install -e .[ray]``): this package imports it only inside the
functions that need it. One module per role: :mod:`~mushcam.distributed.runtime` (import,
connect or start, placement), :mod:`~mushcam.distributed.actors` (a worker per model and
device, running the local jobs' batch functions), :mod:`~mushcam.distributed.pool` (batches
streamed to the workers, retries counted), :mod:`~mushcam.distributed.progress` (the
driver's progress and where the time went), :mod:`~mushcam.distributed.options` (the
command-line options), and one driver per job: :mod:`~mushcam.distributed.gradcam`,
:mod:`~mushcam.distributed.evaluate`, :mod:`~mushcam.distributed.faithfulness`.
See docs/distributed.md.
"""

from __future__ import annotations

from mushcam.distributed.runtime import (
    INSTALL_HINT,
    LOCAL,
    DistributedError,
    RayOptions,
    RayUnavailableError,
    ray_session,
    require_ray,
)

__all__ = ["INSTALL_HINT", "LOCAL", "DistributedError", "RayOptions", "RayUnavailableError", "ray_session",
           "require_ray"]
